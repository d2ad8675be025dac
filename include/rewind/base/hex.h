// Bytes as lowercase hexadecimal text (ids, key ids, digests).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace rwd {

std::string hex_of(std::span<const uint8_t> bytes);

}  // namespace rwd
