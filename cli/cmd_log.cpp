#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/replay/inspect.h"

namespace rwd::cli {

void setup_log(CLI::App& app, LogOptions& o) {
  app.add_option("journal", o.journal, "Journal directory, or rewind://HOST:PORT/VOLUME")
      ->required();
  add_remote_options(app, o.remote);
  app.add_flag("--json", o.json, "Print JSON instead of text");
}

namespace {

void print_json(const JournalReport& r) {
  const Manifest& m = r.manifest;
  fmt::print(
      "{{\"volume_id\":\"{}\",\"base\":{{\"file\":{},\"seq\":{},\"time_ns\":{}}},\"segments\":[",
      volume_id_hex(m.volume_id), json_string(m.base_file), m.base_seq, m.base_time_ns);
  for (size_t i = 0; i < r.segments.size(); ++i) {
    const SegmentReport& s = r.segments[i];
    fmt::print(
        "{}{{\"file\":{},\"sealed\":{},\"first_seq\":{},\"last_seq\":{},\"records\":{},"
        "\"bytes\":{},\"first_time_ns\":{},\"last_time_ns\":{},\"writes\":{},\"zeroes\":{},"
        "\"trims\":{},\"marks\":{},\"flush_points\":{},\"coalesced\":{},\"compacted\":{},"
        "\"granularity_ns\":{},\"bytes_written\":{},\"bytes_zeroed\":{},\"bytes_trimmed\":{},"
        "\"torn_tail\":{}}}",
        i ? "," : "", json_string(s.file), s.sealed, s.first_seq, s.last_seq, s.records, s.bytes,
        s.first_time_ns, s.last_time_ns, s.writes, s.zeroes, s.trims, s.marks, s.flush_points,
        s.coalesced, s.compacted, s.granularity_ns, s.bytes_written, s.bytes_zeroed,
        s.bytes_trimmed, s.torn_tail ? json_string(*s.torn_tail) : "null");
  }
  fmt::print("],\"marks\":[");
  for (size_t i = 0; i < r.marks.size(); ++i)
    fmt::print("{}{{\"name\":{},\"seq\":{},\"time_ns\":{}}}", i ? "," : "",
               json_string(r.marks[i].name), r.marks[i].seq, r.marks[i].time_ns);
  fmt::print("]}}\n");
}

void print_text(const JournalReport& r) {
  const Manifest& m = r.manifest;
  fmt::print("base {}  seq {}  {}\n", m.base_file, m.base_seq, format_time(m.base_time_ns));
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
    if (s.granularity_ns)
      fmt::print("    compacted to one state per {} (and every mark): {} records rewritten\n",
                 format_duration(std::chrono::nanoseconds(s.granularity_ns)), s.compacted);
    if (s.torn_tail) fmt::print("    torn tail at {}\n", *s.torn_tail);
    w += s.writes, z += s.zeroes, t += s.trims, mk += s.marks, fp += s.flush_points,
        bw += s.bytes_written, co += s.coalesced;
  }
  for (const MarkReport& mr : r.marks)
    fmt::print("mark {}  seq {}  {}\n", mr.name, mr.seq, format_time(mr.time_ns));
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
  if (!r) return report("log", r.status(), journal_hint(r.status()));
  if (o.json)
    print_json(*r);
  else
    print_text(*r);
  return kExitOk;
}

}  // namespace rwd::cli
