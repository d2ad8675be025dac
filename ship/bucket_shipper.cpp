#include "bucket_shipper.h"

#include <pthread.h>

#include <fmt/format.h>

#include "rewind/base/clock.h"

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
  const uint64_t now = wall_clock_ns();
  if (lag_since_ns_ != 0 && now > lag_since_ns_)
    s.lag_seconds = static_cast<double>(now - lag_since_ns_) / 1e9;
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
    const uint64_t now = wall_clock_ns();
    if (oldest_for_ == acked && now > oldest_ns_) lag = static_cast<double>(now - oldest_ns_) / 1e9;
  }
  {
    std::lock_guard lk(mu_);
    status_.durable_seq = durable.seq;
    status_.lag_bytes = bytes;
    status_.lag_seconds = lag;
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
