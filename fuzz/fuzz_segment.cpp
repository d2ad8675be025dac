// Fuzzes the segment reader and the segment index reader with arbitrary file
// contents: every input is either read as records or reported as damage, never a
// crash, a hang or a read out of bounds.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "rewind/base/hash.h"
#include "rewind/format/file_names.h"
#include "rewind/format/segment.h"
#include "rewind/format/segment_index.h"
#include "rewind/journal/journal.h"

namespace {

const std::string& journal_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/rewind-fuzz-XXXXXX";
    std::string d = ::mkdtemp(tmpl);
    ::mkdir((d + "/segments").c_str(), 0755);
    return d;
  }();
  return dir;
}

void put(const std::string& path, const uint8_t* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) std::abort();
  if (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size)) std::abort();
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = journal_dir();
  rwd::ManifestSegment seg;
  seg.file = rwd::segment_file_name(1);
  seg.first_seq = 1;
  const std::string path = rwd::segment_path(dir, seg.file);
  put(path, data, size);
  for (bool sealed : {false, true}) {
    auto reader = rwd::SegmentReader::open(path, sealed);
    if (!reader) continue;
    rwd::RecordView rec;
    for (int i = 0; i < 100000; ++i) {
      auto more = reader->next(&rec);
      if (!more || !*more) break;
      if (rec.payload.size() != rec.header.payload_length) std::abort();
    }
  }
  // The same bytes as the segment's index.
  put(rwd::join_path(rwd::join_path(dir, "segments"), rwd::index_file_name(seg.file)), data, size);
  seg.sealed = true;
  seg.last_seq = 1 + size % 7;
  seg.records = seg.last_seq;
  seg.bytes = size;
  rwd::VolumeId id{};
  if (size >= id.size()) std::copy(data, data + id.size(), id.begin());
  (void)rwd::read_segment_index(dir, id, seg);
  // And again with a trailer that holds, so that the checks of the fields behind it
  // (counts, index flags, chunk checksums) are reached too.
  if (size >= 8) {
    std::string fixed(reinterpret_cast<const char*>(data), size);
    const uint64_t sum = XXH3_64bits(fixed.data(), size - 8);
    for (int i = 0; i < 8; ++i) fixed[size - 8 + i] = static_cast<char>(sum >> (8 * i));
    put(rwd::join_path(rwd::join_path(dir, "segments"), rwd::index_file_name(seg.file)),
        reinterpret_cast<const uint8_t*>(fixed.data()), size);
    auto index = rwd::read_segment_index(dir, id, seg);
    if (index) {
      for (const rwd::IndexEntry& e : index->entries)
        if (e.has_chunk_sums() &&
            e.chunk_sums + rwd::chunk_count(e.payload_length) > index->chunk_sums.size())
          std::abort();
    }
  }
  return 0;
}
