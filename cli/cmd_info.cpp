#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "rewind/base/file.h"
#include "rewind/base/json.h"
#include "rewind/base/units.h"
#include "rewind/format/format.h"
#include "rewind/replay/inspect.h"
#include "rewind/volume/control.h"

namespace rwd::cli {

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

// The plugin's STATUS (docs/CONTROL.md), or null when the volume is not served or the
// answer is not a JSON object.
nlohmann::ordered_json served_status(const std::string& journal) {
  auto answer = control_request(join_path(journal, format::kControlSocketName), "STATUS",
                                std::chrono::seconds(2));
  if (!answer || !answer->starts_with("OK ")) return nullptr;
  nlohmann::ordered_json status = nlohmann::ordered_json::parse(answer->substr(3), nullptr, false);
  if (!status.is_object()) return nullptr;
  return status;
}

// What `rewind info` tells, gathered once for the text and the JSON form.
struct Info {
  const JournalReport& r;
  const InfoOptions& o;
  uint64_t journal_max = 0;
  double rate = 0;         // bytes per second the journal grew (0: unknown)
  double fills_in_s = -1;  // until it reaches journal_max at that rate (-1: unknown)
  size_t open = 0;         // open segments
  std::vector<TierReport> tiers{};
  nlohmann::ordered_json ship{};  // the running shipper's state, or null
  std::string metrics{};          // where the running plugin serves metrics, if it does
};

void print_json(const Info& in) {
  const JournalReport& r = in.r;
  const Manifest& m = r.manifest;
  nlohmann::ordered_json tiers = nlohmann::ordered_json::array();
  for (const TierReport& t : in.tiers)
    tiers.push_back({{"granularity_ns", t.granularity_ns},
                     {"segments", t.segments},
                     {"bytes", t.bytes},
                     {"first_time_ns", t.first_time_ns},
                     {"last_time_ns", t.last_time_ns}});
  const nlohmann::ordered_json out = {
      {"volume_id", volume_id_hex(m.volume_id)},
      {"image", m.image_path},
      {"size", m.image_size},
      {"created_ns", m.created_ns},
      {"base_seq", m.base_seq},
      {"first_seq", r.first_seq()},
      {"last_seq", r.last_seq()},
      {"first_time_ns", m.base_time_ns},
      {"last_time_ns", r.last_time_ns()},
      {"records", r.records()},
      {"segments", r.segments.size()},
      {"open_segments", in.open},
      {"journal_bytes", r.journal_bytes()},
      {"base_bytes", r.base_bytes},
      {"base_allocated", r.base_allocated},
      {"checkpoint_seq", m.checkpoint_seq},
      {"sealed_copy", m.base_sealed},
      {"in_use", r.in_use},
      {"history_ns", r.last_time_ns() - m.base_time_ns},
      {"write_rate", static_cast<uint64_t>(std::llround(in.rate))},
      {"journal_max", in.journal_max},
      {"fills_in_s", std::llround(in.fills_in_s)},
      {"tiers", std::move(tiers)},
      {"shipped_seq", m.shipped_seq ? nlohmann::ordered_json(*m.shipped_seq) : nullptr},
      {"ship", in.ship},
      {"metrics",
       in.metrics.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(in.metrics)}};
  fmt::print("{}\n", json_text(out));
}

void print_journal_max(const Info& in) {
  const double used = static_cast<double>(in.r.journal_bytes());
  fmt::print("journal-max {}: {:.0f}% used; {}\n", format_size(in.journal_max),
             100.0 * used / static_cast<double>(in.journal_max),
             in.fills_in_s < 0 ? "too little history to forecast"
             : in.fills_in_s == 0
                 ? "full: the plugin folds the oldest segments into the base"
                 : fmt::format("at that rate full in about {}, after which the oldest "
                               "history is folded into the base",
                               format_duration(std::chrono::nanoseconds(
                                   static_cast<int64_t>(in.fills_in_s * 1e9)))));
}

void print_shipping(const Info& in) {
  const Manifest& m = in.r.manifest;
  if (in.ship.is_object()) {
    const nlohmann::ordered_json& s = in.ship;
    // Every field is there when the plugin wrote it; value() keeps an odd answer from
    // ending the command.
    const std::string err = s.value("error", "");
    const std::string to = s.value("server", "?");
    if (is_s3_uri(to)) {
      fmt::print(
          "shipping    to {}: {}; the bucket holds seq {}, {} s ({} bytes) behind; {} sent, last "
          "upload {} ms{}\n",
          to, s.value("phase", "?"), s.value("acked_seq", 0ull), s.value("lag_seconds", 0.0),
          s.value("lag_bytes", 0ull), s.value("wire_bytes", 0ull), s.value("rtt_ms", 0.0),
          err.empty() ? "" : "; last error: " + err);
      return;
    }
    fmt::print(
        "shipping    to {}/{}: {}; the server holds seq {}, {} s ({} bytes) behind; {} sent, "
        "window {}, round trip {} ms{}\n",
        s.value("server", "?"), s.value("volume", "?"),
        s.value("connected", false) ? "connected" : "not connected", s.value("acked_seq", 0ull),
        s.value("lag_seconds", 0.0), s.value("lag_bytes", 0ull), s.value("wire_bytes", 0ull),
        s.value("window", 0ull), s.value("rtt_ms", 0.0), err.empty() ? "" : "; last error: " + err);
  } else if (m.shipped_seq) {
    const uint64_t last = in.r.last_seq();
    fmt::print(
        "shipped     the log server (or bucket) held seq {} at the last checkpoint ({} records "
        "after it "
        "are kept until it has them)\n",
        *m.shipped_seq, last > *m.shipped_seq ? last - *m.shipped_seq : 0);
  }
}

void print_text(const Info& in) {
  const JournalReport& r = in.r;
  const Manifest& m = r.manifest;
  fmt::print("volume      {}\n", volume_id_hex(m.volume_id));
  fmt::print("image       {} ({}, {} bytes)\n", m.image_path, format_size(m.image_size),
             m.image_size);
  fmt::print("journal     {}{}\n", in.o.journal,
             !r.in_use                     ? ""
             : is_remote_uri(in.o.journal) ? " (a shipper is sending to it)"
                                           : " (in use by a running server)");
  if (m.base_sealed)
    fmt::print(
        "sealed      shipped with ship-key=: the store cannot read it; restore, verify and serve "
        "read it with --key\n");
  fmt::print("created     {}\n", format_time(m.created_ns));
  fmt::print("restorable  seq {} ({}) .. seq {} ({})\n", r.first_seq(), format_time(m.base_time_ns),
             r.last_seq(), format_time(r.last_time_ns()));
  fmt::print("records     {} in {} segment{} ({} open)\n", r.records(), r.segments.size(),
             r.segments.size() == 1 ? "" : "s", in.open);
  fmt::print("bytes       journal {} ({} bytes), base snapshot {} ({} on disk)\n",
             format_size(r.journal_bytes()), r.journal_bytes(), format_size(r.base_bytes),
             format_size(r.base_allocated));
  for (size_t i = 0; i < in.tiers.size(); ++i) {
    const TierReport& t = in.tiers[i];
    fmt::print(
        "{}{}: {} in {} segment{}{}\n", i == 0 ? "tiers       " : "            ",
        tier_name(t.granularity_ns), format_size(t.bytes), t.segments, t.segments == 1 ? "" : "s",
        t.first_time_ns
            ? fmt::format(", {} .. {}", format_time(t.first_time_ns), format_time(t.last_time_ns))
            : "");
  }
  fmt::print("history     {} kept, from the base snapshot to the newest record{}\n",
             format_duration(std::chrono::nanoseconds(r.last_time_ns() - m.base_time_ns)),
             in.rate > 0 ? fmt::format("; the journal grew {}/s over its segments",
                                       format_size(static_cast<uint64_t>(in.rate)))
                         : "");
  if (in.journal_max != 0) print_journal_max(in);
  print_shipping(in);
  if (!in.metrics.empty()) fmt::print("metrics     {}\n", in.metrics);
  // A copy in a bucket has no image to keep current.
  if (!is_s3_uri(in.o.journal))
    fmt::print("checkpoint  image current to seq {}{}\n", m.checkpoint_seq,
               m.checkpoint_seq == r.last_seq() ? "" : " (the rest is redone at the next start)");
  for (const SegmentReport& s : r.segments)
    if (s.torn_tail) fmt::print("torn tail   segment {} at {}\n", s.file, *s.torn_tail);
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
  if (!r) return report("info", r.status(), is_s3_uri(o.journal) ? "" : journal_hint(r.status()));
  Info in{*r, o};
  in.journal_max = journal_max;
  in.rate = write_rate(*r);
  if (journal_max != 0 && in.rate > 0)
    in.fills_in_s = r->journal_bytes() >= journal_max
                        ? 0
                        : static_cast<double>(journal_max - r->journal_bytes()) / in.rate;
  for (const SegmentReport& s : r->segments) in.open += s.sealed ? 0 : 1;
  in.tiers = r->tiers();
  if (r->in_use && !is_remote_uri(o.journal) && !is_s3_uri(o.journal)) {
    const nlohmann::ordered_json status = served_status(o.journal);
    if (status.contains("ship") && status["ship"].is_object()) in.ship = status["ship"];
    if (status.contains("metrics") && status["metrics"].is_string())
      in.metrics = status["metrics"].get<std::string>();
  }
  if (o.json)
    print_json(in);
  else
    print_text(in);
  return kExitOk;
}

}  // namespace rwd::cli
