// What rewind-server --metrics serves (docs/METRICS.md): per volume, what the store
// holds and the sessions and refusals; for the server, its connections and the
// refusals of peers no token admitted (counted without a volume: a name such a peer
// claims is not used as a label, so it cannot grow the endpoint's answer).
//
// The connections' coroutines report into it under one mutex, a few times a session
// and once per acknowledgement; a scrape renders it.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace rwd {

class ServerMetrics {
 public:
  enum class Purpose { kShip, kRead };
  void session_started(const std::string& volume, Purpose p);
  void session_ended(const std::string& volume, Purpose p);
  // A peer turned away with the protocol's error `reason`; `volume` empty before a
  // token admitted one.
  void refused(const std::string& volume, const std::string& reason);
  // What the store holds of `volume` as a shipping session begins: its last seq and
  // the bytes it takes.
  void holding(const std::string& volume, uint64_t last_seq, uint64_t stored_bytes,
               uint64_t now_ns);
  // An acknowledgement of everything up to `last_seq`, after `added` more bytes were
  // stored.
  void acked(const std::string& volume, uint64_t last_seq, uint64_t added, uint64_t now_ns);

  // The text format; `connections` open now.
  std::string render(unsigned connections) const;

 private:
  struct Volume {
    bool held = false;  // a shipping session told what the store holds
    uint64_t last_seq = 0, stored_bytes = 0, received_bytes = 0, last_ack_ns = 0;
    uint64_t sessions_total[2] = {0, 0}, sessions_open[2] = {0, 0};
    std::map<std::string, uint64_t> refusals;  // reason -> count
  };
  mutable std::mutex mu_;
  std::map<std::string, Volume> volumes_;  // "": refusals before a volume was admitted
};

}  // namespace rwd
