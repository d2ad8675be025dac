#include <charconv>

#include <fmt/format.h>
#include <xxhash.h>

#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/format/segment.h"
#include "rewind/format/text.h"
#include "rewind/replay/inspect.h"
#include "rewind/ship/bucket.h"

namespace rwd {

namespace bucket {

std::string writer_key(uint64_t gen) {
  return fmt::format("writers/{:020}", gen);
}
std::string base_dir(const VolumeId& volume, uint64_t base_seq) {
  return fmt::format("base/{}-{:020}", volume_id_hex(volume), base_seq);
}
std::string base_map_key(const VolumeId& volume, uint64_t base_seq) {
  return base_dir(volume, base_seq) + "/MAP";
}
std::string base_chunk_key(const VolumeId& volume, uint64_t base_seq, uint64_t offset) {
  return fmt::format("{}/{:020}", base_dir(volume, base_seq), offset);
}
std::string segment_key(uint64_t gen, const std::string& file) {
  return fmt::format("segments/{:020}/{}", gen, file);
}
std::string tail_key(uint64_t gen, uint64_t first_seq, uint64_t offset) {
  return fmt::format("tail/{:020}/{:020}-{:020}", gen, first_seq, offset);
}

}  // namespace bucket

namespace {

std::string with_checksum(std::string s) {
  s += fmt::format("checksum {:016x}\n", XXH3_64bits(s.data(), s.size()));
  return s;
}

// The text before a final "checksum HEX" line that matches it.
Result<std::string_view> checked_body(std::string_view text, const std::string& where) {
  if (text.size() < 26 || text.back() != '\n')
    return Status::corruption(where + ": cut short (no checksum line)");
  const std::string_view line = text.substr(text.size() - 26);
  uint64_t stored = 0;
  auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 25, stored, 16);
  if (!line.starts_with("checksum ") || ec != std::errc() || p != line.data() + 25 ||
      (text.size() > 26 && text[text.size() - 27] != '\n'))
    return Status::corruption(where + ": no checksum line at its end");
  const std::string_view body = text.substr(0, text.size() - 26);
  if (stored != XXH3_64bits(body.data(), body.size()))
    return Status::corruption(where + ": checksum mismatch (the object is damaged)");
  return body;
}

// Takes the next line off *rest.
bool next_line(std::string_view* rest, std::string_view* line) {
  if (rest->empty()) return false;
  size_t nl = rest->find('\n');
  if (nl == std::string_view::npos) return false;
  *line = rest->substr(0, nl);
  rest->remove_prefix(nl + 1);
  return true;
}

}  // namespace

std::string BucketManifest::serialize() const {
  std::string s = "rewind-bucket 1\n";
  s += fmt::format("writer {}\n", writer);
  s += fmt::format("owner {}\n", owner);
  s += fmt::format("last {}\n", last_seq);
  for (const BucketSegment& b : segments)
    s += fmt::format("sealed {} gen {} {}\n", b.file, b.gen, b.index ? "index" : "no-index");
  for (const BucketTail& t : tails)
    s += fmt::format("tail {} offset {} end {} gen {}\n", t.first_seq, t.offset, t.end, t.gen);
  const std::string j = journal.serialize();
  s += fmt::format("journal {}\n", j.size());
  s += j;
  return with_checksum(std::move(s));
}

Result<BucketManifest> BucketManifest::parse(std::string_view text, const std::string& where) {
  auto body = checked_body(text, where);
  if (!body) return body.status();
  std::string_view rest = *body, line;
  BucketManifest m;
  auto bad = [&](std::string_view what) {
    return Status::corruption(fmt::format("{}: {}: '{}'", where, what, line));
  };
  if (!next_line(&rest, &line) || line != "rewind-bucket 1")
    return Status::corruption(
        fmt::format("{}: not a rewind bucket manifest of version 1 (first line '{}')", where,
                    line.substr(0, 40)));
  bool have_writer = false, have_owner = false, have_last = false;
  while (next_line(&rest, &line)) {
    const auto w = split_words(line);
    if (w.size() == 2 && w[0] == "writer" && parse_u64(w[1], &m.writer)) {
      have_writer = true;
    } else if (w.size() == 2 && w[0] == "owner" && parse_u64(w[1], &m.owner)) {
      have_owner = true;
    } else if (w.size() == 2 && w[0] == "last" && parse_u64(w[1], &m.last_seq)) {
      have_last = true;
    } else if (w.size() == 5 && w[0] == "sealed" && w[2] == "gen" &&
               (w[4] == "index" || w[4] == "no-index")) {
      BucketSegment b;
      b.file = std::string(w[1]);
      if (!parse_u64(w[3], &b.gen)) return bad("bad sealed line");
      b.index = w[4] == "index";
      m.segments.push_back(std::move(b));
    } else if (w.size() == 8 && w[0] == "tail" && w[2] == "offset" && w[4] == "end" &&
               w[6] == "gen") {
      BucketTail t;
      if (!parse_u64(w[1], &t.first_seq) || !parse_u64(w[3], &t.offset) ||
          !parse_u64(w[5], &t.end) || !parse_u64(w[7], &t.gen) || t.end <= t.offset)
        return bad("bad tail line");
      m.tails.push_back(t);
    } else if (w.size() == 2 && w[0] == "journal") {
      uint64_t n = 0;
      if (!parse_u64(w[1], &n) || n != rest.size()) return bad("bad journal length");
      auto j = Manifest::parse(rest, where + " (its journal manifest)");
      if (!j) return j.status();
      m.journal = std::move(*j);
      rest = {};
      break;
    } else {
      return bad("unknown line");
    }
  }
  if (!have_writer || !have_owner || !have_last || m.journal.image_size == 0)
    return Status::corruption(where + ": incomplete (no writer, owner, last or journal line)");
  // The sealed lines name the journal's sealed segments, in order; the tails cover the
  // open one from its first byte, without gaps.
  size_t s = 0;
  for (const ManifestSegment& seg : m.journal.segments) {
    if (!seg.sealed) continue;
    if (s >= m.segments.size() || m.segments[s].file != seg.file)
      return Status::corruption(
          fmt::format("{}: segment {} has no sealed line in its order", where, seg.file));
    ++s;
  }
  if (s != m.segments.size())
    return Status::corruption(where + ": a sealed line names no sealed segment");
  const bool open = !m.journal.segments.empty() && !m.journal.segments.back().sealed;
  uint64_t at = 0;
  for (const BucketTail& t : m.tails) {
    if (!open || t.first_seq != m.journal.segments.back().first_seq || t.offset != at)
      return Status::corruption(fmt::format(
          "{}: tail pieces do not cover the open segment from its start in order", where));
    at = t.end;
  }
  if (open && m.tails.empty())
    return Status::corruption(where + ": the open segment has no tail pieces");
  return m;
}

std::vector<std::string> BucketManifest::object_names() const {
  std::vector<std::string> out;
  out.push_back(bucket::base_map_key(journal.volume_id, journal.base_seq));
  for (const BucketSegment& b : segments) {
    out.push_back(bucket::segment_key(b.gen, b.file));
    if (b.index) out.push_back(bucket::segment_key(b.gen, index_file_name(b.file)));
  }
  for (const BucketTail& t : tails) out.push_back(bucket::tail_key(t.gen, t.first_seq, t.offset));
  return out;
}

std::string BaseMap::serialize() const {
  std::string s = "rewind-base-map 1\n";
  s += fmt::format("image-size {} chunk-bytes {}\n", file_size, chunk_bytes);
  for (const BaseChunk& c : chunks)
    s += c.stored != 0
             ? fmt::format("data {} {:016x} {} stored {}\n", c.offset, c.sum, c.seq, c.stored)
             : fmt::format("data {} {:016x} {}\n", c.offset, c.sum, c.seq);
  return with_checksum(std::move(s));
}

Result<BaseMap> BaseMap::parse(std::string_view text, const std::string& where) {
  auto body = checked_body(text, where);
  if (!body) return body.status();
  std::string_view rest = *body, line;
  BaseMap m;
  if (!next_line(&rest, &line) || line != "rewind-base-map 1")
    return Status::corruption(where + ": not a rewind base map of version 1");
  if (!next_line(&rest, &line)) return Status::corruption(where + ": no image-size line");
  auto w = split_words(line);
  if (w.size() != 4 || w[0] != "image-size" || w[2] != "chunk-bytes" ||
      !parse_u64(w[1], &m.file_size) || !parse_u64(w[3], &m.chunk_bytes) || m.file_size == 0 ||
      m.file_size % 512 != 0 || m.chunk_bytes == 0 || m.chunk_bytes % 4096 != 0)
    return Status::corruption(fmt::format("{}: bad image-size line '{}'", where, line));
  uint64_t next = 0;
  while (next_line(&rest, &line)) {
    w = split_words(line);
    uint64_t off = 0, sum = 0;
    uint64_t seq = 0, stored = 0;
    if ((w.size() != 4 && w.size() != 6) || w[0] != "data" || !parse_u64(w[1], &off) ||
        !parse_u64(w[3], &seq) || w[2].size() != 16 ||
        std::from_chars(w[2].data(), w[2].data() + 16, sum, 16).ptr != w[2].data() + 16 ||
        off % m.chunk_bytes != 0 || off < next || off >= m.file_size ||
        (w.size() == 6 && (w[4] != "stored" || !parse_u64(w[5], &stored) || stored == 0 ||
                           stored >= m.chunk_length(off))))
      return Status::corruption(fmt::format("{}: bad data line '{}'", where, line));
    m.chunks.push_back(BaseChunk{off, sum, seq, stored});
    next = off + m.chunk_bytes;
  }
  return m;
}

std::string WriterClaim::serialize() const {
  return with_checksum(
      fmt::format("rewind-writer 1\ngen {}\nvolume-id {}\npid {}\nstarted-ns {}\nhost {}\n", gen,
                  volume_id_hex(volume_id), pid, started_ns, host));
}

Result<WriterClaim> WriterClaim::parse(std::string_view text, const std::string& where) {
  auto body = checked_body(text, where);
  if (!body) return body.status();
  std::string_view rest = *body, line;
  WriterClaim c;
  if (!next_line(&rest, &line) || line != "rewind-writer 1")
    return Status::corruption(where + ": not a rewind writer claim");
  while (next_line(&rest, &line)) {
    const size_t sp = line.find(' ');
    const std::string_view k = line.substr(0, sp);
    const std::string_view v = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    bool ok = true;
    if (k == "gen")
      ok = parse_u64(v, &c.gen);
    else if (k == "volume-id")
      ok = parse_volume_id(v, &c.volume_id);
    else if (k == "pid")
      ok = parse_u64(v, &c.pid);
    else if (k == "started-ns")
      ok = parse_u64(v, &c.started_ns);
    else if (k == "host")
      c.host = std::string(v);
    if (!ok) return Status::corruption(fmt::format("{}: bad line '{}'", where, line));
  }
  return c;
}

std::string WriterClaim::describe() const {
  return fmt::format("generation {} (host {}, pid {}, started {})", gen, host, pid,
                     format_time(started_ns));
}

}  // namespace rwd
