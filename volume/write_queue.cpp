#include "rewind/volume/write_queue.h"

#include <cstring>
#include <utility>

namespace rwd {

WriteQueue::WriteQueue(uint64_t queue_max, uint64_t next_seq, uint64_t last_time_ns, Clock clock)
    : queue_max_(queue_max),
      clock_(clock ? std::move(clock) : Clock(wall_clock_ns)),
      next_seq_(next_seq),
      last_time_ns_(last_time_ns),
      durable_seq_(next_seq - 1),
      no_coalesce_(next_seq - 1) {}

uint64_t WriteQueue::cost(const RecordHeader& h) {
  return format::kRecordHeaderSize + h.payload_length;
}

Result<uint64_t> WriteQueue::push(RecordHeader h, Payload payload, uint64_t* time_ns,
                                  bool chunk_sums_follow) {
  const uint64_t c = cost(h);
  std::unique_lock lk(mu_);
  // Back-pressure. A record larger than the whole queue still goes in alone.
  auto room = [&] {
    return !error_.is_ok() || stopping_ || bytes_ == 0 || bytes_ + c <= queue_max_;
  };
  if (!room()) {
    // The flusher takes what is pending now rather than waiting for a full batch.
    ++space_waiters_;
    work_cv_.notify_one();
    const auto since = std::chrono::steady_clock::now();
    space_cv_.wait(lk, room);
    --space_waiters_;
    space_waits_.add();
    space_wait_ns_.add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::steady_clock::now() - since)
                                                 .count()));
  }
  if (!error_.is_ok()) return error_;
  if (stopping_) return Status::io_error("the volume is shutting down", ESHUTDOWN);
  // seq and time are assigned together, so time is non-decreasing in seq order even
  // when the clock steps back.
  h.seq = next_seq_++;
  h.time_ns = std::max(clock_(), last_time_ns_);
  last_time_ns_ = h.time_ns;
  using format::RecordType;
  if (coalesce_ && (h.type == RecordType::kWrite || h.type == RecordType::kZero))
    coalesce_locked(h);
  // A FUA write or a mark is a flush point: nothing up to it may be superseded.
  if (h.flags & format::kFlagFlushPoint) no_coalesce_ = h.seq;
  Generation& g = open_generation_locked(h.seq, c);
  if (h.type == RecordType::kWrite) {
    g.map.insert(h.offset, h.length, OverlayValue{h.seq, payload, 0});
  } else if (h.type == RecordType::kZero || h.type == RecordType::kTrim) {
    g.map.insert(h.offset, h.length, OverlayValue{h.seq, nullptr, 0});
  }
  bytes_ += c;
  pending_bytes_ += c;
  pending_.push_back(QueuedRecord{h, std::move(payload), chunk_sums_follow});
  if (pending_.size() == 1 || (pending_bytes_ >= batch_bytes_ && pending_bytes_ - c < batch_bytes_))
    work_cv_.notify_one();
  if (time_ns != nullptr) *time_ns = h.time_ns;
  return h.seq;
}

WriteQueue::Generation::Generation() : arena(64 * 1024), map(&arena) {}

WriteQueue::Generation& WriteQueue::open_generation_locked(uint64_t seq, uint64_t cost) {
  if (overlay_.empty() || overlay_.back()->closed || overlay_.back()->bytes >= batch_bytes_)
    overlay_.push_back(std::make_unique<Generation>());
  Generation& g = *overlay_.back();
  g.last_seq = seq;
  g.bytes += cost;
  return g;
}

Status WriteQueue::read(std::span<uint8_t> buf, uint64_t offset,
                        const std::function<Status(std::span<uint8_t>)>& read_base) const {
  struct Piece {
    uint64_t start, end;
    Payload data;
    uint64_t data_offset;
  };
  std::vector<Piece> pieces;  // oldest generation first
  {
    std::lock_guard lk(mu_);
    for (const auto& g : overlay_)
      g->map.for_each(offset, buf.size(),
                      [&](uint64_t s, uint64_t e, const OverlayValue& v, uint64_t adv) {
                        pieces.push_back(Piece{s, e, v.data, v.data ? v.data_offset + adv : 0});
                      });
  }
  // The newest piece that covers the whole range hides the base and every older piece.
  size_t first = pieces.size();
  while (first > 0 &&
         !(pieces[first - 1].start == offset && pieces[first - 1].end == offset + buf.size()))
    --first;
  if (first == 0) {
    // The base is read after the overlay was looked at: a record that left the overlay
    // before then had already been written to the image.
    REWIND_RETURN_IF_ERROR(read_base(buf));
  } else {
    --first;
  }
  for (const Piece& p : std::span(pieces).subspan(first)) {
    uint8_t* dst = buf.data() + (p.start - offset);
    if (p.data) {
      std::memcpy(dst, p.data.get() + p.data_offset, p.end - p.start);
    } else {
      std::memset(dst, 0, p.end - p.start);
    }
  }
  return Status::ok();
}

std::vector<WriteQueue::QueuedRange> WriteQueue::queued_ranges(uint64_t offset,
                                                               uint64_t length) const {
  std::vector<QueuedRange> out;
  std::lock_guard lk(mu_);
  for (const auto& g : overlay_)
    g->map.for_each(offset, length, [&](uint64_t s, uint64_t e, const OverlayValue& v, uint64_t) {
      out.push_back(QueuedRange{s, e, !v.data});
    });
  return out;
}

void WriteQueue::coalesce_locked(const RecordHeader& h) {
  if (pending_.empty()) return;
  const uint64_t first = pending_.front().header.seq, end = h.offset + h.length;
  // The records the new one may cover are those still visible under it.
  std::vector<uint64_t> seqs;
  for (const auto& g : overlay_) {
    if (g->last_seq < first) continue;
    g->map.for_each(h.offset, h.length, [&](uint64_t, uint64_t, const OverlayValue& v, uint64_t) {
      if (v.seq >= first && v.seq > no_coalesce_) seqs.push_back(v.seq);
    });
  }
  std::sort(seqs.begin(), seqs.end());
  seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
  for (uint64_t s : seqs) {
    QueuedRecord& r = pending_[s - first];
    RecordHeader& rh = r.header;
    using format::RecordType;
    if ((rh.type != RecordType::kWrite && rh.type != RecordType::kZero) ||
        (rh.flags & format::kFlagSuperseded) || rh.offset < h.offset || rh.offset + rh.length > end)
      continue;
    std::shared_ptr<uint8_t[]> cover(new uint8_t[format::kSupersededPayload]);
    for (uint32_t i = 0; i < format::kSupersededPayload; ++i)
      cover[i] = static_cast<uint8_t>(h.seq >> (8 * i));
    const uint64_t before = cost(rh);
    rh.flags |= format::kFlagSuperseded;
    rh.payload_length = format::kSupersededPayload;
    rh.payload_checksum =
        payload_checksum(std::span<const uint8_t>(cover.get(), format::kSupersededPayload));
    r.payload = std::move(cover);
    bytes_ = bytes_ - before + cost(rh);
    pending_bytes_ = pending_bytes_ - before + cost(rh);
    superseded_[s] = h.seq;
    ++coalesced_.records;
    coalesced_.bytes += rh.length;
  }
}

WriteQueue::Coalesced WriteQueue::coalesced() const {
  std::lock_guard lk(mu_);
  return coalesced_;
}

Status WriteQueue::wait_durable() {
  std::unique_lock lk(mu_);
  return wait_durable_locked(lk, next_seq_ - 1);
}

Status WriteQueue::wait_durable(uint64_t seq) {
  std::unique_lock lk(mu_);
  return wait_durable_locked(lk, seq);
}

Status WriteQueue::wait_durable_locked(std::unique_lock<std::mutex>& lk, uint64_t seq) {
  if (!error_.is_ok()) return error_;
  // A record superseded before this call holds its bytes in the record that covered it
  // (perhaps itself superseded since): wait for that one too. Nothing up to the
  // record waited for is superseded from now on.
  for (bool grew = true; grew;) {
    grew = false;
    for (auto it = superseded_.begin(); it != superseded_.end() && it->first <= seq; ++it)
      if (it->second > seq) seq = it->second, grew = true;
  }
  no_coalesce_ = std::max(no_coalesce_, seq);
  if (durable_seq_ >= seq) return Status::ok();
  // The record the client waits for, if the flusher has not taken it yet, says so in
  // the journal (pending_ holds consecutive seqs).
  if (!pending_.empty() && pending_.front().header.seq <= seq && seq <= pending_.back().header.seq)
    pending_[seq - pending_.front().header.seq].header.flags |= format::kFlagFlushPoint;
  if (seq > flush_wanted_) {
    flush_wanted_ = seq;
    work_cv_.notify_one();
  }
  durable_cv_.wait(lk, [&] { return !error_.is_ok() || durable_seq_ >= seq; });
  if (durable_seq_ >= seq) return Status::ok();
  return error_;
}

void WriteQueue::note_synced() {
  {
    std::lock_guard lk(mu_);
    synced_ = true;
  }
  work_cv_.notify_all();
}

void WriteQueue::wake() {
  {
    std::lock_guard lk(mu_);
    woken_ = true;
  }
  work_cv_.notify_all();
}

bool WriteQueue::take(std::chrono::nanoseconds max_wait, uint64_t batch_bytes,
                      std::vector<QueuedRecord>* out) {
  out->clear();
  std::unique_lock lk(mu_);
  batch_bytes_ = std::max<uint64_t>(batch_bytes, 1);
  // Whether a batch is due before max_wait is out.
  auto due = [&] {
    const bool waited = flush_wanted_ > durable_seq_ || space_waiters_ > 0;
    return stopping_ || woken_ || pending_bytes_ >= batch_bytes_ || (waited && !pending_.empty());
  };
  auto ready = [&] { return due() || synced_; };
  const bool early = ready() || work_cv_.wait_for(lk, max_wait, ready);
  woken_ = false;
  // The flusher collects a sync that ended now; what is pending waits for its batch.
  if (std::exchange(synced_, false) && early && !due()) return true;
  if (pending_.empty()) return !stopping_;
  uint64_t taken = 0;
  while (!pending_.empty() && (out->empty() || taken < batch_bytes_)) {
    taken += cost(pending_.front().header);
    out->push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  pending_bytes_ -= taken;
  // Records pushed from now on start a generation of their own, which can leave the
  // overlay when what this take() began is applied.
  if (!overlay_.empty()) overlay_.back()->closed = true;
  return true;
}

void WriteQueue::mark_durable(uint64_t seq) {
  std::lock_guard lk(mu_);
  if (seq > durable_seq_) durable_seq_ = seq;
  std::erase_if(superseded_, [&](const auto& e) { return e.second <= durable_seq_; });
  durable_cv_.notify_all();
}

void WriteQueue::mark_applied(std::span<const QueuedRecord> records) {
  if (records.empty()) return;
  const uint64_t last = records.back().header.seq;
  uint64_t freed = 0;
  for (const QueuedRecord& r : records) freed += cost(r.header);
  // Generations whose every record is in the image; freed after the lock is let go.
  std::vector<std::unique_ptr<Generation>> done;
  {
    std::lock_guard lk(mu_);
    // Records are applied in seq order, so an older generation never outlives a newer
    // one, and every record newer than the image stays in the overlay.
    while (!overlay_.empty() && overlay_.front()->last_seq <= last) {
      done.push_back(std::move(overlay_.front()));
      overlay_.pop_front();
    }
    bytes_ -= freed;
  }
  space_cv_.notify_all();
}

void WriteQueue::fail(const Status& st) {
  std::lock_guard lk(mu_);
  if (error_.is_ok()) error_ = st;
  space_cv_.notify_all();
  durable_cv_.notify_all();
  work_cv_.notify_all();
}

void WriteQueue::clear_error() {
  std::lock_guard lk(mu_);
  error_ = Status::ok();
}

bool WriteQueue::wait_stop(std::chrono::nanoseconds d) {
  std::unique_lock lk(mu_);
  work_cv_.wait_for(lk, d, [&] { return stopping_; });
  return stopping_;
}

void WriteQueue::stop() {
  std::lock_guard lk(mu_);
  stopping_ = true;
  space_cv_.notify_all();
  work_cv_.notify_all();
}

uint64_t WriteQueue::last_seq() const {
  std::lock_guard lk(mu_);
  return next_seq_ - 1;
}
uint64_t WriteQueue::flush_wanted() const {
  std::lock_guard lk(mu_);
  return flush_wanted_;
}

uint64_t WriteQueue::durable_seq() const {
  std::lock_guard lk(mu_);
  return durable_seq_;
}
uint64_t WriteQueue::queued_bytes() const {
  std::lock_guard lk(mu_);
  return bytes_;
}
Status WriteQueue::error() const {
  std::lock_guard lk(mu_);
  return error_;
}

}  // namespace rwd
