// JSON text for output (nlohmann-json): one line; objects are ordered_json, whose keys
// keep the order they were set in, so that output reads the same every time; bytes
// that are not UTF-8 (a path or a peer's message may hold any) are replaced by U+FFFD
// instead of thrown on.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace rwd {

inline std::string json_text(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace rwd
