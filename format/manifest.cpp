#include "rewind/format/manifest.h"

#include <charconv>
#include <sstream>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/base/hash.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"
#include "rewind/format/seal.h"
#include "rewind/format/text.h"

namespace rwd {

namespace {

bool safe_file_name(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (c == '/' || c == ' ' || c == '\n' || c == '\0') return false;
  return true;
}

}  // namespace

uint64_t Manifest::base_file_bytes() const {
  return base_sealed ? sealed_base_size(image_size) : image_size;
}

std::string Manifest::serialize() const {
  std::string s;
  s += fmt::format("rewind-manifest {}\n", format::kManifestVersion);
  s += fmt::format("volume-id {}\n", volume_id_hex(volume_id));
  // The image path goes last on its line so that it may contain spaces.
  s += fmt::format("image-size {}\n", image_size);
  s += fmt::format("image {}\n", image_path);
  s += fmt::format("created-ns {}\n", created_ns);
  s += fmt::format("base {} seq {} time-ns {}\n", base_file, base_seq, base_time_ns);
  if (base_sealed) s += "base-sealed\n";
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

namespace {

// The manifest's lines before its checksum line, once the checksum (which covers
// every byte before it) matches.
Result<std::string_view> checked_body(std::string_view text, const std::string& where) {
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
  return text.substr(0, cpos);
}

// A "segment" line's words into *seg, checked against what `m` holds so far (the
// segments continue the base and each other, only the last may be open). Returns
// what is wrong, or "".
std::string parse_segment(const std::vector<std::string_view>& w, const Manifest& m, bool have_base,
                          ManifestSegment* seg) {
  if (!(w.size() >= 5 && w[2] == "first" && safe_file_name(w[1]) &&
        parse_u64(w[3], &seg->first_seq)))
    return "bad segment line";
  seg->file = std::string(w[1]);
  if (w.size() == 5 && w[4] == "open") {
    seg->sealed = false;
  } else if ((w.size() == 14 ||
              (w.size() == 16 && w[14] == "compacted" && parse_u64(w[15], &seg->granularity_ns) &&
               seg->granularity_ns > 0)) &&
             w[4] == "last" && w[6] == "bytes" && w[8] == "records" && w[10] == "time-ns" &&
             w[13] == "sealed" && parse_u64(w[5], &seg->last_seq) && parse_u64(w[7], &seg->bytes) &&
             parse_u64(w[9], &seg->records) && parse_u64(w[11], &seg->first_time_ns) &&
             parse_u64(w[12], &seg->last_time_ns)) {
    seg->sealed = true;
  } else {
    return "bad segment line";
  }
  if (!m.segments.empty()) {
    const ManifestSegment& prev = m.segments.back();
    if (!prev.sealed) return "segment after the open segment";
    if (seg->first_seq != prev.last_seq + 1)
      return fmt::format("segment starts at seq {} but the previous one ends at {}", seg->first_seq,
                         prev.last_seq);
  } else if (have_base && seg->first_seq != m.base_seq + 1) {
    return fmt::format("first segment starts at seq {} but the base ends at {}", seg->first_seq,
                       m.base_seq);
  }
  if (seg->sealed &&
      (seg->last_seq + 1 < seg->first_seq || seg->records != seg->last_seq + 1 - seg->first_seq))
    return "segment seq range and record count disagree";
  return "";
}

// A "mark" line's words into *mk; a name `m` lists already is an error. Returns what
// is wrong, or "".
std::string parse_mark(const std::vector<std::string_view>& w, const Manifest& m,
                       ManifestMark* mk) {
  if (w.size() != 6 || w[2] != "seq" || w[4] != "time-ns" || !check_mark_name(w[1]).is_ok() ||
      !parse_u64(w[3], &mk->seq) || !parse_u64(w[5], &mk->time_ns))
    return "bad mark line";
  mk->name = std::string(w[1]);
  for (const ManifestMark& other : m.marks)
    if (other.name == mk->name) return fmt::format("mark '{}' listed twice", mk->name);
  return "";
}

// A single-valued line ("image-size 1048576") into *out; false if it is not one.
bool one_u64(const std::vector<std::string_view>& w, uint64_t* out) {
  return w.size() == 2 && parse_u64(w[1], out);
}

}  // namespace

Result<Manifest> Manifest::parse(std::string_view text, const std::string& where) {
  auto bad = [&](size_t line_no, const std::string& why) {
    return Status::corruption(fmt::format("{} line {}: {}", where, line_no, why));
  };
  auto checked = checked_body(text, where);
  if (!checked) return checked.status();
  std::string_view body = *checked;
  Manifest m;
  // Each required line, as it is seen.
  bool have_version = false, have_id = false, have_size = false, have_image = false,
       have_base = false, have_checkpoint = false, have_created = false;
  for (size_t line_no = 1; !body.empty(); ++line_no) {
    size_t nl = body.find('\n');
    if (nl == std::string_view::npos) return bad(line_no, "line without newline");
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl + 1);
    auto w = split_words(line);
    if (w.empty()) return bad(line_no, "empty line");
    std::string_view key = w[0];
    std::string why;  // what is wrong with the line, if anything
    uint64_t v = 0;
    if (line_no == 1) {
      if (key != "rewind-manifest" || !one_u64(w, &v)) return bad(line_no, "not a rewind manifest");
      if (v != format::kManifestVersion)
        why = fmt::format("manifest version {} (this build reads {})", v, format::kManifestVersion);
      have_version = true;
    } else if (key == "volume-id") {
      if (w.size() != 2 || !parse_volume_id(w[1], &m.volume_id)) why = "bad volume-id";
      have_id = true;
    } else if (key == "image-size") {
      if (!one_u64(w, &m.image_size)) why = "bad image-size";
      have_size = true;
    } else if (key == "image") {
      if (line.size() <= 6)
        why = "empty image path";
      else
        m.image_path = std::string(line.substr(6));
      have_image = true;
    } else if (key == "created-ns") {
      if (!one_u64(w, &m.created_ns)) why = "bad created-ns";
      have_created = true;
    } else if (key == "base") {
      if (w.size() != 6 || w[2] != "seq" || w[4] != "time-ns" || !safe_file_name(w[1]) ||
          !parse_u64(w[3], &m.base_seq) || !parse_u64(w[5], &m.base_time_ns))
        why = "bad base line";
      else
        m.base_file = std::string(w[1]);
      have_base = true;
    } else if (key == "base-sealed") {
      if (w.size() != 1 || m.base_sealed) why = "bad base-sealed";
      m.base_sealed = true;
    } else if (key == "checkpoint-seq") {
      if (!one_u64(w, &m.checkpoint_seq)) why = "bad checkpoint-seq";
      have_checkpoint = true;
    } else if (key == "shipped-seq") {
      if (!one_u64(w, &v) || m.shipped_seq) why = "bad shipped-seq";
      m.shipped_seq = v;
    } else if (key == "segment") {
      ManifestSegment seg;
      why = parse_segment(w, m, have_base, &seg);
      m.segments.push_back(std::move(seg));
    } else if (key == "mark") {
      ManifestMark mk;
      why = parse_mark(w, m, &mk);
      m.marks.push_back(std::move(mk));
    } else {
      why = fmt::format("unknown key '{}'", key);
    }
    if (!why.empty()) return bad(line_no, why);
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
