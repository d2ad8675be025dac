#include "bucket_shipper.h"

#include <pthread.h>

#include <fmt/format.h>

#include "rewind/base/clock.h"
#include "rewind/base/file.h"
#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/ship_client.h"
#include "rewind/ship/ship_form.h"

namespace rwd {

using Clock = std::chrono::steady_clock;

namespace {

// "PUT s3://b/k: 503 SlowDown: ..." -> "503 SlowDown: ...".
std::string failure_kind(const std::string& message) {
  const size_t at = message.find("s3://");
  if (at == std::string::npos) return message;
  const size_t colon = message.find(": ", at);
  return colon == std::string::npos ? message : message.substr(colon + 2);
}

}  // namespace

Shipper::BucketImpl::BucketImpl(JournalOwner& owner, std::string dir, ShipperOptions opts,
                                Logger logger)
    : owner_(owner),
      dir_(std::move(dir)),
      opts_(std::move(opts)),
      logger_(std::move(logger)),
      tail_(dir_),
      thread_([this] {
        ::pthread_setname_np(::pthread_self(), "rewind-ship");
        loop();
      }) {}

void Shipper::BucketImpl::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

ShipperStatus Shipper::BucketImpl::status() const {
  std::lock_guard lk(mu_);
  ShipperStatus s = status_;
  s.lag_seconds = lag_seconds_at(lag_since_ns_, wall_clock_ns());
  return s;
}

bool Shipper::BucketImpl::wait_for(std::chrono::nanoseconds d) {
  std::unique_lock lk(mu_);
  return !cv_.wait_for(lk, d, [&] { return stopping_; });
}

void Shipper::BucketImpl::loop() {
  auto delay = opts_.retry_min;
  std::string last_logged;
  for (;;) {
    bool progressed = false;
    Status st = session(&progressed);
    bool refused = st.code() == Status::Code::kBusy;
    {
      std::lock_guard lk(mu_);
      status_.connected = false;
      status_.phase = refused ? "refused" : "connecting";
      if (!st) status_.error = st.message();
      if (stopping_) return;
      if (!refused) ++status_.reconnects;
    }
    if (refused) {
      // Another writer or volume owns the prefix: trying again would interleave.
      log(LogLevel::kError, st.message() + "; shipping stopped, the local segments are kept");
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_; });
      return;
    }
    if (progressed) delay = opts_.retry_min;
    // Each kind of failure is said once, not at every retry nor for every request it
    // hits: what the server answered, without the request.
    const std::string kind = failure_kind(st.message());
    if (!st && kind != last_logged) {
      log(LogLevel::kWarning,
          fmt::format("{}; retrying every {}s or less, keeping the local segments", st.message(),
                      std::chrono::duration_cast<std::chrono::seconds>(opts_.retry_max).count()));
      last_logged = kind;
    }
    const auto retry_at = Clock::now() + delay;
    while (Clock::now() < retry_at) {
      const Journal::Position durable = owner_.durable_position();
      const auto m = owner_.snapshot();
      update_lag(*m, durable, status().acked_seq);
      if (!wait_for(std::min<Clock::duration>(retry_at - Clock::now(), std::chrono::seconds(1))))
        return;
    }
    delay = std::min(delay * 2, opts_.retry_max);
  }
}

Status Shipper::BucketImpl::session(bool* progressed) {
  if (opts_.form.key) return spooled_session(progressed);
  auto client = S3Client::open(opts_.s3, *opts_.bucket);
  if (!client) return client.status();
  Journal::Position durable = owner_.durable_position();
  auto m = owner_.snapshot();
  const uint64_t requests0 = status().requests;
  // The requests of this session, counted into the status as it goes.
  struct Count {
    BucketImpl* self;
    const S3Client* client;
    uint64_t base;
    ~Count() { update(); }
    void update() {
      std::lock_guard lk(self->mu_);
      self->status_.requests = base + client->requests();
    }
  };
  auto opened = BucketWriter::open(std::move(*client), dir_, *m, durable.seq, logger_);
  // (The requests of a session that fails to open are not counted.)
  if (!opened) return opened.status();
  BucketWriter& w = **opened;
  Count count{this, &w.client(), requests0};
  {
    std::lock_guard lk(mu_);
    status_.connected = true;
    status_.error.clear();
  }
  uint64_t sent = 0;
  if (!w.has_base()) {
    {
      std::lock_guard lk(mu_);
      status_.phase = "base";
    }
    const auto started = Clock::now();
    REWIND_RETURN_IF_ERROR(w.store_base(*m, &sent));
    log(LogLevel::kInfo,
        fmt::format(
            "stored the base snapshot in {} ({} of {} bytes sent) in {:.1f}s, as generation {}",
            opts_.bucket->uri(), sent, m->image_size,
            std::chrono::duration<double>(Clock::now() - started).count(), w.generation()));
  }
  *progressed = true;
  uint64_t acked = *w.shipped_seq();
  owner_.note_shipped(acked);
  {
    std::lock_guard lk(mu_);
    status_.phase = "records";
    status_.acked_seq = acked;
    status_.wire_bytes += sent;
  }
  auto last_ship = Clock::now() - opts_.bucket_interval;
  for (;;) {
    durable = owner_.durable_position();
    m = owner_.snapshot();
    update_lag(*m, durable, acked);
    if (w.behind(*m, durable)) {
      // New bytes (or history the journal's retention changed) go at most every
      // interval: one tail piece and one manifest each.
      const auto due = last_ship + opts_.bucket_interval;
      if (Clock::now() < due) {
        if (!wait_for(due - Clock::now())) return Status::ok();
        continue;
      }
      last_ship = Clock::now();
      uint64_t bytes = 0;
      REWIND_RETURN_IF_ERROR(w.ship(*m, durable, &bytes));
      const uint64_t now_acked = *w.shipped_seq();
      if (now_acked > acked) {
        acked = now_acked;
        owner_.note_shipped(acked);
      }
      count.update();
      std::lock_guard lk(mu_);
      status_.acked_seq = acked;
      status_.wire_bytes += bytes;
      status_.record_bytes += bytes;
      status_.rtt_ms = std::chrono::duration<double, std::milli>(Clock::now() - last_ship).count();
      continue;
    }
    if (!wait_for(opts_.poll)) return Status::ok();
  }
}

Status Shipper::BucketImpl::spool_base(const Manifest& m, ReceivingVolume& v, uint64_t from) {
  auto base = File::open(base_path(dir_, m.base_file), O_RDONLY);
  if (!base) return base.status();
  ShippedBaseRuns runs(*base, m, &*opts_.form.key);
  std::vector<uint8_t> chunk;
  for (uint64_t at = from; at < runs.size();) {
    auto run = runs.next(at, &chunk);
    if (!run) return run.status();
    auto a = run->zero ? v.base_zero(at, run->length) : v.base_data(at, chunk);
    if (!a) return a.status();
    auto next = runs.went_on(at, a->base_bytes);
    if (!next) return next.status();
    at = *next;
    std::lock_guard lk(mu_);
    if (stopping_) return Status::ok();
    status_.durable_seq = owner_.durable_position().seq;
  }
  return Status::ok();
}

Status Shipper::BucketImpl::spooled_session(bool* progressed) {
  auto split = split_volume_location(*opts_.bucket);
  if (!split) return Status::busy(split.status().message());
  BucketStoreOptions o;
  o.s3 = opts_.s3;
  o.where = split->first;
  o.cache_dir = join_path(dir_, kShipSpoolName);
  REWIND_RETURN_IF_ERROR(prepare_bucket_store(&o, logger_));
  const uint64_t requests0 = status().requests;
  auto opened = BucketVolume::open(o, split->second, logger_);
  if (!opened) return opened.status();
  BucketVolume& v = **opened;
  auto count = [&] {
    std::lock_guard lk(mu_);
    status_.requests = requests0 + v.requests();
  };
  {
    std::lock_guard lk(mu_);
    status_.connected = true;
    status_.error.clear();
  }
  // What the copy holds: nothing, part of a base, or a base and records.
  auto m = owner_.snapshot();
  const std::string uri = opts_.bucket->uri();
  auto plan = plan_copy(v.state(), *m, owner_.durable_position().seq, true, uri,
                        "ship this volume to a prefix of its own");
  if (!plan) return Status::busy(plan.status().message());
  if (!plan->warning.empty() && !warned_form_) {
    warned_form_ = true;
    log(LogLevel::kWarning, plan->warning);
  }
  if (plan->send_base) {
    {
      std::lock_guard lk(mu_);
      status_.phase = "base";
    }
    const auto started = Clock::now();
    proto::BaseBegin bb = base_begin_of(*m);
    bb.flags = proto::kFlagSealedBase;
    auto a = v.begin_base(bb);
    if (!a) return a.status();
    REWIND_RETURN_IF_ERROR(spool_base(*m, v, a->base_bytes));
    count();
    if (!wait_for(std::chrono::nanoseconds(0))) return Status::ok();
    log(LogLevel::kInfo,
        fmt::format("stored the sealed base snapshot in {} in {:.1f}s, through {}", uri,
                    std::chrono::duration<double>(Clock::now() - started).count(), o.cache_dir));
  }
  uint64_t acked = plan->after_seq;
  *progressed = true;
  owner_.note_shipped(acked);
  {
    std::lock_guard lk(mu_);
    status_.phase = "records";
    status_.acked_seq = acked;
  }
  // The records after `acked`, in their shipped form, appended to the spool and
  // committed (stored in the bucket) at most every bucket_interval, as the plain
  // session stores the journal's own bytes.
  JournalTail records(dir_);
  records.seek(acked);
  ShipEncoder encoder(opts_.form, m->volume_id);
  auto last_ship = Clock::now() - opts_.bucket_interval;
  bool backlog = false;  // the last round stopped short of the durable records
  std::vector<RecordHeader> hs;
  std::vector<std::vector<uint8_t>> payloads;
  for (;;) {
    const Journal::Position durable = owner_.durable_position();
    m = owner_.snapshot();
    update_lag(*m, durable, acked);
    if (durable.seq <= acked) {
      if (!wait_for(opts_.poll)) return Status::ok();
      continue;
    }
    const auto due = last_ship + opts_.bucket_interval;
    if (Clock::now() < due && !backlog) {
      if (!wait_for(due - Clock::now())) return Status::ok();
      continue;
    }
    if (backlog && !wait_for(std::chrono::nanoseconds(0))) return Status::ok();
    last_ship = Clock::now();
    // A round: up to kRoundBytes, appended (and synced) to the spool in batches, then
    // stored in the bucket; a backlog goes in rounds one after the other.
    constexpr uint64_t kBatchBytes = 8u << 20, kRoundBytes = 128u << 20;
    uint64_t record_bytes = 0, wire_bytes = 0;
    backlog = true;
    while (record_bytes < kRoundBytes) {
      hs.clear(), payloads.clear();
      uint64_t batch = 0;
      while (batch < kBatchBytes) {
        RecordHeader h;
        std::vector<uint8_t> p;
        auto got = records.next(*m, durable.seq, &h, &p);
        if (!got) return got.status();
        if (!*got) {
          backlog = false;
          break;
        }
        batch += format::record_span(h.payload_length);
        encoder.encode(&h, &p);
        wire_bytes += format::record_span(h.payload_length);
        hs.push_back(h);
        payloads.push_back(std::move(p));
      }
      record_bytes += batch;
      if (!hs.empty()) {
        proto::Records r{hs, {payloads.begin(), payloads.end()}};
        auto a = v.append(r);
        if (!a) return a.status();
      }
      if (!backlog) break;
    }
    auto a = v.commit();
    count();
    if (!a) return a.status();
    if (a->durable_seq > acked) {
      acked = a->durable_seq;
      owner_.note_shipped(acked);
    }
    std::lock_guard lk(mu_);
    status_.acked_seq = acked;
    status_.wire_bytes += wire_bytes;
    status_.record_bytes += record_bytes;
    status_.rtt_ms = std::chrono::duration<double, std::milli>(Clock::now() - last_ship).count();
  }
}

void Shipper::BucketImpl::update_lag(const Manifest& m, const Journal::Position& durable,
                                     uint64_t acked) {
  uint64_t bytes = 0;
  double lag = 0;
  if (durable.seq > acked) {
    bytes = bytes_to_durable(m, {0, 0}, acked, durable);
    if (oldest_for_ != acked) {
      // The oldest record the bucket lacks, read once per shipped position.
      RecordHeader h;
      std::vector<uint8_t> p;
      tail_.seek(acked);
      auto got = tail_.next(m, durable.seq, &h, &p);
      if (got && *got) {
        oldest_ns_ = h.time_ns;
        oldest_for_ = acked;
      }
    }
    if (oldest_for_ == acked) lag = lag_seconds_at(oldest_ns_, wall_clock_ns());
  }
  {
    std::lock_guard lk(mu_);
    status_.durable_seq = durable.seq;
    status_.lag_bytes = bytes;
    lag_since_ns_ = lag > 0 ? oldest_ns_ : 0;
  }
  const auto t = Clock::now();
  if (lag > std::chrono::duration<double>(opts_.lag_warn).count() &&
      t - last_lag_warning_ > std::chrono::minutes(1)) {
    last_lag_warning_ = t;
    log(LogLevel::kWarning,
        fmt::format("{} is {:.0f}s ({} bytes) behind, past ship-lag-warn={}s; the local segments "
                    "are kept until it has them",
                    opts_.bucket->uri(), lag, bytes,
                    std::chrono::duration_cast<std::chrono::seconds>(opts_.lag_warn).count()));
  }
}

}  // namespace rwd
