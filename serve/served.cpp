#include "rewind/serve/served.h"

#include "served_threads.h"

#include <algorithm>
#include <charconv>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rewind/base/clock.h"
#include "rewind/base/json.h"
#include "rewind/history/retention.h"
#include "rewind/replay/view.h"
#include "rewind/ship/bucket_reader.h"
#include "rewind/ship/metrics_endpoint.h"
#include "rewind/ship/shipper.h"
#include "rewind/volume/control.h"
#include "rewind/volume/volume.h"

namespace rwd {

Served::Served(ServeConfig config, Logger logger)
    : config_(std::move(config)), logger_(std::move(logger)) {}

Served::~Served() {
  if (Status st = stop(); !st) log_to(logger_, LogLevel::kError, "shutdown: " + st.message());
}

namespace {

// What the operator of `nbdkit rewind` can do about a volume that does not open.
Status with_advice(const Status& st, const std::string& journal_dir) {
  switch (st.code()) {
    case Status::Code::kCorruption:
      return Status::corruption(fmt::format(
          "{}. Not serving it read-write, since new writes would extend a history that cannot "
          "be restored. `rewind verify {}` lists the damage; `rewind restore` recovers any point "
          "before it; to serve the image with a new history, move the journal aside",
          st.message(), journal_dir));
    case Status::Code::kBusy:
      return Status::busy(st.message() + "; stop it first");
    default:
      return st;
  }
}

// A sealed copy (one shipped with ship-key=) is served with the keys key= gave, which
// must open it: tried at once, so that a missing or wrong key is refused at start, not
// at the first read.
Status check_view_keys(JournalView& v, const ServeConfig& c) {
  if (v.history().sealed() && c.view_keys.empty())
    return Status::invalid(
        fmt::format("journal={} is a sealed copy (shipped with ship-key=): give its key file "
                    "with key=@FILE",
                    c.journal_dir()));
  v.set_keys(&c.view_keys);
  return v.check_keys().with_context("journal=" + c.journal_dir());
}

Result<std::unique_ptr<JournalView>> open_view(const ServeConfig& c, const Logger& logger) {
  auto v = JournalView::open(c.journal_dir(), c.target, logger);
  if (!v) return v.status();
  REWIND_RETURN_IF_ERROR(check_view_keys(**v, c));
  // Without the mappings (say, more segments than vm.max_map_count allows) reads use
  // pread: slower for data read again, the same otherwise.
  if (Status st = (*v)->map_segments(); !st)
    log_to(logger, LogLevel::kWarning,
           st.message() + "; the segments not mapped are read with pread");
  if (c.image_reads) (*v)->use_image(logger);
  for (const std::string& d : (*v)->damaged_segments())
    log_to(logger, LogLevel::kWarning,
           d + "; reads that need what is lost from it fail, the rest are served");
  log_to(logger, LogLevel::kInfo,
         fmt::format("serving {} read-only at seq {}{}{}", c.journal_dir(), (*v)->seq(),
                     (*v)->note().empty() ? "" : ": ", (*v)->note()));
  return v;
}

// A view of a volume in a bucket: the cache, then the view reading through it.
Result<std::unique_ptr<JournalView>> open_bucket_view(const ServeConfig& c, const Logger& logger,
                                                      std::shared_ptr<BucketCache>* cache) {
  auto client = S3Client::open(c.view_s3, *c.view_bucket);
  if (!client) return client.status();
  BucketReadOptions o;
  o.cache_limit = c.cache_size;
  auto opened = BucketCache::open(std::move(*client), o, logger);
  if (!opened) return opened.status();
  auto v = JournalView::open((*opened)->dir(), c.target, logger, /*repair=*/false);
  if (!v) return v.status();
  (*v)->set_fetcher(*opened);
  REWIND_RETURN_IF_ERROR(check_view_keys(**v, c));
  *cache = std::move(*opened);
  log_to(logger, LogLevel::kInfo,
         fmt::format("serving {} read-only at seq {}{}{}, through a cache of at most {} bytes",
                     c.journal_dir(), (*v)->seq(), (*v)->note().empty() ? "" : ": ", (*v)->note(),
                     c.cache_size));
  return v;
}

}  // namespace

Result<std::unique_ptr<Served>> Served::open(ServeConfig config, Logger logger) {
  std::unique_ptr<Served> s(new Served(std::move(config), std::move(logger)));
  // Bound first, before nbdkit forks and before the journal is touched: a port in use
  // stops the start and changes nothing.
  if (!s->config_.metrics.empty()) {
    auto m = MetricsEndpoint::listen(s->config_.metrics, s->logger_);
    if (!m) return m.status().with_context("metrics=" + s->config_.metrics);
    s->metrics_ = std::move(*m);
    log_to(s->logger_, LogLevel::kInfo, "metrics at " + s->metrics_->url());
  }
  if (s->config_.view_bucket) {
    auto v = open_bucket_view(s->config_, s->logger_, &s->bucket_);
    if (!v) return v.status();
    s->view_ = std::move(*v);
  } else if (s->config_.view()) {
    auto v = open_view(s->config_, s->logger_);
    if (!v) return v.status();
    s->view_ = std::move(*v);
  } else {
    auto v = Volume::open(s->config_.volume, s->logger_);
    if (!v) return with_advice(v.status(), s->config_.journal_dir());
    s->volume_ = std::move(*v);
  }
  return s;
}

uint64_t Served::size() const {
  return view_ ? view_->size() : volume_->size();
}

Status Served::start() {
  if (!volume_ || threads_) return Status::ok();
  threads_ = std::make_unique<Threads>();
  volume_->start();
  if (config_.volume.shipped)
    threads_->shipper =
        std::make_unique<Shipper>(*volume_, config_.journal_dir(), config_.ship, logger_);
  if (config_.retention.active())
    threads_->retention =
        std::make_unique<Retention>(*volume_, config_.journal_dir(), config_.retention, logger_);
  if (metrics_) metrics_->start([this] { return metrics_text(wall_clock_ns()); });
  if (config_.control.empty()) return Status::ok();
  auto server = ControlServer::start(
      config_.control, [this](const std::string& request) { return control(request); }, logger_);
  if (!server) return server.status();
  threads_->control = std::move(*server);
  return Status::ok();
}

Status Served::stop() {
  if (metrics_) metrics_->stop();
  if (threads_) {
    if (threads_->control) threads_->control->stop();
    if (threads_->shipper) threads_->shipper->stop();
    if (threads_->retention) threads_->retention->stop();
    threads_.reset();
  }
  if (!volume_ || closed_) return Status::ok();
  closed_ = true;
  return volume_->close();
}

std::string Served::control(const std::string& request) {
  try {
    if (request.starts_with("MARK ")) {
      auto m = volume_->mark(request.substr(5));
      if (!m) return "ERR " + m.status().message();
      return fmt::format("OK {} {}", m->seq, m->time_ns);
    }
    if (request == "STATUS") return "OK " + json_text(status());
    if (request.starts_with("HOLD ") || request.starts_with("GMARK ") ||
        request.starts_with("RELEASE ") || request.starts_with("DURABLE "))
      return group_control(request);
    return "ERR unknown request; send MARK <name> or STATUS";
  } catch (const std::exception& e) {
    return std::string("ERR ") + e.what();
  }
}

namespace {

// The words of a request line, split at single spaces.
std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> w;
  size_t pos = 0;
  for (;;) {
    const size_t sp = line.find(' ', pos);
    w.push_back(line.substr(pos, sp - pos));
    if (sp == std::string::npos) return w;
    pos = sp + 1;
  }
}

bool parse_u64(const std::string& text, int base, uint64_t* v) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *v, base);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string Served::group_control(const std::string& request) {
  const std::vector<std::string> w = words_of(request);
  uint64_t token = 0, n = 0;
  if (w[0] == "HOLD") {
    // HOLD <token> <ms> <name>
    if (w.size() != 4 || !parse_u64(w[1], 16, &token) || !parse_u64(w[2], 10, &n) || n == 0 ||
        n > 30000)
      return "ERR bad HOLD; send HOLD <token (hex)> <ms, 1-30000> <mark name>";
    Status st = volume_->hold(token, std::chrono::milliseconds(n), w[3]);
    return st ? "OK" : "ERR " + st.message();
  }
  if (w[0] == "GMARK") {
    // GMARK <token> <name> <group> <volume,volume,...>
    if (w.size() != 5 || !parse_u64(w[1], 16, &token))
      return "ERR bad GMARK; send GMARK <token> <name> <group> <volume,volume,...>";
    MarkPayload p;
    p.name = w[2];
    p.group = w[3];
    for (size_t pos = 0;;) {
      const size_t comma = w[4].find(',', pos);
      p.volumes.push_back(w[4].substr(pos, comma - pos));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    auto hex = [](const std::string& t) {
      return !t.empty() && t.size() <= 32 &&
             t.find_first_not_of("0123456789abcdef") == std::string::npos;
    };
    if (!hex(p.group) || p.volumes.size() > 16 ||
        !std::all_of(p.volumes.begin(), p.volumes.end(), hex))
      return "ERR bad GMARK: the group and the volumes are lowercase hex ids, at most 16 volumes";
    auto m = volume_->queue_group_mark(token, p);
    if (!m) return "ERR " + m.status().message();
    return fmt::format("OK {} {}", m->seq, m->time_ns);
  }
  if (w[0] == "RELEASE") {
    if (w.size() != 2 || !parse_u64(w[1], 16, &token))
      return "ERR bad RELEASE; send RELEASE <token>";
    Status st = volume_->release(token);
    return st ? "OK" : "ERR " + st.message();
  }
  // DURABLE <seq>
  if (w.size() != 2 || !parse_u64(w[1], 10, &n)) return "ERR bad DURABLE; send DURABLE <seq>";
  if (n > volume_->queue().last_seq())
    return fmt::format("ERR seq {} is beyond the newest, {}", n, volume_->queue().last_seq());
  Status st = volume_->wait_durable(n);
  return st ? "OK" : "ERR " + st.message();
}

nlohmann::ordered_json Served::status() const {
  const WriteQueue& q = volume_->queue();
  nlohmann::ordered_json j = {{"last_seq", q.last_seq()},
                              {"durable_seq", q.durable_seq()},
                              {"queued_bytes", q.queued_bytes()},
                              {"size", volume_->size()}};
  if (metrics_) j["metrics"] = metrics_->url();
  if (threads_ && threads_->shipper)
    j["ship"] = ship_status_json(threads_->shipper->status(), config_.ship);
  return j;
}

}  // namespace rwd
