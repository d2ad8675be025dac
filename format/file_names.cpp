#include "rewind/format/file_names.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/format/format.h"

namespace rwd {

namespace {

constexpr const char* kBaseSuffix = ".img";
constexpr size_t kSeqDigits = 20;

// The seq spelled by the kSeqDigits decimal digits that start `n`; false if there are
// fewer, or any is not a digit, or the value does not fit.
bool parse_seq_digits(std::string_view n, uint64_t* seq) {
  if (n.size() < kSeqDigits) return false;
  uint64_t v = 0;
  for (char c : n.substr(0, kSeqDigits)) {
    if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *seq = v;
  return true;
}

}  // namespace

std::string segment_file_name(uint64_t first_seq) {
  return fmt::format("{:020}{}", first_seq, format::kSegmentSuffix);
}

bool parse_segment_file_name(const std::string& name, uint64_t* first_seq) {
  std::string_view n = name;
  if (n.ends_with(format::kSegmentSuffix))
    n.remove_suffix(std::strlen(format::kSegmentSuffix));
  else if (n.ends_with(format::kIndexSuffix))
    n.remove_suffix(std::strlen(format::kIndexSuffix));
  else
    return false;
  uint64_t v = 0;
  if (!parse_seq_digits(n, &v)) return false;
  std::string_view rest = n.substr(kSeqDigits);
  if (!rest.empty()) {
    if (!rest.starts_with(".c") || rest.size() < 3 || rest.size() > 12) return false;
    rest.remove_prefix(2);
    if (!std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
  }
  *first_seq = v;
  return true;
}

std::string compacted_segment_file_name(const std::string& file) {
  std::string_view n = file;
  if (n.ends_with(format::kSegmentSuffix)) n.remove_suffix(std::strlen(format::kSegmentSuffix));
  uint64_t generation = 0;
  if (n.size() > 22 && n.substr(20, 2) == ".c") {
    for (char c : n.substr(22)) generation = generation * 10 + static_cast<uint64_t>(c - '0');
    n = n.substr(0, 20);
  }
  return fmt::format("{}.c{}{}", n, generation + 1, format::kSegmentSuffix);
}

std::string index_file_name(const std::string& segment_file) {
  std::string base = segment_file;
  const std::string suffix = format::kSegmentSuffix;
  if (base.size() > suffix.size() && base.ends_with(suffix))
    base.resize(base.size() - suffix.size());
  return base + format::kIndexSuffix;
}

std::string base_file_name(uint64_t base_seq) {
  return fmt::format("{:020}{}", base_seq, kBaseSuffix);
}

bool parse_base_file_name(const std::string& name, uint64_t* base_seq) {
  std::string_view n = name;
  if (n.size() != kSeqDigits + std::strlen(kBaseSuffix) || !n.ends_with(kBaseSuffix)) return false;
  return parse_seq_digits(n, base_seq);
}

std::string partial_base_file_name(uint64_t base_seq) {
  return base_file_name(base_seq) + ".partial";
}

std::string segment_path(const std::string& journal_dir, const std::string& file) {
  return join_path(join_path(journal_dir, format::kSegmentDir), file);
}

std::string base_path(const std::string& journal_dir, const std::string& file) {
  return join_path(join_path(journal_dir, format::kBaseDir), file);
}

}  // namespace rwd
