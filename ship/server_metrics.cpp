#include "server_metrics.h"

#include "rewind/base/metrics.h"

namespace rwd {

namespace {

size_t index_of(ServerMetrics::Purpose p) {
  return p == ServerMetrics::Purpose::kShip ? 0 : 1;
}

constexpr const char* kPurposes[] = {"ship", "read"};

}  // namespace

void ServerMetrics::session_started(const std::string& volume, Purpose p) {
  std::lock_guard lk(mu_);
  Volume& v = volumes_[volume];
  ++v.sessions_total[index_of(p)];
  ++v.sessions_open[index_of(p)];
}

void ServerMetrics::session_ended(const std::string& volume, Purpose p) {
  std::lock_guard lk(mu_);
  --volumes_[volume].sessions_open[index_of(p)];
}

void ServerMetrics::refused(const std::string& volume, const std::string& reason) {
  std::lock_guard lk(mu_);
  ++volumes_[volume].refusals[reason];
}

void ServerMetrics::holding(const std::string& volume, uint64_t last_seq, uint64_t stored_bytes,
                            uint64_t now_ns) {
  std::lock_guard lk(mu_);
  Volume& v = volumes_[volume];
  v.held = true;
  v.last_seq = last_seq;
  v.stored_bytes = stored_bytes;
  if (v.last_ack_ns == 0) v.last_ack_ns = now_ns;
}

void ServerMetrics::acked(const std::string& volume, uint64_t last_seq, uint64_t added,
                          uint64_t now_ns) {
  std::lock_guard lk(mu_);
  Volume& v = volumes_[volume];
  v.last_seq = last_seq;
  v.stored_bytes += added;
  v.received_bytes += added;
  v.last_ack_ns = now_ns;
}

std::string ServerMetrics::render(unsigned connections) const {
  using Type = MetricsText::Type;
  MetricsText t;
  t.gauge("rewind_server_connections", "Connections open now.", connections);
  std::lock_guard lk(mu_);
  t.family("rewind_server_refusals_total", Type::kCounter,
           "Peers turned away, by the protocol's error; volume \"\" before a token admitted "
           "one (no HELLO, a bad token, too many connections).");
  for (const auto& [name, v] : volumes_)
    for (const auto& [reason, n] : v.refusals)
      t.sample("rewind_server_refusals_total", {{"volume", name}, {"reason", reason}}, n);
  t.family("rewind_server_sessions_total", Type::kCounter,
           "Sessions a token admitted, by volume and purpose.");
  for (const auto& [name, v] : volumes_)
    for (size_t i = 0; i < 2 && !name.empty(); ++i)
      t.sample("rewind_server_sessions_total", {{"volume", name}, {"purpose", kPurposes[i]}},
               v.sessions_total[i]);
  t.family("rewind_server_sessions", Type::kGauge, "Sessions open now, by volume and purpose.");
  for (const auto& [name, v] : volumes_)
    for (size_t i = 0; i < 2 && !name.empty(); ++i)
      t.sample("rewind_server_sessions", {{"volume", name}, {"purpose", kPurposes[i]}},
               v.sessions_open[i]);
  // What the store holds, for the volumes shipped to since the server started.
  t.family("rewind_server_stored_bytes", Type::kGauge,
           "Bytes of the store the volume takes (measured when a shipping session begins, "
           "then counted as frames are stored).");
  for (const auto& [name, v] : volumes_)
    if (v.held) t.sample("rewind_server_stored_bytes", {{"volume", name}}, v.stored_bytes);
  t.family("rewind_server_last_seq", Type::kGauge,
           "The store holds every record of the volume up to this seq.");
  for (const auto& [name, v] : volumes_)
    if (v.held) t.sample("rewind_server_last_seq", {{"volume", name}}, v.last_seq);
  t.family("rewind_server_received_bytes_total", Type::kCounter,
           "Bytes stored for the volume (base snapshot and records) since the server started.");
  for (const auto& [name, v] : volumes_)
    if (v.held)
      t.sample("rewind_server_received_bytes_total", {{"volume", name}}, v.received_bytes);
  t.family("rewind_server_last_ack_timestamp_seconds", Type::kGauge,
           "When the server last acknowledged records of the volume (or a session began), as a "
           "Unix time.");
  for (const auto& [name, v] : volumes_)
    if (v.held)
      t.sample("rewind_server_last_ack_timestamp_seconds", {{"volume", name}},
               static_cast<double>(v.last_ack_ns) / 1e9);
  return t.text();
}

}  // namespace rwd
