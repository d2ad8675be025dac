#include "rewind/ship/tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/base/hex.h"
#include "rewind/base/units.h"
#include "rewind/ship/protocol.h"

namespace rwd {

namespace {

constexpr std::string_view kHashedPrefix = "sha256:";

std::vector<std::string_view> words_of(std::string_view line) {
  std::vector<std::string_view> words;
  for (size_t i = 0; i < line.size();) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) words.push_back(line.substr(i, j - i));
    i = j;
  }
  return words;
}

// One grant word: VOLUME, VOLUME@SIZE or r:VOLUME.
Status parse_grant(std::string_view word, std::string* volume, TokenTable::Grant* g) {
  g->access = TokenTable::Access::kWrite;
  if (word.starts_with("r:")) {
    word.remove_prefix(2);
    g->access = TokenTable::Access::kRead;
  }
  if (const size_t at = word.find('@'); at != std::string_view::npos) {
    if (g->access == TokenTable::Access::kRead)
      return Status::invalid("a quota is for a volume the token ships (VOLUME@SIZE), not r:");
    auto size = parse_size(word.substr(at + 1));
    if (!size || *size == 0)
      return Status::invalid(fmt::format("quota '{}' of volume '{}': give a size such as 64G",
                                         word.substr(at + 1), word.substr(0, at)));
    g->quota = *size;
    word = word.substr(0, at);
  }
  REWIND_RETURN_IF_ERROR(proto::check_volume_name(word));
  *volume = std::string(word);
  return Status::ok();
}

}  // namespace

TokenTable::Digest TokenTable::digest(std::string_view token) {
  Digest d{};
  unsigned int n = 0;
  EVP_Digest(token.data(), token.size(), d.data(), &n, EVP_sha256(), nullptr);
  return d;
}

std::string TokenTable::hashed_form(std::string_view token) {
  return std::string(kHashedPrefix) + hex_of(digest(token));
}

Result<TokenTable> TokenTable::parse(std::string_view text, const std::string& where) {
  TokenTable t;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // Errors never quote the token.
    auto bad = [&](const std::string& why) {
      return Status::invalid(
          fmt::format("{}:{}: {}; lines are 'TOKEN VOLUME...' or 'sha256:HEX VOLUME...' "
                      "(r:VOLUME for read only, VOLUME@SIZE for a quota)",
                      where, line_no, why));
    };
    const std::vector<std::string_view> words = words_of(line);
    if (words.empty() || words[0].starts_with('#')) continue;
    const std::string_view token = words[0];
    Entry e;
    if (token.starts_with(kHashedPrefix)) {
      if (!parse_hex(token.substr(kHashedPrefix.size()), e.digest))
        return bad("a hashed token is sha256: and 64 lowercase hex digits");
    } else {
      if (token.size() > proto::kMaxToken)
        return bad(fmt::format("a token of {} bytes (at most {})", token.size(), proto::kMaxToken));
      for (char c : token)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
          return bad("a token holds a byte that is not printable ASCII");
      e.digest = digest(token);
    }
    if (words.size() < 2) return bad("a token without volumes");
    for (const Entry& other : t.entries_)
      if (other.digest == e.digest) return bad("the token is listed twice");
    for (size_t k = 1; k < words.size(); ++k) {
      std::string volume;
      Grant g;
      if (Status st = parse_grant(words[k], &volume, &g); !st) return bad(st.message());
      Grant& have = e.volumes[volume];
      // VOLUME and r:VOLUME both: write; the quota given, if any.
      if (have.access != Access::kWrite) have.access = g.access;
      if (g.quota != 0) have.quota = g.quota;
    }
    t.entries_.push_back(std::move(e));
  }
  return t;
}

Result<TokenTable> TokenTable::load(const std::string& path) {
  REWIND_RETURN_IF_ERROR(check_secret_file(path));
  auto text = read_small_file(path, 1u << 20);
  if (!text) return text.status();
  return parse(*text, path);
}

TokenTable::Grant TokenTable::grant(std::string_view token, std::string_view volume) const {
  const Digest d = digest(token);
  // Every entry is compared, whichever matches: the time does not depend on it.
  const Entry* match = nullptr;
  for (const Entry& e : entries_)
    if (CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0) match = &e;
  if (match == nullptr) return {};
  auto v = match->volumes.find(volume);
  return v == match->volumes.end() ? Grant{} : v->second;
}

}  // namespace rwd
