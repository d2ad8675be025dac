#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/json.h"
#include "rewind/base/units.h"
#include "rewind/format/segment.h"
#include "rewind/replay/inspect.h"

namespace rwd::cli {

namespace {

void print_json(const JournalReport& r) {
  const Manifest& m = r.manifest;
  nlohmann::ordered_json segments = nlohmann::ordered_json::array(),
                         marks = nlohmann::ordered_json::array();
  for (const SegmentReport& s : r.segments)
    segments.push_back(
        {{"file", s.file},
         {"sealed", s.sealed},
         {"first_seq", s.first_seq},
         {"last_seq", s.last_seq},
         {"records", s.records},
         {"bytes", s.bytes},
         {"first_time_ns", s.first_time_ns},
         {"last_time_ns", s.last_time_ns},
         {"writes", s.writes},
         {"zeroes", s.zeroes},
         {"trims", s.trims},
         {"marks", s.marks},
         {"flush_points", s.flush_points},
         {"coalesced", s.coalesced},
         {"compacted", s.compacted},
         {"granularity_ns", s.granularity_ns},
         {"bytes_written", s.bytes_written},
         {"bytes_zeroed", s.bytes_zeroed},
         {"bytes_trimmed", s.bytes_trimmed},
         {"compressed", s.compressed},
         {"compressed_bytes", s.compressed_bytes},
         {"compressed_stored", s.compressed_stored},
         {"torn_tail", s.torn_tail ? nlohmann::ordered_json(*s.torn_tail) : nullptr}});
  for (const auto& mark : r.marks) {
    nlohmann::ordered_json one = {
        {"name", mark.name}, {"seq", mark.seq}, {"time_ns", mark.time_ns}};
    if (!mark.group.empty()) one["group"] = {{"id", mark.group}, {"volumes", mark.group_volumes}};
    marks.push_back(std::move(one));
  }
  const nlohmann::ordered_json out = {{"volume_id", volume_id_hex(m.volume_id)},
                                      {"base",
                                       {{"file", m.base_file},
                                        {"seq", m.base_seq},
                                        {"time_ns", m.base_time_ns},
                                        {"sealed", m.base_sealed}}},
                                      {"segments", std::move(segments)},
                                      {"marks", std::move(marks)}};
  fmt::print("{}\n", json_text(out));
}

void print_text(const JournalReport& r) {
  const Manifest& m = r.manifest;
  fmt::print("base {}  seq {}  {}{}\n", m.base_file, m.base_seq, format_time(m.base_time_ns),
             m.base_sealed ? "  (a sealed copy: its data is read with --key)" : "");
  uint64_t w = 0, z = 0, t = 0, mk = 0, fp = 0, bw = 0, co = 0;
  for (const SegmentReport& s : r.segments) {
    fmt::print("segment {}  {}  seq {}..{}  {} .. {}\n", s.file, s.sealed ? "sealed" : "open",
               s.first_seq, s.last_seq, s.records ? format_time(s.first_time_ns) : "-",
               s.records ? format_time(s.last_time_ns) : "-");
    fmt::print(
        "    {} records: {} WRITE ({}), {} ZERO ({}), {} TRIM ({}), {} MARK; {} flush points; "
        "{} on disk\n",
        s.records, s.writes, format_size(s.bytes_written), s.zeroes, format_size(s.bytes_zeroed),
        s.trims, format_size(s.bytes_trimmed), s.marks, s.flush_points, format_size(s.bytes));
    if (s.coalesced)
      fmt::print("    {} coalesced: superseded by newer writes, no data\n", s.coalesced);
    if (s.compressed)
      fmt::print("    {} WRITE compressed: {} in {}\n", s.compressed,
                 format_size(s.compressed_bytes), format_size(s.compressed_stored));
    if (s.granularity_ns)
      fmt::print("    compacted to one state per {} (and every mark): {} records rewritten\n",
                 format_duration(std::chrono::nanoseconds(s.granularity_ns)), s.compacted);
    if (s.torn_tail) fmt::print("    torn tail at {}\n", *s.torn_tail);
    w += s.writes, z += s.zeroes, t += s.trims, mk += s.marks, fp += s.flush_points,
        bw += s.bytes_written, co += s.coalesced;
  }
  const std::string self = volume_id_hex(r.manifest.volume_id);
  for (const MarkReport& mr : r.marks) {
    fmt::print("mark {}  seq {}  {}", mr.name, mr.seq, format_time(mr.time_ns));
    if (!mr.group.empty()) {
      // One mark of a group: the others are the same cut in the volumes it names.
      std::vector<std::string> others;
      for (const std::string& v : mr.group_volumes)
        if (v != self) others.push_back(v);
      fmt::print("  group {}: one cut with {} other volume(s), {}", mr.group, others.size(),
                 fmt::join(others, ", "));
    }
    fmt::print("\n");
  }
  fmt::print(
      "total {} records: {} WRITE ({} written), {} ZERO, {} TRIM, {} MARK in {} segment{}; {} "
      "flush points\n",
      r.records(), w, format_size(bw), z, t, mk, r.segments.size(),
      r.segments.size() == 1 ? "" : "s", fp);
  if (co) fmt::print("{} writes coalesced away (coalesce=on)\n", co);
}

}  // namespace

int run_log(const LogOptions& o) {
  auto r = report_of(o.journal, true, o.remote);
  if (!r) return report("log", r.status(), is_s3_uri(o.journal) ? "" : journal_hint(r.status()));
  if (o.json)
    print_json(*r);
  else
    print_text(*r);
  return kExitOk;
}

}  // namespace rwd::cli
