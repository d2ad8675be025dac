// The plugin's shipper (docs/PROTOCOL.md, "Shipping"): a thread that sends a served
// volume's journal to rewind-server as its records become durable locally, so that
// the server lags by seconds, not by segments.
//
// It reads the records from the journal's segment files (the open one included, up
// to the durable end), never from the write path: writes never wait for it, and what
// the server lacks stays on the local disk (retention keeps the segments after the
// shipped position). Sending is pipelined within a window of bytes in flight that
// adapts to the link: it grows while acknowledgements come back as fast as on an idle
// link, and halves when their round trip grows (a queue somewhere: the link or the
// server's disk); ship-rate= caps the bytes per second on top of that. After any
// error it reconnects, backing off, and resends from what the server acknowledged.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/journal_owner.h"
#include "rewind/ship/s3_client.h"
#include "rewind/ship/ship_client.h"
#include "rewind/ship/ship_form.h"

namespace rwd {

struct ShipperOptions {
  ShipOptions link;  // server, volume, token, TLS; link.timeout bounds every wait on the server
  // ship=s3://BUCKET/PREFIX: to object storage instead of a log server (bucket_writer.h);
  // the new bytes go at most every bucket_interval, as one tail piece.
  std::optional<S3Location> bucket;
  S3Options s3;
  std::chrono::nanoseconds bucket_interval = std::chrono::seconds(1);
  uint64_t rate = 0;  // bytes per second on the wire at most (0: no cap)
  // ship-compress=: records the journal stores as they are go compressed (to a log
  // server; a bucket gets the journal's segments as they are).
  ShipForm form;
  // Past this lag the shipper warns in the log (once a minute while it lasts).
  std::chrono::nanoseconds lag_warn = std::chrono::minutes(5);
  uint32_t frame_bytes = 1u << 20;  // RECORDS frames of about this size
  std::chrono::nanoseconds poll = std::chrono::milliseconds(20);  // for new durable records
  std::chrono::nanoseconds ping = std::chrono::seconds(5);        // on an idle link
  std::chrono::nanoseconds retry_min = std::chrono::seconds(1);
  std::chrono::nanoseconds retry_max = std::chrono::seconds(30);
};

struct ShipperStatus {
  bool connected = false;
  // "connecting", "base" (sending the base snapshot) or "records"; "refused" when a
  // bucket's prefix belongs to another writer or volume (it then stops for good)
  std::string phase = "connecting";
  uint64_t acked_seq = 0;     // the server holds every record up to this one
  uint64_t durable_seq = 0;   // the local journal's
  uint64_t lag_bytes = 0;     // journal bytes durable locally that the server lacks
  double lag_seconds = 0;     // age of the oldest record the server lacks
  uint64_t wire_bytes = 0;    // frames sent (headers included) since start
  uint64_t record_bytes = 0;  // journal bytes the server acknowledged since start
  uint64_t window = 0;        // bytes allowed in flight now
  double rtt_ms = 0;          // smoothed round trip of RECORDS to ACK
  uint64_t backoffs = 0;      // times the window was cut for a grown round trip
  uint64_t reconnects = 0;
  uint64_t requests = 0;  // to a bucket: S3 requests sent since start (0 to a log server)
  std::string error;      // the last error, if the last session ended in one
};

class Shipper {
 public:
  // Starts the thread (rewind-ship), which ships the journal `owner` (a served
  // volume) keeps in `journal_dir`: it reads the owner's durable position and
  // manifest, and tells it what the server holds (note_shipped).
  Shipper(JournalOwner& owner, std::string journal_dir, ShipperOptions opts, Logger logger);
  ~Shipper();
  Shipper(const Shipper&) = delete;
  Shipper& operator=(const Shipper&) = delete;

  // Stops the thread; what is not acknowledged yet goes at the next start.
  void stop();
  ShipperStatus status() const;

  class Impl;
  class BucketImpl;

 private:
  std::unique_ptr<Impl> impl_;  // to a log server
  std::unique_ptr<BucketImpl> bucket_;
};

// status() as a JSON object, for the plugin's control socket and `rewind info`
// (docs/CONTROL.md).
nlohmann::ordered_json ship_status_json(const ShipperStatus& s, const ShipperOptions& o);

// ShipperStatus::lag_seconds at `now_ns`: the age of the oldest record the copy lacks,
// written at `oldest_ns` (0 when it lacks none).
double lag_seconds_at(uint64_t oldest_ns, uint64_t now_ns);

}  // namespace rwd
