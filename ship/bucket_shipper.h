// The plugin's shipper when the volume goes to a bucket (ship=s3://): a thread that
// stores the journal's durable bytes there through a BucketWriter, at most every
// bucket_interval, backing off and starting again after errors. A refusal (another
// writer or volume owns the prefix) stops it for good, with phase "refused".
//
// With ship-key= the copy is sealed, so it cannot be the journal's own bytes: the
// records go in their shipped form (ShipEncoder: compressed, then sealed) and the base
// as its sealed form into a spool, JOURNAL/ship-spool/spool/NAME, that a BucketVolume
// ships as rewind-server's store in a bucket does (bucket_store.h): the same objects
// under the same prefix, read the same way. The spool keeps only what the bucket does
// not hold whole (the base while it is stored, the open segment).
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "rewind/journal/journal_tail.h"
#include "rewind/ship/bucket_store.h"
#include "rewind/ship/bucket_writer.h"
#include "rewind/ship/shipper.h"

namespace rwd {

// The directory in a journal directory that holds the spool of a sealed copy in a
// bucket (as rewind-server's --cache holds its spools).
inline constexpr const char* kShipSpoolName = "ship-spool";

class Shipper::BucketImpl {
 public:
  BucketImpl(JournalOwner& owner, std::string dir, ShipperOptions opts, Logger logger);
  ~BucketImpl() { stop(); }
  void stop();
  ShipperStatus status() const;

 private:
  void loop();
  // One session: open the writer, store the base if need be, then ship until stopped
  // or an error.
  Status session(bool* progressed);
  // A session of a sealed copy, through the spool.
  Status spooled_session(bool* progressed);
  // Sends the base snapshot of `m` sealed into the spool `v`, from what it holds.
  Status spool_base(const Manifest& m, ReceivingVolume& v, uint64_t from);
  // Waits up to `d` or until stopped; false if stopped.
  bool wait_for(std::chrono::nanoseconds d);
  void update_lag(const Manifest& m, const Journal::Position& durable, uint64_t acked);
  void log(LogLevel level, const std::string& m) { log_to(logger_, level, "ship: " + m); }

  JournalOwner& owner_;
  const std::string dir_;
  const ShipperOptions opts_;
  Logger logger_;
  mutable std::mutex mu_;  // guards stopping_ and status_
  std::condition_variable cv_;
  bool stopping_ = false;
  ShipperStatus status_;
  // The time of the oldest record the bucket lacks (0: none): the lag grows from it
  // while a request to the bucket hangs.
  uint64_t lag_since_ns_ = 0;
  // The thread's alone:
  JournalTail tail_;
  uint64_t oldest_for_ = UINT64_MAX;  // the acked seq oldest_ns_ was read for
  uint64_t oldest_ns_ = 0;            // time of the oldest record the bucket lacks
  std::chrono::steady_clock::time_point last_lag_warning_{};
  bool warned_form_ = false;  // that the copy's base is in the clear
  std::thread thread_;        // last: started once the members above are ready
};

}  // namespace rwd
