// What metrics= serves (docs/METRICS.md): read from the volume's counters, the
// manifest as last stored, the shipper's status and retention's counters; nothing
// here takes a lock of the write path.
#include <string>

#include <fmt/format.h>

#include "rewind/base/metrics.h"
#include "rewind/serve/served.h"
#include "rewind/volume/volume.h"
#include "served_threads.h"

namespace rwd {

namespace {

using Type = MetricsText::Type;

double seconds_of(uint64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

// The name metrics give the volume: its name on the log server, else the journal
// directory's own name (never its path).
std::string volume_name(const ServeConfig& c) {
  if (!c.ship.link.volume.empty()) return c.ship.link.volume;
  std::string dir = c.journal_dir();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir.substr(dir.rfind('/') + 1);
}

}  // namespace

std::string Served::metrics_text(uint64_t now_ns) const {
  MetricsText t;
  if (!volume_) return t.text();
  const Volume& v = *volume_;
  const VolumeCounters& c = v.counters();
  const WriteQueue& q = v.queue();
  const std::string name = volume_name(config_);
  const MetricLabels vol = {{"volume", name}};
  const auto with = [&](std::string_view key, std::string value) {
    MetricLabels l = vol;
    l.emplace_back(key, std::move(value));
    return l;
  };
  // A family of one sample, labelled with the volume.
  const auto one = [&](std::string_view metric, Type type, std::string_view help, auto value) {
    t.family(metric, type, help);
    t.sample(metric, vol, value);
  };

  t.family("rewind_requests_total", Type::kCounter,
           "NBD requests the volume accepted, by type (a FUA write counts as a write).");
  for (const auto& [type, n] :
       {std::pair{"write", &c.writes}, std::pair{"zero", &c.zeroes}, std::pair{"trim", &c.trims},
        std::pair{"flush", &c.flushes}, std::pair{"read", &c.reads}})
    t.sample("rewind_requests_total", with("type", type), n->value());
  t.family("rewind_request_bytes_total", Type::kCounter,
           "Bytes the accepted requests covered, by type.");
  for (const auto& [type, n] :
       {std::pair{"write", &c.write_bytes}, std::pair{"zero", &c.zero_bytes},
        std::pair{"trim", &c.trim_bytes}, std::pair{"read", &c.read_bytes}})
    t.sample("rewind_request_bytes_total", with("type", type), n->value());
  t.histogram("rewind_flush_duration_seconds",
              "How long a FLUSH or FUA request waited for its writes to be durable.", vol,
              c.flush_seconds.snapshot());

  one("rewind_queue_bytes", Type::kGauge,
      "Bytes of acknowledged records not yet applied to the image.", q.queued_bytes());
  one("rewind_queue_max_bytes", Type::kGauge,
      "queue-max=: past it, new writes wait (back-pressure).", q.queue_max());
  one("rewind_queue_waits_total", Type::kCounter, "Requests that waited for room in a full queue.",
      q.space_waits());
  one("rewind_queue_wait_seconds_total", Type::kCounter,
      "Time requests spent waiting for room in a full queue.", seconds_of(q.space_wait_ns()));
  one("rewind_last_seq", Type::kGauge, "The seq of the newest acknowledged record.", q.last_seq());
  one("rewind_durable_seq", Type::kGauge, "Every record up to this seq is durable in the journal.",
      q.durable_seq());

  // The journal, from the manifest as last stored and the durable end of the open
  // segment.
  const auto m = v.snapshot();
  const Journal::Position durable = v.durable_position();
  uint64_t bytes = 0;
  for (const ManifestSegment& s : m->segments)
    bytes += s.sealed ? s.bytes : (s.first_seq == durable.segment_first_seq ? durable.offset : 0);
  one("rewind_journal_bytes", Type::kGauge,
      "Bytes of the journal's segments (the base snapshot not counted).", bytes);
  one("rewind_journal_segments", Type::kGauge, "Segments in the journal, the open one too.",
      static_cast<uint64_t>(m->segments.size()));
  if (config_.retention.journal_max > 0) {
    one("rewind_journal_max_bytes", Type::kGauge,
        "journal-max=: past it, retention folds history early.", config_.retention.journal_max);
  }
  const uint64_t oldest = m->base_time_ns != 0 ? m->base_time_ns : m->created_ns;
  one("rewind_oldest_restorable_timestamp_seconds", Type::kGauge,
      "The oldest point the volume can be restored to, as a Unix time.", seconds_of(oldest));
  one("rewind_history_seconds", Type::kGauge, "How far back from now the volume can be restored.",
      seconds_of(now_ns > oldest ? now_ns - oldest : 0));

  uint64_t ship_errors = 0, retention_failures = 0;
  if (threads_ && threads_->shipper) {
    const ShipperStatus s = threads_->shipper->status();
    ship_errors = s.reconnects;
    one("rewind_ship_lag_seconds", Type::kGauge,
        "Age of the oldest durable record the off-site copy lacks (0: it has them all).",
        s.lag_seconds);
    one("rewind_ship_lag_bytes", Type::kGauge,
        "Journal bytes durable here that the off-site copy lacks.", s.lag_bytes);
    one("rewind_ship_acked_seq", Type::kGauge,
        "The off-site copy holds every record up to this seq.", s.acked_seq);
    one("rewind_ship_connected", Type::kGauge,
        "1 while the shipper has a session with the server or bucket.", uint64_t{s.connected});
    t.family("rewind_ship_state", Type::kGauge,
             "The shipper's phase: 1 for the one it is in (refused: it stopped for good).");
    for (const char* phase : {"connecting", "base", "records", "refused"})
      t.sample("rewind_ship_state", with("state", phase), uint64_t{s.phase == phase});
    one("rewind_ship_sent_bytes_total", Type::kCounter,
        "Bytes sent on the wire (frames or requests, headers included).", s.wire_bytes);
    one("rewind_ship_acked_bytes_total", Type::kCounter,
        "Journal bytes the off-site copy acknowledged.", s.record_bytes);
    one("rewind_ship_reconnects_total", Type::kCounter,
        "Sessions that ended in an error and were started again.", s.reconnects);
  }
  if (threads_ && threads_->retention) {
    const RetentionCounters& r = threads_->retention->counters();
    retention_failures = r.failures.value();
    t.family("rewind_retention_actions_total", Type::kCounter,
             "Retention's changes of the journal: folds into the base, compactions.");
    t.sample("rewind_retention_actions_total", with("action", "fold"), r.folds.value());
    t.sample("rewind_retention_actions_total", with("action", "compact"), r.compactions.value());
    t.family("rewind_retention_segments_total", Type::kCounter,
             "Segments retention folded or compacted.");
    t.sample("rewind_retention_segments_total", with("action", "fold"), r.segments_folded.value());
    t.sample("rewind_retention_segments_total", with("action", "compact"),
             r.segments_compacted.value());
    one("rewind_retention_forced_folds_total", Type::kCounter,
        "Folds journal-max= forced before retain= would have made them.", r.forced_folds.value());
    one("rewind_retention_given_up_seconds_total", Type::kCounter,
        "History that journal-max= folded away while retain= would still have kept it.",
        seconds_of(r.given_up_ns.value()));
  }
  t.family("rewind_errors_total", Type::kCounter,
           "Failures by kind: journal and image writes or syncs (retries included), shipping "
           "sessions, retention passes.");
  t.sample("rewind_errors_total", with("kind", "journal"), c.journal_errors.value());
  t.sample("rewind_errors_total", with("kind", "image"), c.image_errors.value());
  t.sample("rewind_errors_total", with("kind", "ship"), ship_errors);
  t.sample("rewind_errors_total", with("kind", "retention"), retention_failures);
  return t.text();
}

}  // namespace rwd
