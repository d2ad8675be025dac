#include "rewind/ship/tokens.h"

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/ship/protocol.h"

namespace rwd {

Result<TokenTable> TokenTable::parse(std::string_view text, const std::string& where) {
  TokenTable t;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto bad = [&](const std::string& why) {
      return Status::invalid(
          fmt::format("{}:{}: {}; lines are 'TOKEN VOLUME...' (r:VOLUME for "
                      "read only)",
                      where, line_no, why));
    };
    std::vector<std::string_view> words;
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
      if (j > i) words.push_back(line.substr(i, j - i));
      i = j;
    }
    if (words.empty() || words[0].starts_with('#')) continue;
    const std::string_view token = words[0];
    if (token.size() > proto::kMaxToken)
      return bad(fmt::format("a token of {} bytes (at most {})", token.size(), proto::kMaxToken));
    for (char c : token)
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
        return bad("a token holds a byte that is not printable ASCII");
    if (words.size() < 2) return bad("a token without volumes");
    if (t.grants_.count(token) != 0) return bad("the token is listed twice");
    auto& grants = t.grants_[std::string(token)];
    for (size_t k = 1; k < words.size(); ++k) {
      std::string_view v = words[k];
      Access a = Access::kWrite;
      if (v.starts_with("r:")) {
        v.remove_prefix(2);
        a = Access::kRead;
      }
      if (Status st = proto::check_volume_name(v); !st) return bad(st.message());
      Access& have = grants[std::string(v)];
      if (have != Access::kWrite) have = a;  // VOLUME and r:VOLUME both: write
    }
  }
  return t;
}

Result<TokenTable> TokenTable::load(const std::string& path) {
  REWIND_RETURN_IF_ERROR(check_secret_file(path));
  auto text = read_small_file(path, 1u << 20);
  if (!text) return text.status();
  return parse(*text, path);
}

TokenTable::Access TokenTable::access(std::string_view token, std::string_view volume) const {
  auto it = grants_.find(token);
  if (it == grants_.end()) return Access::kNone;
  auto v = it->second.find(volume);
  if (v == it->second.end()) return Access::kNone;
  return v->second;
}

}  // namespace rwd
