#include "rewind/format/manifest.h"

#include <charconv>
#include <sstream>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/base/hash.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"

namespace rwd {

namespace {

// Splits a line into space-separated words.
std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

bool to_u64(std::string_view s, uint64_t* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool safe_file_name(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (c == '/' || c == ' ' || c == '\n' || c == '\0') return false;
  return true;
}

}  // namespace

std::string Manifest::serialize() const {
  std::string s;
  s += fmt::format("rewind-manifest {}\n", format::kManifestVersion);
  s += fmt::format("volume-id {}\n", volume_id_hex(volume_id));
  // The image path goes last on its line so that it may contain spaces.
  s += fmt::format("image-size {}\n", image_size);
  s += fmt::format("image {}\n", image_path);
  s += fmt::format("created-ns {}\n", created_ns);
  s += fmt::format("base {} seq {} time-ns {}\n", base_file, base_seq, base_time_ns);
  s += fmt::format("checkpoint-seq {}\n", checkpoint_seq);
  if (shipped_seq) s += fmt::format("shipped-seq {}\n", *shipped_seq);
  for (const ManifestSegment& seg : segments) {
    if (seg.sealed) {
      s += fmt::format("segment {} first {} last {} bytes {} records {} time-ns {} {} sealed",
                       seg.file, seg.first_seq, seg.last_seq, seg.bytes, seg.records,
                       seg.first_time_ns, seg.last_time_ns);
      s += seg.granularity_ns ? fmt::format(" compacted {}\n", seg.granularity_ns) : "\n";
    } else {
      s += fmt::format("segment {} first {} open\n", seg.file, seg.first_seq);
    }
  }
  for (const ManifestMark& mk : marks)
    s += fmt::format("mark {} seq {} time-ns {}\n", mk.name, mk.seq, mk.time_ns);
  s += fmt::format("checksum {:016x}\n", XXH3_64bits(s.data(), s.size()));
  return s;
}

Result<Manifest> Manifest::parse(std::string_view text, const std::string& where) {
  auto bad = [&](size_t line_no, const std::string& why) {
    return Status::corruption(fmt::format("{} line {}: {}", where, line_no, why));
  };
  // The checksum line covers every byte before it.
  size_t cpos = text.rfind("checksum ");
  if (cpos == std::string_view::npos || (cpos != 0 && text[cpos - 1] != '\n'))
    return Status::corruption(fmt::format("{}: no checksum line (file cut short?)", where));
  std::string_view ctext = text.substr(cpos + 9);
  if (ctext.size() != 17 || ctext.back() != '\n')
    return Status::corruption(fmt::format("{}: malformed checksum line", where));
  uint64_t stored = 0;
  auto [p, ec] = std::from_chars(ctext.data(), ctext.data() + 16, stored, 16);
  if (ec != std::errc() || p != ctext.data() + 16)
    return Status::corruption(fmt::format("{}: malformed checksum line", where));
  if (stored != XXH3_64bits(text.data(), cpos))
    return Status::corruption(
        fmt::format("{}: checksum mismatch (the manifest is damaged)", where));

  Manifest m;
  bool have_version = false, have_id = false, have_size = false, have_image = false,
       have_base = false, have_checkpoint = false, have_created = false;
  size_t line_no = 0;
  std::string_view body = text.substr(0, cpos);
  while (!body.empty()) {
    ++line_no;
    size_t nl = body.find('\n');
    if (nl == std::string_view::npos) return bad(line_no, "line without newline");
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl + 1);
    auto w = words(line);
    if (w.empty()) return bad(line_no, "empty line");
    std::string_view key = w[0];
    if (line_no == 1) {
      uint64_t v;
      if (key != "rewind-manifest" || w.size() != 2 || !to_u64(w[1], &v))
        return bad(line_no, "not a rewind manifest");
      if (v != format::kManifestVersion)
        return bad(line_no, fmt::format("manifest version {} (this build reads {})", v,
                                        format::kManifestVersion));
      have_version = true;
    } else if (key == "volume-id") {
      if (w.size() != 2 || !parse_volume_id(w[1], &m.volume_id))
        return bad(line_no, "bad volume-id");
      have_id = true;
    } else if (key == "image-size") {
      if (w.size() != 2 || !to_u64(w[1], &m.image_size)) return bad(line_no, "bad image-size");
      have_size = true;
    } else if (key == "image") {
      if (line.size() <= 6) return bad(line_no, "empty image path");
      m.image_path = std::string(line.substr(6));
      have_image = true;
    } else if (key == "created-ns") {
      if (w.size() != 2 || !to_u64(w[1], &m.created_ns)) return bad(line_no, "bad created-ns");
      have_created = true;
    } else if (key == "base") {
      if (w.size() != 6 || w[2] != "seq" || w[4] != "time-ns" || !safe_file_name(w[1]) ||
          !to_u64(w[3], &m.base_seq) || !to_u64(w[5], &m.base_time_ns))
        return bad(line_no, "bad base line");
      m.base_file = std::string(w[1]);
      have_base = true;
    } else if (key == "checkpoint-seq") {
      if (w.size() != 2 || !to_u64(w[1], &m.checkpoint_seq))
        return bad(line_no, "bad checkpoint-seq");
      have_checkpoint = true;
    } else if (key == "shipped-seq") {
      uint64_t v = 0;
      if (w.size() != 2 || !to_u64(w[1], &v) || m.shipped_seq)
        return bad(line_no, "bad shipped-seq");
      m.shipped_seq = v;
    } else if (key == "segment") {
      ManifestSegment seg;
      if (w.size() >= 5 && w[2] == "first" && safe_file_name(w[1]) &&
          to_u64(w[3], &seg.first_seq)) {
        seg.file = std::string(w[1]);
        if (w.size() == 5 && w[4] == "open") {
          seg.sealed = false;
        } else if ((w.size() == 14 ||
                    (w.size() == 16 && w[14] == "compacted" && to_u64(w[15], &seg.granularity_ns) &&
                     seg.granularity_ns > 0)) &&
                   w[4] == "last" && w[6] == "bytes" && w[8] == "records" && w[10] == "time-ns" &&
                   w[13] == "sealed" && to_u64(w[5], &seg.last_seq) && to_u64(w[7], &seg.bytes) &&
                   to_u64(w[9], &seg.records) && to_u64(w[11], &seg.first_time_ns) &&
                   to_u64(w[12], &seg.last_time_ns)) {
          seg.sealed = true;
        } else {
          return bad(line_no, "bad segment line");
        }
      } else {
        return bad(line_no, "bad segment line");
      }
      if (!m.segments.empty()) {
        const ManifestSegment& prev = m.segments.back();
        if (!prev.sealed) return bad(line_no, "segment after the open segment");
        if (seg.first_seq != prev.last_seq + 1)
          return bad(line_no,
                     fmt::format("segment starts at seq {} but the previous one ends at {}",
                                 seg.first_seq, prev.last_seq));
      } else if (have_base && seg.first_seq != m.base_seq + 1) {
        return bad(line_no, fmt::format("first segment starts at seq {} but the base ends at {}",
                                        seg.first_seq, m.base_seq));
      }
      if (seg.sealed &&
          (seg.last_seq + 1 < seg.first_seq || seg.records != seg.last_seq + 1 - seg.first_seq))
        return bad(line_no, "segment seq range and record count disagree");
      m.segments.push_back(std::move(seg));
    } else if (key == "mark") {
      ManifestMark mk;
      if (w.size() != 6 || w[2] != "seq" || w[4] != "time-ns" || !check_mark_name(w[1]).is_ok() ||
          !to_u64(w[3], &mk.seq) || !to_u64(w[5], &mk.time_ns))
        return bad(line_no, "bad mark line");
      mk.name = std::string(w[1]);
      for (const ManifestMark& other : m.marks)
        if (other.name == mk.name)
          return bad(line_no, fmt::format("mark '{}' listed twice", mk.name));
      m.marks.push_back(std::move(mk));
    } else {
      return bad(line_no, fmt::format("unknown key '{}'", key));
    }
  }
  if (!(have_version && have_id && have_size && have_image && have_base && have_checkpoint &&
        have_created))
    return Status::corruption(fmt::format("{}: required lines missing", where));
  return m;
}

Result<Manifest> Manifest::load(const std::string& journal_dir) {
  std::string path = join_path(journal_dir, format::kManifestName);
  auto text = read_small_file(path);
  if (!text) return text.status();
  return parse(*text, path);
}

Status Manifest::store(const std::string& journal_dir) const {
  return write_file_atomic(join_path(journal_dir, format::kManifestName), serialize());
}

}  // namespace rwd
