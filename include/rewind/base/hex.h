// Bytes as lowercase hexadecimal text (ids, key ids, digests).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace rwd {

std::string hex_of(std::span<const uint8_t> bytes);

// Reads exactly 2 * out.size() hexadecimal digits into `out`: lowercase ones (as hex_of
// writes them), and uppercase ones too with `upper_too`. False, with `out` undefined,
// for any other text.
bool parse_hex(std::string_view hex, std::span<uint8_t> out, bool upper_too = false);

}  // namespace rwd
