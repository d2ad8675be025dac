// The token file of rewind-server (--tokens FILE): which token may read or ship which
// volumes, and how much of the store a volume it ships may take. One line per token:
//
//   TOKEN GRANT...           the token itself (1..256 printable ASCII bytes, no spaces)
//   sha256:HEX GRANT...      or the SHA-256 of it, 64 hex digits (the file then holds
//                            no usable secret): `rewind-server --hash-token` prints it
//
//   GRANT:  VOLUME           read and ship VOLUME
//           VOLUME@SIZE      the same, with a quota: the volume may take SIZE bytes of
//                            the store (64G, 500M, ...)
//           r:VOLUME         read VOLUME only
//
// Blank lines and lines starting with '#' are ignored; volume names follow
// proto::check_volume_name. The file must be private to its owner (mode 0600).
//
// Tokens are kept, and looked up, by their SHA-256 only; a lookup compares the digest
// of the token presented with every entry in constant time, so neither the time it
// takes nor the file tells a peer how much of a token it guessed.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "rewind/base/status.h"

namespace rwd {

class TokenTable {
 public:
  enum class Access { kNone, kRead, kWrite };
  struct Grant {
    Access access = Access::kNone;
    uint64_t quota = 0;  // bytes of the store the volume may take; 0: no quota
  };
  using Digest = std::array<uint8_t, 32>;

  // `where` names the file in errors ("tokens.txt:3: ...").
  static Result<TokenTable> parse(std::string_view text, const std::string& where);
  // Loads a token file, refusing one its group or others may read.
  static Result<TokenTable> load(const std::string& path);

  // What `token` may do with `volume`. An unknown token may do nothing, with any volume.
  Grant grant(std::string_view token, std::string_view volume) const;
  Access access(std::string_view token, std::string_view volume) const {
    return grant(token, volume).access;
  }
  size_t size() const { return entries_.size(); }

  // The SHA-256 of a token, and its `sha256:HEX` form for a token file.
  static Digest digest(std::string_view token);
  static std::string hashed_form(std::string_view token);

 private:
  struct Entry {
    Digest digest;
    std::map<std::string, Grant, std::less<>> volumes;
  };
  std::vector<Entry> entries_;
};

}  // namespace rwd
