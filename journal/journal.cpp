#include "rewind/journal/journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include <fmt/format.h>

#include "rewind/format/format.h"

namespace rwd {

Journal::Journal(std::string dir, Manifest manifest, JournalOptions opts, Logger logger)
    : dir_(std::move(dir)),
      manifest_(std::move(manifest)),
      opts_(opts),
      logger_(std::move(logger)),
      snapshot_(std::make_shared<const Manifest>(manifest_)) {
  if (opts_.compression.codec != format::Codec::kNone) {
    const unsigned threads = std::max(opts_.compress_threads, 1u);
    for (unsigned t = 0; t < threads; ++t) {
      encoders_.push_back(std::make_unique<PayloadEncoder>(opts_.compression));
      if (t > 0) encode_threads_.push_back(std::make_unique<BackgroundTask>("rewind-zstd", true));
    }
  }
  durable_.seq = manifest_.base_seq;
  if (!manifest_.segments.empty()) {
    const ManifestSegment& last = manifest_.segments.back();
    durable_ = Position{last.last_seq, last.first_seq, last.bytes};
  }
}

void Journal::set_manifest(Manifest next) {
  manifest_ = std::move(next);
  unstored_ = false;
  auto copy = std::make_shared<const Manifest>(manifest_);
  std::lock_guard lk(snapshot_mu_);
  snapshot_ = std::move(copy);
}

void Journal::set_shipped(std::optional<uint64_t> seq) {
  if (manifest_.shipped_seq == seq) return;
  manifest_.shipped_seq = seq;
  unstored_ = true;
}

Journal::Position Journal::durable_position() const {
  std::lock_guard lk(snapshot_mu_);
  return durable_;
}

std::shared_ptr<const Manifest> Journal::snapshot() const {
  std::lock_guard lk(snapshot_mu_);
  return snapshot_;
}

namespace {

// Removes files a new manifest no longer names and returns the disk space freed.
uint64_t remove_unneeded(const std::vector<std::string>& paths) {
  uint64_t bytes = 0;
  for (const std::string& path : paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (file_system().unlink(path.c_str()) == 0) bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return bytes;
}

}  // namespace

size_t segments_ending_by(const Manifest& m, uint64_t seq) {
  size_t n = 0;
  while (n < m.segments.size() && m.segments[n].sealed && m.segments[n].last_seq <= seq) ++n;
  return n;
}

namespace {

Result<Manifest> commit_rebase(const std::string& dir, const Manifest& m, const RebasePlan& plan,
                               uint64_t* freed) {
  const size_t n = plan.folded.size();
  bool matches = m.base_seq == plan.old_base_seq && n > 0 && n <= m.segments.size() &&
                 m.segments[n - 1].sealed && m.segments[n - 1].last_seq == plan.new_base_seq;
  for (size_t i = 0; matches && i < n; ++i) matches = m.segments[i].file == plan.folded[i];
  if (!matches)
    return Status::invalid(fmt::format(
        "the journal {} changed since the rebase to seq {} was prepared; nothing was changed", dir,
        plan.new_base_seq));
  // 2. The switch: one atomic replacement of the manifest. A mark at the new base
  //    keeps its name (the base is its state); older ones go.
  Manifest next = m;
  next.base_file = plan.new_base_file;
  next.base_seq = plan.new_base_seq;
  next.base_time_ns = plan.new_base_time_ns;
  next.segments.erase(next.segments.begin(), next.segments.begin() + static_cast<long>(n));
  std::erase_if(next.marks, [&](const ManifestMark& mk) { return mk.seq < plan.new_base_seq; });
  REWIND_RETURN_IF_ERROR(next.store(dir));
  // 3. Only now the files the new manifest no longer needs. The new manifest is the
  //    volume from here on: a file that cannot be removed now is removed as a
  //    leftover by the next start or rebase (remove_leftovers), so it is no error.
  std::vector<std::string> gone{base_path(dir, m.base_file)};
  for (const std::string& file : plan.folded) {
    gone.push_back(segment_path(dir, file));
    gone.push_back(segment_path(dir, index_file_name(file)));
  }
  const uint64_t bytes = remove_unneeded(gone);
  (void)sync_dir(join_path(dir, format::kSegmentDir));
  (void)sync_dir(join_path(dir, format::kBaseDir));
  if (freed != nullptr) *freed = bytes;
  return next;
}

Result<Manifest> commit_compaction(const std::string& dir, const Manifest& m,
                                   const CompactionPlan& plan, uint64_t* freed) {
  Manifest next = m;
  std::vector<std::string> gone;
  for (size_t i = 0; i < plan.replaced.size(); ++i) {
    const ManifestSegment& old = plan.replaced[i];
    auto it = std::find(next.segments.begin(), next.segments.end(), old);
    if (it == next.segments.end() || i >= plan.written.size() ||
        plan.written[i].first_seq != old.first_seq || plan.written[i].last_seq != old.last_seq)
      return Status::invalid(fmt::format(
          "the journal {} changed since the compaction of segment {} was prepared; nothing was "
          "changed",
          dir, old.file));
    *it = plan.written[i];
    if (old.file != plan.written[i].file) {
      gone.push_back(segment_path(dir, old.file));
      gone.push_back(segment_path(dir, index_file_name(old.file)));
    }
  }
  // The switch, then the files only the old manifest named; what cannot be removed
  // now is a leftover for the next start or rebase (remove_leftovers).
  REWIND_RETURN_IF_ERROR(next.store(dir));
  const uint64_t bytes = remove_unneeded(gone);
  (void)sync_dir(join_path(dir, format::kSegmentDir));
  if (freed != nullptr) *freed = bytes;
  return next;
}

}  // namespace

Result<Manifest> commit_change(const std::string& dir, const Manifest& m,
                               const HistoryChange& change, uint64_t* freed) {
  if (const auto* rebase = std::get_if<RebasePlan>(&change))
    return commit_rebase(dir, m, *rebase, freed);
  return commit_compaction(dir, m, std::get<CompactionPlan>(change), freed);
}

Status Journal::commit(const HistoryChange& change, uint64_t* freed) {
  auto next = commit_change(dir_, manifest_, change, freed);
  if (!next) return next.status();
  set_manifest(std::move(*next));
  return Status::ok();
}

uint64_t Journal::last_seq() const {
  if (writer_ && open_stats_.records > 0) return open_stats_.last_seq;
  for (auto it = manifest_.segments.rbegin(); it != manifest_.segments.rend(); ++it)
    if (it->sealed) return it->last_seq;
  return manifest_.base_seq;
}

Status Journal::open_segment(uint64_t first_seq, uint64_t now_ns) {
  std::string file = segment_file_name(first_seq);
  SegmentHeader h{manifest_.volume_id, first_seq, now_ns};
  // A file of this name can only be one a failed attempt created but never listed.
  const std::string path = segment_path(dir_, file);
  if (file_system().unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::io_error(fmt::format("cannot remove unused segment file {}", path), errno);
  auto w = SegmentWriter::create(path, h, opts_.segment_size);
  if (!w) return w.status();
  // The manifest names the segment before any record is written to it, so recovery
  // always knows which segment was open.
  Manifest next = manifest_;
  next.segments.push_back(ManifestSegment{file, first_seq, false});
  REWIND_RETURN_IF_ERROR(next.store(dir_));
  set_manifest(std::move(next));
  writer_.emplace(std::move(*w));
  open_created_ns_ = now_ns;
  open_stats_ = ManifestSegment{file, first_seq, false};
  open_entries_.clear();
  open_sums_.clear();
  open_stats_.last_seq = first_seq - 1;
  open_marks_.clear();
  synced_ = Synced{writer_->end(), open_stats_, 0, 0};
  log_to(logger_, LogLevel::kDebug, fmt::format("opened segment {}", file));
  return Status::ok();
}

Status Journal::seal_open(bool store_manifest) {
  if (!writer_) return Status::ok();
  // The sync in flight uses the open segment's file.
  REWIND_RETURN_IF_ERROR(finish_sync());
  if (open_stats_.records == 0) {
    // Nothing was ever written to it: drop it rather than keep an empty segment.
    Manifest next = manifest_;
    next.segments.pop_back();
    if (store_manifest) REWIND_RETURN_IF_ERROR(next.store(dir_));
    set_manifest(std::move(next));
    std::string path = writer_->path();
    writer_.reset();
    file_system().unlink(path.c_str());
    return Status::ok();
  }
  REWIND_RETURN_IF_ERROR(writer_->seal());
  // The index is derived data: if it cannot be written it is rebuilt when needed.
  Status idx = write_segment_index(dir_, open_stats_.file, manifest_.volume_id,
                                   open_stats_.first_seq, open_entries_, open_sums_);
  if (!idx)
    log_to(logger_, LogLevel::kWarning,
           fmt::format("could not write the index of segment {}: {}", open_stats_.file,
                       idx.message()));
  open_entries_.clear();
  open_sums_.clear();
  ManifestSegment s = open_stats_;
  s.sealed = true;
  s.bytes = writer_->end();
  Manifest next = manifest_;
  next.segments.back() = s;
  next.marks.insert(next.marks.end(), open_marks_.begin(), open_marks_.end());
  open_marks_.clear();
  if (store_manifest) REWIND_RETURN_IF_ERROR(next.store(dir_));
  set_manifest(std::move(next));
  writer_.reset();
  sealed_since_checked_ = true;
  log_to(logger_, LogLevel::kDebug,
         fmt::format("sealed segment {}: seq {}..{}, {} bytes", s.file, s.first_seq, s.last_seq,
                     s.bytes));
  return Status::ok();
}

Status Journal::seal() {
  return seal_open(true);
}

Status Journal::seal_if_old(uint64_t now_ns) {
  if (!writer_ || open_stats_.records == 0) return Status::ok();
  if (now_ns < open_created_ns_ + static_cast<uint64_t>(opts_.segment_age.count()))
    return Status::ok();
  return seal_open(true);
}

Status Journal::append(std::span<const QueuedRecord> batch) {
  REWIND_RETURN_IF_ERROR(write(batch));
  start_sync();
  return finish_sync();
}

void Journal::encode(std::span<const QueuedRecord> batch) {
  stored_.resize(batch.size());
  if (encoded_.size() < batch.size()) encoded_.resize(batch.size());
  to_encode_.clear();
  uint64_t encode_bytes = 0;
  for (size_t k = 0; k < batch.size(); ++k) {
    const QueuedRecord& q = batch[k];
    Stored& st = stored_[k];
    st.header = q.header;
    st.payload = std::span<const uint8_t>(q.payload.get(), q.header.payload_length);
    st.decoded = st.payload;
    st.chunk_sums = q.chunk_sums_follow ? st.payload.data() + st.payload.size() : nullptr;
    if (q.header.codec != format::Codec::kNone || q.header.seal != format::Seal::kNone) {
      // Encoded or sealed already (a shipped record): the index keeps no chunk
      // checksums for it.
      st.decoded.reset();
      st.chunk_sums = nullptr;
      continue;
    }
    // Only a WRITE's data is worth encoding; a mark's name stays readable.
    if (encoders_.empty() || !worth_encoding(q.header)) continue;
    to_encode_.push_back(k);
    encode_bytes += q.header.length;
  }
  // The records are spread over the threads one at a time: each takes the next one
  // not taken, so a thread that meets incompressible data (cheap) takes more.
  std::atomic<size_t> next{0};
  auto work = [&](PayloadEncoder& encoder) {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < to_encode_.size();)
      encode_one(encoder, to_encode_[i]);
  };
  const size_t helpers = encode_bytes >= kParallelEncodeBytes ? encode_threads_.size() : 0;
  for (size_t t = 0; t < helpers; ++t)
    encode_threads_[t]->start([&work, &e = *encoders_[t + 1]] {
      work(e);
      return Status::ok();
    });
  if (!encoders_.empty()) work(*encoders_[0]);
  for (size_t t = 0; t < helpers; ++t) (void)encode_threads_[t]->wait();
}

void Journal::encode_one(PayloadEncoder& encoder, size_t k) {
  Stored& st = stored_[k];
  if (!encoder.encode(st.payload, &encoded_[k])) return;
  st.header.codec = encoder.compression().codec;
  st.header.payload_length = static_cast<uint32_t>(encoded_[k].size());
  st.payload = encoded_[k];
  st.header.payload_checksum = payload_checksum(st.payload);
}

Status Journal::write(std::span<const QueuedRecord> batch) {
  encode(batch);
  size_t i = 0;
  while (i < batch.size()) {
    if (!writer_)
      REWIND_RETURN_IF_ERROR(open_segment(batch[i].header.seq, batch[i].header.time_ns));
    // Take as many records as fit in the open segment; an empty segment takes at
    // least one, however large.
    uint64_t end = writer_->end();
    size_t j = i;
    while (j < batch.size()) {
      uint64_t span = format::record_span(stored_[j].header.payload_length);
      bool empty = end == format::kSegmentHeaderSize;
      if (!empty && end + span > opts_.segment_size) break;
      end += span;
      ++j;
    }
    if (j == i) {
      REWIND_RETURN_IF_ERROR(seal_open(true));
      continue;
    }
    headers_.resize(j - i);
    refs_.clear();
    uint64_t pos = writer_->end();
    for (size_t k = i; k < j; ++k) {
      const Stored& st = stored_[k];
      RecordHeader h = st.header;
      if (k == i) h.flags |= format::kFlagBatchStart;
      const std::span<const uint8_t> payload = st.payload;
      IndexEntry e{h.seq,  h.time_ns, h.offset,         h.length,          pos,
                   h.type, h.flags,   h.payload_length, h.payload_checksum};
      e.codec = h.codec;
      e.seal = h.seal;
      if (st.decoded) add_chunk_sums(&e, *st.decoded, &open_sums_, st.chunk_sums);
      open_entries_.push_back(e);
      if (h.type == format::RecordType::kMark)
        open_marks_.push_back(
            ManifestMark{mark_name_of(h, batch[k].payload.get()), h.seq, h.time_ns});
      pos += format::record_span(h.payload_length);
      encode_header(h, headers_[k - i].data());
      refs_.push_back(RecordRef{headers_[k - i].data(), payload});
    }
    REWIND_RETURN_IF_ERROR(writer_->append(refs_));
    if (open_stats_.records == 0) open_stats_.first_time_ns = batch[i].header.time_ns;
    open_stats_.records += j - i;
    open_stats_.last_seq = batch[j - 1].header.seq;
    open_stats_.last_time_ns = batch[j - 1].header.time_ns;
    i = j;
    // A full segment is sealed (which syncs it) before the rest of the batch goes on.
    if (writer_->end() >= opts_.segment_size) REWIND_RETURN_IF_ERROR(seal_open(true));
  }
  return Status::ok();
}

void Journal::start_sync(std::function<void()> done) {
  // At most one sync at a time: start_sync() follows finish_sync(), or seal_open()'s.
  Pending p;
  if (writer_) {
    p.synced = Synced{writer_->end(), open_stats_, open_marks_.size(), open_entries_.size(),
                      open_sums_.size()};
    p.position = Position{open_stats_.last_seq, open_stats_.first_seq, writer_->end()};
    sync_task_.start_sync(&writer_->file(), std::move(done));
  } else if (!manifest_.segments.empty()) {
    // Everything written is in sealed segments, which sealing synced.
    const ManifestSegment& last = manifest_.segments.back();
    p.position = Position{last.last_seq, last.first_seq, last.bytes};
  } else {
    p.position = durable_position();
  }
  pending_ = p;
}

bool Journal::sync_done() const {
  return !pending_ || !pending_->synced || sync_task_.done();
}

Status Journal::finish_sync() {
  if (!pending_) return Status::ok();
  const Pending p = *pending_;
  pending_.reset();
  if (p.synced) {
    REWIND_RETURN_IF_ERROR(sync_task_.wait());
    synced_ = *p.synced;
  }
  std::lock_guard lk(snapshot_mu_);
  durable_ = p.position;
  return Status::ok();
}

uint64_t Journal::durable_seq() const {
  // durable_ changes only on this (the writing) thread.
  return durable_.seq;
}

Status Journal::recover() {
  // A sync in flight ends first: if it succeeded, what it covered is kept.
  (void)finish_sync();
  if (!writer_) return Status::ok();
  open_stats_ = synced_.stats;
  open_marks_.resize(synced_.marks);
  open_entries_.resize(synced_.entries);
  open_sums_.resize(synced_.sums);
  REWIND_RETURN_IF_ERROR(writer_->cut(synced_.end));
  return seal_open(true);
}

Status Journal::checkpoint(uint64_t seq) {
  if (seq == manifest_.checkpoint_seq && !unstored_) return Status::ok();
  Manifest next = manifest_;
  next.checkpoint_seq = seq;
  REWIND_RETURN_IF_ERROR(next.store(dir_));
  set_manifest(std::move(next));
  return Status::ok();
}

}  // namespace rwd
