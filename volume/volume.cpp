#include "rewind/volume/volume.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "rewind/format/format.h"
#include "rewind/format/segment_index.h"
#include "rewind/journal/journal_dir.h"
#include "rewind/journal/redo.h"

namespace rwd {

using format::RecordType;

Result<std::unique_ptr<Volume>> Volume::open(const VolumeOptions& opts, Logger logger) {
  std::unique_ptr<Volume> v(new Volume());
  v->opts_ = opts;
  v->logger_ = std::move(logger);
  const std::string& dir = opts.journal_dir;

  auto opened = open_journal_dir(opts.image_path, dir, opts.full_check, v->logger_);
  if (!opened) return opened.status();
  v->lock_ = std::move(opened->lock);
  Manifest& m = opened->manifest;

  auto image = File::open(opts.image_path, O_RDWR);
  if (!image) return image.status();
  v->image_ = std::move(*image);
  v->size_ = opened->image_size;

  uint64_t last_seq = m.base_seq, last_time = m.base_time_ns;
  if (!m.segments.empty()) {
    last_seq = m.segments.back().last_seq;
    last_time = m.segments.back().last_time_ns;
  }
  if (m.checkpoint_seq > last_seq)
    return Status::corruption(fmt::format(
        "manifest of {} says the image is current to seq {} but the journal ends at seq {}", dir,
        m.checkpoint_seq, last_seq));
  if (m.checkpoint_seq < last_seq) {
    // Unclean stop: the image holds a prefix of the journal; redo the rest.
    log_to(v->logger_, LogLevel::kInfo,
           fmt::format("redoing journal records {}..{} onto image {}", m.checkpoint_seq + 1,
                       last_seq, opts.image_path));
    REWIND_RETURN_IF_ERROR(redo_records(dir, m, m.checkpoint_seq, v->image_));
    REWIND_RETURN_IF_ERROR(v->image_.datasync());
    m.checkpoint_seq = last_seq;
    REWIND_RETURN_IF_ERROR(m.store(dir));
  }
  for (const ManifestMark& mk : m.marks) v->marks_[mk.name] = mk.seq;
  // A shipped volume keeps its shipped position (nothing past the base yet, the first
  // time); a volume no longer shipped drops it, so that retention stops keeping
  // segments for a server it no longer ships to.
  std::optional<uint64_t> shipped;
  if (opts.shipped) shipped = m.shipped_seq.value_or(m.base_seq);
  if (shipped != m.shipped_seq) {
    m.shipped_seq = shipped;
    REWIND_RETURN_IF_ERROR(m.store(dir));
  }
  v->shipped_seq_ = shipped.value_or(0);
  v->applied_seq_ = last_seq;
  v->last_checkpoint_ns_ = wall_clock_ns();
  v->journal_ = std::make_unique<Journal>(dir, std::move(m), opts.journal, v->logger_);
  v->queue_ = std::make_unique<WriteQueue>(opts.queue_max, last_seq + 1, last_time, opts.clock);
  v->queue_->set_coalesce(opts.coalesce);
  return v;
}

Volume::~Volume() {
  // A volume whose open() failed half-way has no queue and nothing to drain.
  if (!closed_ && queue_) (void)close();
}

void Volume::note_shipped(uint64_t seq) {
  uint64_t cur = shipped_seq_.load();
  while (seq > cur && !shipped_seq_.compare_exchange_weak(cur, seq)) {
  }
}

void Volume::start() {
  if (!flusher_.joinable() && !closed_)
    flusher_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "rewind-flusher");  // for top, perf, gdb
      flusher_loop();
    });
}

Status Volume::check_range(const char* what, uint64_t offset, uint64_t length) const {
  if (offset > size_ || length > size_ - offset)
    return Status::invalid(
        fmt::format("{} of {} bytes at offset {} is beyond the end of the volume ({} bytes)", what,
                    length, offset, size_));
  return Status::ok();
}

void Volume::wait_unheld() {
  std::unique_lock lk(hold_mu_);
  while (hold_token_ != 0) {
    if (std::chrono::steady_clock::now() >= hold_until_) {
      log_to(logger_, LogLevel::kWarning,
             fmt::format("the hold for group mark '{}' lapsed before it was released; writes go "
                         "on (the group mark fails if its mark was not queued yet)",
                         hold_name_));
      hold_token_ = 0;
      held_.store(false);
      hold_cv_.notify_all();
      break;
    }
    hold_cv_.wait_until(lk, hold_until_);
  }
}

Status Volume::push(RecordHeader h, Payload payload, bool fua, bool chunk_sums_follow) {
  // A write that passed this check before a hold began may still take its seq after
  // the group's mark: it is then acknowledged after the mark, which a group mark
  // allows (only writes acknowledged before the hold must be before it).
  if (held_.load()) wait_unheld();
  if (fua) h.flags |= format::kFlagFlushPoint;
  auto seq = queue_->push(h, std::move(payload), nullptr, chunk_sums_follow);
  if (!seq) return seq.status();
  switch (h.type) {
    case RecordType::kWrite:
      counters_.writes.add();
      counters_.write_bytes.add(h.length);
      break;
    case RecordType::kZero:
      counters_.zeroes.add();
      counters_.zero_bytes.add(h.length);
      break;
    default:
      counters_.trims.add();
      counters_.trim_bytes.add(h.length);
      break;
  }
  if (fua) return wait_flushed(*seq);
  return Status::ok();
}

Status Volume::wait_flushed(uint64_t seq) {
  const auto since = std::chrono::steady_clock::now();
  Status st = seq == 0 ? queue_->wait_durable() : queue_->wait_durable(seq);
  counters_.flush_seconds.observe(std::chrono::steady_clock::now() - since);
  return st;
}

Status Volume::write(std::span<const uint8_t> data, uint64_t offset, bool fua) {
  REWIND_RETURN_IF_ERROR(check_range("write", offset, data.size()));
  if (data.empty()) return fua ? flush() : Status::ok();
  if (data.size() > format::kMaxPayload)
    return Status::invalid(fmt::format("write of {} bytes is larger than the {} byte maximum",
                                       data.size(), format::kMaxPayload));
  // The one copy of the request path; the checksums (the record's, and the segment
  // index's per chunk, kept after the data) are computed here, in parallel across
  // request threads, rather than in the single flusher.
  const auto length = static_cast<uint32_t>(data.size());
  const bool sums = wants_chunk_sums(RecordType::kWrite, 0, length);
  // One allocation for the bytes and the count of their owners.
  auto buf =
      std::make_shared_for_overwrite<uint8_t[]>(length + (sums ? chunk_count(length) * 8 : 0));
  std::memcpy(buf.get(), data.data(), length);
  const std::span<const uint8_t> payload(buf.get(), length);
  RecordHeader h;
  h.type = RecordType::kWrite;
  h.offset = offset;
  h.length = length;
  h.payload_length = length;
  h.payload_checksum = payload_checksum(payload);
  if (sums) chunk_sums_of(payload, buf.get() + length);
  return push(h, std::move(buf), fua, sums);
}

Status Volume::zero(uint64_t offset, uint64_t length, bool fua) {
  REWIND_RETURN_IF_ERROR(check_range("zero", offset, length));
  if (length == 0) return fua ? flush() : Status::ok();
  RecordHeader h;
  h.type = RecordType::kZero;
  h.offset = offset;
  h.length = length;
  h.payload_checksum = payload_checksum({});
  return push(h, nullptr, fua);
}

Status Volume::trim(uint64_t offset, uint64_t length, bool fua) {
  REWIND_RETURN_IF_ERROR(check_range("trim", offset, length));
  if (length == 0) return fua ? flush() : Status::ok();
  RecordHeader h;
  h.type = RecordType::kTrim;
  h.offset = offset;
  h.length = length;
  h.payload_checksum = payload_checksum({});
  return push(h, nullptr, fua);
}

Status Volume::flush() {
  counters_.flushes.add();
  return wait_flushed(0);
}

Result<Volume::MarkStamp> Volume::queue_mark(const MarkPayload& mark) {
  const std::string text = encode_mark_payload(mark);
  if (text.size() > format::kMaxMarkPayload)
    return Status::invalid(fmt::format("mark '{}' with its group takes {} bytes, over {}",
                                       mark.name, text.size(), format::kMaxMarkPayload));
  std::shared_ptr<uint8_t[]> buf(new uint8_t[text.size()]);
  std::memcpy(buf.get(), text.data(), text.size());
  RecordHeader h;
  h.type = RecordType::kMark;
  h.flags = format::kFlagFlushPoint;
  h.payload_length = static_cast<uint32_t>(text.size());
  h.payload_checksum = payload_checksum(std::span<const uint8_t>(buf.get(), text.size()));
  MarkStamp stamp{};
  auto seq = queue_->push(h, std::move(buf), &stamp.time_ns);
  if (!seq) return seq.status();
  stamp.seq = *seq;
  marks_[mark.name] = stamp.seq;
  return stamp;
}

Result<Volume::MarkStamp> Volume::mark(const std::string& name) {
  REWIND_RETURN_IF_ERROR(check_mark_name(name));
  MarkStamp stamp{};
  {
    std::lock_guard lk(marks_mu_);
    if (auto it = marks_.find(name); it != marks_.end())
      return Status::invalid(
          fmt::format("mark '{}' already exists (seq {}); choose another name", name, it->second));
    {
      std::lock_guard hl(hold_mu_);
      if (hold_token_ != 0 && hold_name_ == name && std::chrono::steady_clock::now() < hold_until_)
        return Status::invalid(
            fmt::format("mark '{}' is being taken by a group mark; choose another name", name));
    }
    auto s = queue_mark(MarkPayload{name, {}, {}});
    if (!s) return s.status();
    stamp = *s;
  }
  // The mark is durable together with everything acknowledged before it.
  REWIND_RETURN_IF_ERROR(queue_->wait_durable(stamp.seq));
  log_to(logger_, LogLevel::kInfo, fmt::format("mark '{}' at seq {}", name, stamp.seq));
  return stamp;
}

Status Volume::hold(uint64_t token, std::chrono::milliseconds max, const std::string& name) {
  REWIND_RETURN_IF_ERROR(check_mark_name(name));
  if (token == 0) return Status::invalid("a hold's token must not be 0");
  std::lock_guard lk(marks_mu_);
  if (auto it = marks_.find(name); it != marks_.end())
    return Status::invalid(
        fmt::format("mark '{}' already exists (seq {}); choose another name", name, it->second));
  std::lock_guard hl(hold_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (hold_token_ != 0 && now < hold_until_)
    return Status::busy(
        fmt::format("another group mark ('{}') holds the volume; try again", hold_name_));
  hold_token_ = token;
  hold_until_ = now + max;
  hold_name_ = name;
  held_.store(true);
  return Status::ok();
}

Result<Volume::MarkStamp> Volume::queue_group_mark(uint64_t token, const MarkPayload& mark) {
  REWIND_RETURN_IF_ERROR(check_mark_name(mark.name));
  std::lock_guard lk(marks_mu_);
  // The hold stays in place while the mark is queued: it cannot lapse meanwhile, as
  // lapsing takes hold_mu_.
  std::lock_guard hl(hold_mu_);
  if (hold_token_ != token || std::chrono::steady_clock::now() >= hold_until_)
    return Status::busy(
        "the group's hold on this volume lapsed before its mark was queued; "
        "nothing was marked here (give a longer --hold-max)");
  if (hold_name_ != mark.name)
    return Status::invalid(
        fmt::format("the hold was taken for mark '{}', not '{}'", hold_name_, mark.name));
  auto s = queue_mark(mark);
  if (s)
    log_to(logger_, LogLevel::kInfo,
           fmt::format("group mark '{}' at seq {} (group {}, {} volumes)", mark.name, s->seq,
                       mark.group, mark.volumes.size()));
  return s;
}

Status Volume::release(uint64_t token) {
  std::lock_guard hl(hold_mu_);
  if (hold_token_ != token)
    return Status::busy("the hold had lapsed or was replaced before it was released");
  hold_token_ = 0;
  held_.store(false);
  hold_cv_.notify_all();
  return Status::ok();
}

Status Volume::read(std::span<uint8_t> buf, uint64_t offset) const {
  REWIND_RETURN_IF_ERROR(check_range("read", offset, buf.size()));
  counters_.reads.add();
  counters_.read_bytes.add(buf.size());
  return queue_->read(buf, offset,
                      [&](std::span<uint8_t> b) { return image_.pread_full(b, offset); });
}

namespace {
struct KindValue {
  Volume::ExtentKind kind;
  KindValue advanced(uint64_t) const { return *this; }
};
}  // namespace

Status Volume::extents(uint64_t offset, uint64_t length,
                       const std::function<void(uint64_t, uint64_t, ExtentKind)>& f) const {
  REWIND_RETURN_IF_ERROR(check_range("extents", offset, length));
  // Queued records first, then the image, as in read(): a record that left the queue
  // before the lookup is already in the image.
  auto queued = queue_->queued_ranges(offset, length);
  ExtentMap<KindValue> map;
  const uint64_t end = offset + length;
  uint64_t pos = offset;
  while (pos < end) {
    off_t data = ::lseek(image_.fd(), static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno != ENXIO)
      return Status::io_error(fmt::format("SEEK_DATA on {} failed", image_.path()), errno);
    uint64_t data_start = data < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(data), end);
    if (data_start > pos) map.insert(pos, data_start - pos, KindValue{ExtentKind::kHole});
    if (data_start >= end) break;
    off_t hole = ::lseek(image_.fd(), static_cast<off_t>(data_start), SEEK_HOLE);
    if (hole < 0)
      return Status::io_error(fmt::format("SEEK_HOLE on {} failed", image_.path()), errno);
    uint64_t data_end = std::min<uint64_t>(static_cast<uint64_t>(hole), end);
    map.insert(data_start, data_end - data_start, KindValue{ExtentKind::kData});
    pos = data_end;
  }
  for (const auto& q : queued)
    map.insert(q.start, q.end - q.start, KindValue{q.zero ? ExtentKind::kZero : ExtentKind::kData});
  for (const auto& [s, e] : map) f(s, e.end, e.value.kind);
  return Status::ok();
}

namespace {
// Where the newest bytes of a batch are, for applying it in offset order.
struct ApplyValue {
  const uint8_t* data;  // null: zeroes
  bool trim;
  ApplyValue advanced(uint64_t n) const { return {data ? data + n : nullptr, trim}; }
};
}  // namespace

Status Volume::apply_batch(std::span<const QueuedRecord> batch) {
  // Newest wins within the batch, so bytes overwritten again are written once, and
  // the image is written in offset order with neighbours merged into one pwritev. The
  // map is built by one sort and a sweep, with no allocation per record.
  const auto map = FlatExtentMap<ApplyValue>::newest_wins(batch.size(), [&](size_t i) {
    const QueuedRecord& r = batch[i];
    const RecordHeader& h = r.header;
    const bool applies =
        h.type == RecordType::kWrite || h.type == RecordType::kZero || h.type == RecordType::kTrim;
    // A superseded record's bytes are in the newer record that covered it.
    if (!applies || (h.flags & format::kFlagSuperseded)) return Interval<ApplyValue>{0, 0, {}};
    return Interval<ApplyValue>{h.offset, h.length,
                                ApplyValue{h.type == RecordType::kWrite ? r.payload.get() : nullptr,
                                           h.type == RecordType::kTrim}};
  });
  std::vector<struct iovec> iov;
  uint64_t run_start = 0, run_end = 0;
  auto flush_run = [&]() -> Status {
    if (iov.empty()) return Status::ok();
    Status st = image_.pwritev_full(iov.data(), static_cast<int>(iov.size()), run_start);
    iov.clear();
    return st;
  };
  for (const auto& [start, e] : map) {
    if (e.value.data == nullptr) {
      REWIND_RETURN_IF_ERROR(flush_run());
      REWIND_RETURN_IF_ERROR(zero_range(image_, start, e.end - start, e.value.trim));
      continue;
    }
    if (!iov.empty() && (start != run_end || iov.size() >= 1024))
      REWIND_RETURN_IF_ERROR(flush_run());
    if (iov.empty()) run_start = start;
    iov.push_back({const_cast<uint8_t*>(e.value.data), e.end - start});
    run_end = e.end;
  }
  return flush_run();
}

void Volume::maybe_checkpoint(uint64_t now_ns) {
  if (checkpointing_) {
    if (!image_sync_.done()) return;
    Status st = finish_checkpoint();
    if (!st) {
      fail(Part::kImage, "checkpoint failed", st);
      return;
    }
  }
  if (journal_->take_sealed_flag()) {
    sealed_ = true;
    sealed_seq_ = journal_->last_seq();
  }
  const bool due =
      (sealed_ && applied_seq_ >= sealed_seq_ &&
       now_ns >=
           last_checkpoint_ns_ + static_cast<uint64_t>(opts_.seal_checkpoint_spacing.count())) ||
      now_ns >= last_checkpoint_ns_ + static_cast<uint64_t>(opts_.checkpoint_interval.count());
  if (!due) return;
  if (applied_seq_ >= sealed_seq_) sealed_ = false;
  last_checkpoint_ns_ = now_ns;
  if (applied_seq_ == journal_->manifest().checkpoint_seq) {
    // With only the shipped position to store, the image needs no sync.
    if (Status st = checkpoint(); !st) fail(Part::kImage, "checkpoint failed", st);
    return;
  }
  // The image syncs on its own thread while the flusher goes on writing it: what was
  // applied before the sync started is in the image once the sync is done.
  checkpointing_ = applied_seq_;
  image_sync_.start_sync(&image_, [q = queue_.get()] { q->wake(); });  // to collect it
}

std::chrono::nanoseconds Volume::next_wait() const {
  // A checkpoint a sealed segment asked for is due at the end of its spacing.
  if (!sealed_ || checkpointing_) return opts_.flush_interval;
  const uint64_t due =
      last_checkpoint_ns_ + static_cast<uint64_t>(opts_.seal_checkpoint_spacing.count());
  const uint64_t now = wall_clock_ns();
  return std::min(opts_.flush_interval, std::chrono::nanoseconds(due > now ? due - now : 0));
}

Status Volume::finish_checkpoint() {
  if (!checkpointing_) return Status::ok();
  Status st = image_sync_.wait();
  const uint64_t seq = *checkpointing_;
  checkpointing_.reset();
  REWIND_RETURN_IF_ERROR(st);
  return store_checkpoint(seq);
}

Status Volume::store_checkpoint(uint64_t seq) {
  if (opts_.shipped) journal_->set_shipped(shipped_seq_.load());
  return journal_->checkpoint(seq);
}

Status Volume::checkpoint() {
  REWIND_RETURN_IF_ERROR(finish_checkpoint());
  // With only the shipped position to store, the image needs no sync.
  if (applied_seq_ != journal_->manifest().checkpoint_seq)
    REWIND_RETURN_IF_ERROR(image_.datasync());
  REWIND_RETURN_IF_ERROR(store_checkpoint(applied_seq_));
  last_checkpoint_ns_ = wall_clock_ns();
  return Status::ok();
}

void Volume::fail(Part part, const char* what, const Status& st) {
  (part == Part::kJournal ? journal_failed_ : image_failed_) = true;
  (part == Part::kJournal ? counters_.journal_errors : counters_.image_errors).add();
  if (queue_->error().is_ok()) {
    failed_since_ns_ = wall_clock_ns();
    log_to(
        logger_, LogLevel::kError,
        fmt::format(
            "{}: {}; writes and flushes fail until it works again (retrying every {} "
            "ms); reads go on",
            what, st.message(),
            std::chrono::duration_cast<std::chrono::milliseconds>(opts_.retry_interval).count()));
    queue_->fail(st);
  } else {
    log_to(logger_, LogLevel::kDebug, fmt::format("{} again: {}", what, st.message()));
  }
}

bool Volume::write_held(bool streaming) {
  // While streaming, the journal writes this batch as the last one syncs, so that the
  // disk always has writes in flight; a batch goes to the image once it is durable.
  if (written_ < unjournaled_.size()) {
    Status st = journal_->write(std::span(unjournaled_).subspan(written_));
    if (!st) {
      fail(Part::kJournal, "journal write failed", st);
      return false;
    }
    written_ = unjournaled_.size();
  }
  Status st = journal_->finish_sync();
  if (st) collect_durable(journal_->durable_seq());
  if (st && written_ > 0) {
    journal_->start_sync([q = queue_.get()] { q->note_synced(); });
    if (!streaming) {
      st = journal_->finish_sync();
      if (st) collect_durable(journal_->durable_seq());
    }
  }
  if (!st) {
    fail(Part::kJournal, "journal sync failed", st);
    return false;
  }
  return apply_held(streaming);
}

void Volume::collect_durable(uint64_t durable) {
  auto split = std::find_if(unjournaled_.begin(), unjournaled_.end(),
                            [&](const QueuedRecord& r) { return r.header.seq > durable; });
  if (split == unjournaled_.begin()) return;
  queue_->mark_durable(std::prev(split)->header.seq);
  unapplied_.insert(unapplied_.end(), std::make_move_iterator(unjournaled_.begin()),
                    std::make_move_iterator(split));
  written_ -= static_cast<size_t>(split - unjournaled_.begin());
  unjournaled_.erase(unjournaled_.begin(), split);
}

bool Volume::apply_held(bool streaming) {
  if (apply_running_ && (!streaming || apply_task_.done())) {
    Status st = finish_apply();
    if (!st) {
      fail(Part::kImage, "image write failed", st);
      return false;
    }
  }
  if (unapplied_.empty() || apply_running_) return true;
  // Journal before image: the records are durable, now the image may see them. The
  // apply thread writes them while the flusher journals the next batch; when none
  // is coming, the flusher waits for it here.
  applying_ = std::move(unapplied_);
  unapplied_.clear();
  apply_running_ = true;
  apply_task_.start([this] {
    Status st = apply_batch(applying_);
    if (!st) return st;
    queue_->mark_applied(applying_);  // frees queue space for the writers now
    // and the memory it stood for: writers may fill that space before finish_apply().
    for (QueuedRecord& r : applying_) r.payload.reset();
    return st;
  });
  if (streaming) return true;
  Status st = finish_apply();
  if (!st) {
    fail(Part::kImage, "image write failed", st);
    return false;
  }
  return true;
}

Status Volume::finish_apply() {
  if (!apply_running_) return Status::ok();
  Status st = apply_task_.wait();
  apply_running_ = false;
  if (st) {
    applied_seq_ = applying_.back().header.seq;
  } else {
    applying_.insert(applying_.end(), std::make_move_iterator(unapplied_.begin()),
                     std::make_move_iterator(unapplied_.end()));
    unapplied_ = std::move(applying_);
  }
  applying_.clear();
  return st;
}

bool Volume::recover() {
  if (Status st = finish_apply(); !st) fail(Part::kImage, "image write failed", st);
  // A journal sync in flight ends first: the image may only be redone from durable records.
  if (Status st = journal_->finish_sync(); !st) {
    fail(Part::kJournal, "journal sync failed", st);
  } else {
    collect_durable(journal_->durable_seq());
  }
  if (journal_failed_) {
    Status st = journal_->recover();
    if (!st) {
      log_to(logger_, LogLevel::kDebug, fmt::format("journal still failing: {}", st.message()));
      return false;
    }
    // A failed append may have made some records durable (in a segment it sealed
    // before failing): those must not be written twice.
    collect_durable(journal_->last_seq());
    // The rest was cut off with the segment's unsynced tail: written again, anew.
    written_ = 0;
    journal_failed_ = false;
  }
  if (image_failed_) {
    (void)finish_checkpoint();  // redone below in any case
    // A failed write or sync leaves the image unknown since its last checkpoint:
    // redo that part of the journal onto it, as start-up after a crash would.
    const Manifest& m = journal_->manifest();
    const uint64_t last = journal_->last_seq();
    Status st = redo_records(journal_->dir(), m, m.checkpoint_seq, image_);
    if (st) st = image_.datasync();
    if (st) st = journal_->checkpoint(last);
    if (!st) {
      log_to(logger_, LogLevel::kDebug, fmt::format("image still failing: {}", st.message()));
      return false;
    }
    image_failed_ = false;
    applied_seq_ = last;
    last_checkpoint_ns_ = wall_clock_ns();
    queue_->mark_applied(unapplied_);
    unapplied_.clear();
  }
  if (!write_held(false)) return false;
  queue_->clear_error();
  // As loud as the error it ends, so that the operator sees both.
  log_to(logger_, LogLevel::kWarning,
         fmt::format("journal and image writable again after {:.1f} s; writes are accepted",
                     static_cast<double>(wall_clock_ns() - failed_since_ns_) / 1e9));
  return true;
}

void Volume::flusher_loop() {
  std::vector<QueuedRecord> taken;
  const uint64_t batch_bytes = std::max<uint64_t>(opts_.queue_max / 4, 1u << 20);
  for (;;) {
    if (journal_failed_ || image_failed_) {
      const bool stopping = queue_->wait_stop(opts_.retry_interval);
      if (!recover()) {
        if (stopping) return;  // close() reports what is lost
        continue;
      }
    }
    const bool running = queue_->take(next_wait(), batch_bytes, &taken);
    // Streaming: records keep coming, so the image takes a batch while the flusher
    // journals the next one.
    const bool streaming = running && !taken.empty();
    unjournaled_.insert(unjournaled_.end(), std::make_move_iterator(taken.begin()),
                        std::make_move_iterator(taken.end()));
    taken.clear();
    if (!write_held(streaming)) continue;
    if (!running) return;
    const uint64_t now = wall_clock_ns();
    Status st = journal_->seal_if_old(now);
    if (!st) {
      fail(Part::kJournal, "sealing a segment failed", st);
      continue;
    }
    maybe_checkpoint(now);
    commit_change_request();
  }
}

Status Volume::commit(const HistoryChange& change, uint64_t* freed) {
  ChangeRequest req;
  req.change = &change;
  req.freed = freed;
  std::unique_lock lk(change_mu_);
  if (closing_ || change_req_ != nullptr)
    return Status::busy("the volume is closing, or another rebase or compaction is under way");
  change_req_ = &req;
  queue_->wake();  // the flusher commits it between batches: now, not at its next interval
  change_cv_.wait(lk, [&] { return req.done || closing_; });
  if (!req.done) {
    change_req_ = nullptr;
    return Status::busy("the volume closed before the change was committed; nothing was changed");
  }
  return req.status;
}

void Volume::commit_change_request() {
  std::lock_guard lk(change_mu_);
  if (change_req_ == nullptr) return;
  ChangeRequest& req = *change_req_;
  req.status = journal_->commit(*req.change, req.freed);
  if (const auto* rebase = std::get_if<RebasePlan>(req.change); req.status && rebase != nullptr) {
    std::lock_guard mk(marks_mu_);
    std::erase_if(marks_, [&](const auto& e) { return e.second < rebase->new_base_seq; });
  }
  req.done = true;
  change_req_ = nullptr;
  change_cv_.notify_all();
}

Status Volume::close() {
  if (closed_) return close_status_;
  closed_ = true;
  {
    std::lock_guard lk(change_mu_);
    closing_ = true;
    change_cv_.notify_all();
  }
  queue_->stop();
  if (flusher_.joinable()) {
    flusher_.join();
  } else {
    flusher_loop();  // never started: drain here
  }
  Status st = queue_->error();
  if (!st) {
    const uint64_t durable = queue_->durable_seq(), last = queue_->last_seq();
    if (journal_failed_ && last > durable) {
      log_to(logger_, LogLevel::kError,
             fmt::format("stopping with records {}..{} not journaled ({}): those writes were "
                         "acknowledged but never flushed, and are lost; every write a completed "
                         "flush covered is in the journal",
                         durable + 1, last, st.message()));
    } else {
      log_to(logger_, LogLevel::kError,
             fmt::format("stopping with the image behind the journal ({}); it is redone from the "
                         "journal at the next start",
                         st.message()));
    }
  }
  if (st.is_ok()) st = journal_->seal();
  if (st.is_ok()) st = checkpoint();
  if (st.is_ok()) st = image_.close();
  if (opts_.coalesce) {
    const auto c = queue_->coalesced();
    log_to(logger_, LogLevel::kInfo,
           fmt::format("coalescing superseded {} queued writes ({} bytes never journaled)",
                       c.records, c.bytes));
  }
  close_status_ = st;
  return st;
}

}  // namespace rwd
