#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/file.h"
#include "rewind/base/units.h"
#include "rewind/format/format.h"
#include "rewind/replay/inspect.h"
#include "rewind/volume/control.h"

namespace rwd::cli {

void setup_info(CLI::App& app, InfoOptions& o) {
  app.add_option("journal", o.journal, "Journal directory, or rewind://HOST:PORT/VOLUME")
      ->required();
  add_remote_options(app, o.remote);
  app.add_flag("--json", o.json, "Print JSON instead of text");
  app.add_option("--journal-max", o.journal_max,
                 "Forecast how long the recent write rate takes to fill this journal-max");
}

namespace {

// How fast the journal grows: the bytes of the segments not compacted (every write
// as it came) over the time they span (0 when that is under a second, too short to
// say).
double write_rate(const JournalReport& r) {
  uint64_t first = 0, last = 0, bytes = 0;
  for (const SegmentReport& s : r.segments) {
    if (s.granularity_ns != 0) continue;
    bytes += s.bytes;
    if (s.records == 0) continue;
    if (first == 0) first = s.first_time_ns;
    last = s.last_time_ns;
  }
  if (last < first + 1000000000ull) return 0;
  return static_cast<double>(bytes) / (static_cast<double>(last - first) / 1e9);
}

std::string tier_name(uint64_t granularity_ns) {
  return granularity_ns == 0
             ? "every write"
             : fmt::format("one per {}", format_duration(std::chrono::nanoseconds(granularity_ns)));
}

// The plugin's shipper state, from its control socket's STATUS (a JSON object), or
// empty when the volume is not served or not shipped.
std::string ship_status(const std::string& journal) {
  auto answer = control_request(join_path(journal, format::kControlSocketName), "STATUS",
                                std::chrono::seconds(2));
  if (!answer || !answer->starts_with("OK ")) return {};
  const size_t at = answer->find("\"ship\":");
  if (at == std::string::npos) return {};
  // The object runs to the end of the status, less its closing brace.
  std::string obj = answer->substr(at + 7);
  if (!obj.empty() && obj.back() == '}') obj.pop_back();
  return obj;
}

// A field of a flat JSON object, as its text ("" if absent).
std::string json_value(const std::string& obj, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t at = obj.find(k);
  if (at == std::string::npos) return {};
  size_t end = at + k.size();
  if (end < obj.size() && obj[end] == '"') {
    const size_t close = obj.find('"', end + 1);
    return close == std::string::npos ? "" : obj.substr(end + 1, close - end - 1);
  }
  while (end < obj.size() && obj[end] != ',' && obj[end] != '}') ++end;
  return obj.substr(at + k.size(), end - at - k.size());
}

}  // namespace

int run_info(const InfoOptions& o) {
  uint64_t journal_max = 0;
  if (!o.journal_max.empty()) {
    auto size = parse_size(o.journal_max);
    if (!size) return report("info", size.status().with_context("--journal-max"), {}, kExitUsage);
    journal_max = *size;
  }
  auto r = report_of(o.journal, false, o.remote);
  if (!r) return report("info", r.status(), journal_hint(r.status()));
  const double rate = write_rate(*r);
  // How long until the journal reaches journal_max at that rate (-1: unknown).
  double fills_in_s = -1;
  if (journal_max != 0 && rate > 0)
    fills_in_s = r->journal_bytes() >= journal_max
                     ? 0
                     : static_cast<double>(journal_max - r->journal_bytes()) / rate;
  const Manifest& m = r->manifest;
  const std::string ship = r->in_use && !is_remote_uri(o.journal) ? ship_status(o.journal) : "";
  size_t open = 0;
  for (const SegmentReport& s : r->segments) open += s.sealed ? 0 : 1;
  const std::vector<TierReport> tiers = r->tiers();
  if (o.json) {
    std::string tj;
    for (const TierReport& t : tiers)
      tj += fmt::format(
          "{}{{\"granularity_ns\":{},\"segments\":{},\"bytes\":{},\"first_time_ns\":{},"
          "\"last_time_ns\":{}}}",
          tj.empty() ? "" : ",", t.granularity_ns, t.segments, t.bytes, t.first_time_ns,
          t.last_time_ns);
    fmt::print(
        "{{\"volume_id\":\"{}\",\"image\":{},\"size\":{},\"created_ns\":{},"
        "\"base_seq\":{},\"first_seq\":{},\"last_seq\":{},\"first_time_ns\":{},"
        "\"last_time_ns\":{},\"records\":{},\"segments\":{},\"open_segments\":{},"
        "\"journal_bytes\":{},\"base_bytes\":{},\"base_allocated\":{},"
        "\"checkpoint_seq\":{},\"in_use\":{},\"history_ns\":{},\"write_rate\":{:.0f},"
        "\"journal_max\":{},\"fills_in_s\":{:.0f},\"tiers\":[{}],\"shipped_seq\":{},"
        "\"ship\":{}}}\n",
        volume_id_hex(m.volume_id), json_string(m.image_path), m.image_size, m.created_ns,
        m.base_seq, r->first_seq(), r->last_seq(), m.base_time_ns, r->last_time_ns(), r->records(),
        r->segments.size(), open, r->journal_bytes(), r->base_bytes, r->base_allocated,
        m.checkpoint_seq, r->in_use ? "true" : "false", r->last_time_ns() - m.base_time_ns, rate,
        journal_max, fills_in_s, tj, m.shipped_seq ? std::to_string(*m.shipped_seq) : "null",
        ship.empty() ? "null" : ship);
    return kExitOk;
  }
  fmt::print("volume      {}\n", volume_id_hex(m.volume_id));
  fmt::print("image       {} ({}, {} bytes)\n", m.image_path, format_size(m.image_size),
             m.image_size);
  fmt::print("journal     {}{}\n", o.journal,
             !r->in_use                 ? ""
             : is_remote_uri(o.journal) ? " (a shipper is sending to it)"
                                        : " (in use by a running server)");
  fmt::print("created     {}\n", format_time(m.created_ns));
  fmt::print("restorable  seq {} ({}) .. seq {} ({})\n", r->first_seq(),
             format_time(m.base_time_ns), r->last_seq(), format_time(r->last_time_ns()));
  fmt::print("records     {} in {} segment{} ({} open)\n", r->records(), r->segments.size(),
             r->segments.size() == 1 ? "" : "s", open);
  fmt::print("bytes       journal {} ({} bytes), base snapshot {} ({} on disk)\n",
             format_size(r->journal_bytes()), r->journal_bytes(), format_size(r->base_bytes),
             format_size(r->base_allocated));
  for (size_t i = 0; i < tiers.size(); ++i) {
    const TierReport& t = tiers[i];
    fmt::print(
        "{}{}: {} in {} segment{}{}\n", i == 0 ? "tiers       " : "            ",
        tier_name(t.granularity_ns), format_size(t.bytes), t.segments, t.segments == 1 ? "" : "s",
        t.first_time_ns
            ? fmt::format(", {} .. {}", format_time(t.first_time_ns), format_time(t.last_time_ns))
            : "");
  }
  fmt::print("history     {} kept, from the base snapshot to the newest record{}\n",
             format_duration(std::chrono::nanoseconds(r->last_time_ns() - m.base_time_ns)),
             rate > 0 ? fmt::format("; the journal grew {}/s over its segments",
                                    format_size(static_cast<uint64_t>(rate)))
                      : "");
  if (journal_max != 0)
    fmt::print("journal-max {}: {:.0f}% used; {}\n", format_size(journal_max),
               100.0 * static_cast<double>(r->journal_bytes()) / static_cast<double>(journal_max),
               fills_in_s < 0 ? "too little history to forecast"
               : fills_in_s == 0
                   ? "full: the plugin folds the oldest segments into the base"
                   : fmt::format("at that rate full in about {}, after which the oldest history "
                                 "is folded into the base",
                                 format_duration(std::chrono::nanoseconds(
                                     static_cast<int64_t>(fills_in_s * 1e9)))));
  if (!ship.empty()) {
    const std::string err = json_value(ship, "error");
    fmt::print(
        "shipping    to {}/{}: {}; the server holds seq {}, {} s ({} bytes) behind; {} sent, "
        "window {}, round trip {} ms{}\n",
        json_value(ship, "server"), json_value(ship, "volume"),
        json_value(ship, "connected") == "true" ? "connected" : "not connected",
        json_value(ship, "acked_seq"), json_value(ship, "lag_seconds"),
        json_value(ship, "lag_bytes"), json_value(ship, "wire_bytes"), json_value(ship, "window"),
        json_value(ship, "rtt_ms"), err.empty() ? "" : "; last error: " + err);
  } else if (m.shipped_seq) {
    fmt::print(
        "shipped     the log server held seq {} at the last checkpoint ({} records after it "
        "are kept until it has them)\n",
        *m.shipped_seq, r->last_seq() > *m.shipped_seq ? r->last_seq() - *m.shipped_seq : 0);
  }
  fmt::print("checkpoint  image current to seq {}{}\n", m.checkpoint_seq,
             m.checkpoint_seq == r->last_seq() ? "" : " (the rest is redone at the next start)");
  for (const SegmentReport& s : r->segments)
    if (s.torn_tail) fmt::print("torn tail   segment {} at {}\n", s.file, *s.torn_tail);
  return kExitOk;
}

}  // namespace rwd::cli
