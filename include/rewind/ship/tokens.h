// The token file of rewind-server (--tokens FILE): which token may read or ship which
// volumes. One line per token:
//
//   TOKEN VOLUME...      VOLUME: read and ship it; r:VOLUME: read it only
//
// Blank lines and lines starting with '#' are ignored. A token is 1..256 printable
// ASCII bytes without spaces; volume names follow proto::check_volume_name.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "rewind/base/status.h"

namespace rwd {

class TokenTable {
 public:
  enum class Access { kNone, kRead, kWrite };

  // `where` names the file in errors ("tokens.txt:3: ...").
  static Result<TokenTable> parse(std::string_view text, const std::string& where);
  static Result<TokenTable> load(const std::string& path);

  // What `token` may do with `volume`. An unknown token may do nothing, with any volume.
  Access access(std::string_view token, std::string_view volume) const;
  size_t size() const { return grants_.size(); }

 private:
  std::map<std::string, std::map<std::string, Access, std::less<>>, std::less<>> grants_;
};

}  // namespace rwd
