// The names of a journal directory's base snapshots and segments, made and parsed
// here and nowhere else (docs/FORMAT.md, "A journal directory"):
//
//   DIR/base/00000000000000000042.img          the base snapshot at seq 42
//   DIR/base/00000000000000000042.img.partial  one a log server is still receiving
//   DIR/segments/00000000000000000043.seg      a segment whose first seq is 43
//   DIR/segments/00000000000000000043.c2.seg   its second rewrite by compaction
//   DIR/segments/00000000000000000043.idx      its index
//
// The fixed names (MANIFEST, LOCK, base/, segments/) are constants in format.h.
#pragma once

#include <cstdint>
#include <string>

namespace rwd {

// "00000000000000000042.seg" for first_seq 42.
std::string segment_file_name(uint64_t first_seq);
// The name of a segment rewritten by compaction: "00000000000000000042.c3.seg" for
// the third rewrite of the segment named `file`.
std::string compacted_segment_file_name(const std::string& file);
// The first seq of a segment or index file name ("<20 digits>[.c<N>].seg" or ".idx");
// false for any other name.
bool parse_segment_file_name(const std::string& name, uint64_t* first_seq);
// "00000000000000000042.idx" beside "00000000000000000042.seg".
std::string index_file_name(const std::string& segment_file);

// "00000000000000000042.img": the base snapshot at seq 42.
std::string base_file_name(uint64_t base_seq);
// The seq of a base snapshot's file name; false for any other name.
bool parse_base_file_name(const std::string& name, uint64_t* base_seq);
// "00000000000000000042.img.partial": a base snapshot at seq 42 still arriving.
std::string partial_base_file_name(uint64_t base_seq);

// JOURNAL/segments/FILE and JOURNAL/base/FILE.
std::string segment_path(const std::string& journal_dir, const std::string& file);
std::string base_path(const std::string& journal_dir, const std::string& file);

}  // namespace rwd
