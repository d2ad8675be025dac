// The words and numbers of the format's text files (the manifest, and a volume's
// manifest and base map in a bucket), parsed one way everywhere.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace rwd {

// The space-separated words of a line (runs of spaces separate one word from the next).
std::vector<std::string_view> split_words(std::string_view line);
// A whole decimal number that fits in 64 bits; false for anything else (empty, a
// sign, trailing characters, overflow).
bool parse_u64(std::string_view s, uint64_t* v);

}  // namespace rwd
