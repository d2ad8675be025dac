#include "rewind/ship/store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "rewind/format/record.h"
#include "rewind/format/segment.h"
#include "rewind/journal/journal_dir.h"
#include "rewind/volume/volume.h"
#include "rewind/volume/write_queue.h"

namespace rwd {

namespace {

constexpr const char* kReceivingName = "RECEIVING";
constexpr const char* kProgressSuffix = ".progress";

std::string serialize(const proto::BaseBegin& b) {
  VolumeId id;
  std::copy(b.volume_id.begin(), b.volume_id.end(), id.begin());
  return fmt::format(
      "volume-id {}\nimage-size {}\nbase-seq {}\nbase-time-ns {}\ncreated-ns {}\nflags {}\n",
      volume_id_hex(id), b.image_size, b.base_seq, b.base_time_ns, b.created_ns, unsigned{b.flags});
}

Result<proto::BaseBegin> parse_receiving(const std::string& text, const std::string& where) {
  proto::BaseBegin b;
  char hex[33] = {};
  unsigned long long size = 0, seq = 0, time = 0, created = 0;
  unsigned flags = 0;
  // "flags" was added with sealed bases; a file without it is of a plain base.
  const int n = std::sscanf(text.c_str(),
                            "volume-id %32s\nimage-size %llu\nbase-seq %llu\nbase-time-ns %llu\n"
                            "created-ns %llu\nflags %u\n",
                            hex, &size, &seq, &time, &created, &flags);
  if ((n != 5 && n != 6) || (flags & ~unsigned{proto::kFlagSealedBase}) != 0)
    return Status::corruption(fmt::format("{} is not a RECEIVING file", where));
  b.flags = static_cast<uint8_t>(flags);
  VolumeId id;
  if (!parse_volume_id(hex, &id))
    return Status::corruption(fmt::format("{}: bad volume id", where));
  std::copy(id.begin(), id.end(), b.volume_id.begin());
  b.image_size = size, b.base_seq = seq, b.base_time_ns = time, b.created_ns = created;
  return b;
}

// How many bytes of the partial base are durable: the last whole entry of its
// progress file (u64 bytes, u64 XXH3-64 of them), each appended and synced only after
// the bytes it counts were synced. A partial file's size says nothing: a write that
// was never synced may have grown it, torn.
Result<uint64_t> read_progress(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return uint64_t{0};  // nothing synced yet
  auto f = File::open(path, O_RDONLY);
  if (!f) return f.status();
  auto size = f->size();
  if (!size) return size.status();
  // The counts only grow; an entry torn by a crash is skipped (the next start appends
  // after it).
  uint64_t bytes = 0;
  uint8_t e[16];
  for (uint64_t at = 0; at + sizeof e <= *size; at += sizeof e) {
    REWIND_RETURN_IF_ERROR(f->pread_full(e, at));
    if (payload_checksum(std::span<const uint8_t>(e, 8)) == get_u64(e + 8))
      bytes = std::max(bytes, get_u64(e));
  }
  return bytes;
}

Status append_progress(const File& f, uint64_t entries, uint64_t bytes) {
  uint8_t e[16];
  put_u64(e, bytes);
  put_u64(e + 8, payload_checksum(std::span<const uint8_t>(e, 8)));
  REWIND_RETURN_IF_ERROR(f.pwrite_full(e, entries * sizeof e));
  return f.datasync();
}

}  // namespace

Status prepare_store(const std::string& store_dir, bool* created,
                     std::optional<mode_t>* tightened) {
  *created = false;
  struct stat st {};
  if (::stat(store_dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::io_error(fmt::format("cannot reach {}", store_dir), errno);
    const std::string parent = parent_dir(store_dir);
    struct stat pst {};
    if (::stat(parent.c_str(), &pst) != 0 || !S_ISDIR(pst.st_mode))
      return Status::not_found(fmt::format(
          "{} does not exist, nor does its parent directory {}: create the parent (the store "
          "itself is then created, private to this user), or correct the path",
          store_dir, parent));
    if (file_system().mkdir(store_dir.c_str(), 0700) != 0)
      return Status::io_error(fmt::format("cannot create {}", store_dir), errno);
    *created = true;
    return sync_dir(parent);
  }
  // A directory of this user's that others cannot write into (and one at all).
  REWIND_RETURN_IF_ERROR(check_private_dir(store_dir, "the store", tightened));
  if (::access(store_dir.c_str(), W_OK | X_OK) != 0)
    return Status::invalid(fmt::format(
        "cannot write into {} ({}): give the server's user write access to it, or another "
        "directory",
        store_dir, std::strerror(errno)));
  return Status::ok();
}

Result<uint64_t> StoredVolume::stored_bytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  if (ec) return Status::io_error(fmt::format("cannot measure {}", dir_), ec.value());
  return total;
}

Result<std::unique_ptr<StoredVolume>> StoredVolume::open(const std::string& store_dir,
                                                         const std::string& name, bool create,
                                                         Logger logger) {
  REWIND_RETURN_IF_ERROR(proto::check_volume_name(name));
  const std::string dir = join_path(store_dir, name);
  if (::access(dir.c_str(), F_OK) != 0) {
    if (!create) return Status::not_found(fmt::format("the store holds no volume '{}'", name));
    REWIND_RETURN_IF_ERROR(make_private_dir(dir, "stored volume"));
    for (const char* sub : {format::kBaseDir, format::kSegmentDir})
      REWIND_RETURN_IF_ERROR(make_private_dir(join_path(dir, sub), "stored volume directory"));
    REWIND_RETURN_IF_ERROR(sync_dir(dir));
    REWIND_RETURN_IF_ERROR(sync_dir(store_dir));
  }
  std::unique_ptr<StoredVolume> v(new StoredVolume(dir, std::move(logger)));
  auto lock = lock_journal(dir);
  if (!lock) return lock.status();
  v->lock_ = std::move(*lock);
  if (::access(join_path(dir, format::kManifestName).c_str(), F_OK) == 0) {
    auto m = Manifest::load(dir);
    if (!m) return m.status();
    REWIND_RETURN_IF_ERROR(seal_open_segment(&*m, dir, v->logger_));
    REWIND_RETURN_IF_ERROR(remove_leftovers(*m, dir, v->logger_));
    v->last_time_ns_ = m->base_time_ns;
    for (const ManifestSegment& seg : m->segments)
      if (seg.records > 0) v->last_time_ns_ = seg.last_time_ns;
    for (const ManifestMark& mk : m->marks) v->marks_.insert(mk.name);
    v->journal_ = std::make_unique<Journal>(dir, std::move(*m), JournalOptions{}, v->logger_);
    return v;
  }
  const std::string receiving = join_path(dir, kReceivingName);
  if (::access(receiving.c_str(), F_OK) == 0) {
    auto text = read_small_file(receiving, 4096);
    if (!text) return text.status();
    auto b = parse_receiving(*text, receiving);
    if (!b) return b.status();
    const std::string base_dir = join_path(dir, format::kBaseDir);
    const std::string partial = join_path(base_dir, partial_base_file_name(b->base_seq));
    const std::string whole = join_path(base_dir, base_file_name(b->base_seq));
    // A crash between renaming the whole base into place and writing the manifest:
    // it is received again, under its partial name, and finished below.
    if (::access(partial.c_str(), F_OK) != 0 && ::access(whole.c_str(), F_OK) == 0 &&
        file_system().rename(whole.c_str(), partial.c_str()) != 0)
      return Status::io_error(fmt::format("cannot rename {} to {}", whole, partial), errno);
    auto f = File::open(partial, O_RDWR | O_CREAT | O_NOFOLLOW);
    if (!f) return f.status();
    auto held = read_progress(partial + kProgressSuffix);
    if (!held) return held.status();
    auto p = File::open(partial + kProgressSuffix, O_RDWR | O_CREAT | O_NOFOLLOW);
    if (!p) return p.status();
    auto entries = p->size();
    if (!entries) return entries.status();
    // What was written past the synced bytes is dropped.
    const uint64_t whole_bytes = proto::stored_base_bytes(b->image_size, b->flags);
    REWIND_RETURN_IF_ERROR(f->truncate(std::min(*held, whole_bytes)));
    REWIND_RETURN_IF_ERROR(f->sync());
    v->receiving_ = *b;
    v->partial_ = std::move(*f);
    v->progress_ = std::move(*p);
    v->progress_entries_ = (*entries + 15) / 16;
    v->partial_bytes_ = std::min(*held, whole_bytes);
    if (v->partial_bytes_ == whole_bytes) REWIND_RETURN_IF_ERROR(v->finish_base());
  }
  return v;
}

StoredVolume::~StoredVolume() {
  (void)close();
}

Status StoredVolume::close() {
  if (!journal_) return Status::ok();
  return journal_->seal();
}

proto::Ack StoredVolume::ack() const {
  const proto::Welcome w = state();
  return proto::Ack{w.durable_seq, w.base_bytes};
}

proto::Welcome StoredVolume::state() const {
  proto::Welcome w;
  if (journal_) {
    const Manifest& m = journal_->manifest();
    std::copy(m.volume_id.begin(), m.volume_id.end(), w.volume_id.begin());
    w.image_size = m.image_size;
    w.base_seq = m.base_seq;
    w.flags = m.base_sealed ? proto::kFlagSealedBase : 0;
    w.base_bytes = proto::stored_base_bytes(m.image_size, w.flags);
    w.durable_seq = journal_->last_seq();
  } else if (receiving_) {
    w.volume_id = receiving_->volume_id;
    w.image_size = receiving_->image_size;
    w.base_seq = w.durable_seq = receiving_->base_seq;
    w.base_bytes = partial_bytes_;
    w.flags = receiving_->flags;
  }
  return w;
}

Result<proto::Ack> StoredVolume::begin_base(const proto::BaseBegin& b) {
  if (journal_)
    return refuse(proto::ErrorCode::kConflict,
                  Status::invalid(fmt::format(
                      "{} holds a whole base snapshot already (seq {}); a volume's base is "
                      "sent once",
                      dir_, journal_->manifest().base_seq)));
  if (receiving_) {
    if (*receiving_ == b) return ack();  // a resend after a reconnect: go on
    if (receiving_->volume_id != b.volume_id)
      return refuse(
          proto::ErrorCode::kConflict,
          Status::invalid(fmt::format(
              "{} is receiving the base of another volume; give this one another name", dir_)));
    // The same volume with another base (it was rebased meanwhile): start again.
    partial_ = File();
    progress_ = File();
    const std::string old =
        join_path(join_path(dir_, format::kBaseDir), partial_base_file_name(receiving_->base_seq));
    file_system().unlink(old.c_str());
    file_system().unlink((old + kProgressSuffix).c_str());
  }
  REWIND_RETURN_IF_ERROR(write_file_atomic(join_path(dir_, kReceivingName), serialize(b)));
  const std::string partial =
      join_path(join_path(dir_, format::kBaseDir), partial_base_file_name(b.base_seq));
  auto f = create_temp_file(partial);
  if (!f) return f.status();
  REWIND_RETURN_IF_ERROR(f->sync());
  auto p = create_temp_file(partial + kProgressSuffix);
  if (!p) return p.status();
  REWIND_RETURN_IF_ERROR(p->sync());
  REWIND_RETURN_IF_ERROR(sync_dir(join_path(dir_, format::kBaseDir)));
  receiving_ = b;
  partial_ = std::move(*f);
  progress_ = std::move(*p);
  progress_entries_ = 0;
  partial_bytes_ = 0;
  return ack();
}

Status StoredVolume::check_base_run(uint64_t offset, uint64_t length) {
  if (!receiving_)
    return refuse(proto::ErrorCode::kMalformed,
                  Status::invalid(journal_ ? "base data after the base snapshot was whole"
                                           : "base data before BASE_BEGIN"));
  if (offset > partial_bytes_)
    return refuse(proto::ErrorCode::kGap,
                  Status::invalid(fmt::format("base data at offset {}, but the store holds the "
                                              "first {} bytes; send from there",
                                              offset, partial_bytes_)));
  if (offset + length > whole_base_bytes())
    return refuse(proto::ErrorCode::kMalformed,
                  Status::invalid(fmt::format("base data up to {} is past the base's {} bytes",
                                              offset + length, whole_base_bytes())));
  last_error_ = proto::ErrorCode::kServer;
  return Status::ok();
}

Status StoredVolume::base_held(uint64_t end) {
  REWIND_RETURN_IF_ERROR(append_progress(progress_, progress_entries_, end));
  ++progress_entries_;
  partial_bytes_ = end;
  return Status::ok();
}

Result<proto::Ack> StoredVolume::base_data(uint64_t offset, std::span<const uint8_t> data) {
  REWIND_RETURN_IF_ERROR(check_base_run(offset, data.size()));
  const uint64_t skip = partial_bytes_ - offset;  // bytes held already
  if (skip < data.size()) {
    REWIND_RETURN_IF_ERROR(partial_.pwrite_full(data.subspan(skip), partial_bytes_));
    REWIND_RETURN_IF_ERROR(partial_.datasync());
    REWIND_RETURN_IF_ERROR(base_held(offset + data.size()));
  }
  if (partial_bytes_ == whole_base_bytes()) REWIND_RETURN_IF_ERROR(finish_base());
  return ack();
}

Result<proto::Ack> StoredVolume::base_zero(uint64_t offset, uint64_t length) {
  REWIND_RETURN_IF_ERROR(check_base_run(offset, length));
  if (offset + length > partial_bytes_) {
    // The file ends at partial_bytes_ (recovery cuts it there): extending it adds
    // bytes that read as zeroes. The new size is synced before it is counted.
    REWIND_RETURN_IF_ERROR(partial_.truncate(offset + length));
    REWIND_RETURN_IF_ERROR(partial_.sync());
    REWIND_RETURN_IF_ERROR(base_held(offset + length));
  }
  if (partial_bytes_ == whole_base_bytes()) REWIND_RETURN_IF_ERROR(finish_base());
  return ack();
}

Status StoredVolume::finish_base() {
  const proto::BaseBegin b = *receiving_;
  const std::string base_dir = join_path(dir_, format::kBaseDir);
  const std::string file = base_file_name(b.base_seq);
  REWIND_RETURN_IF_ERROR(partial_.sync());
  REWIND_RETURN_IF_ERROR(partial_.close());
  const std::string from = join_path(base_dir, partial_base_file_name(b.base_seq));
  const std::string to = join_path(base_dir, file);
  if (file_system().rename(from.c_str(), to.c_str()) != 0)
    return Status::io_error(fmt::format("cannot rename {} to {}", from, to), errno);
  REWIND_RETURN_IF_ERROR(sync_dir(base_dir));
  Manifest m;
  std::copy(b.volume_id.begin(), b.volume_id.end(), m.volume_id.begin());
  m.image_path = to;  // a store has no image; its base stands in for one
  m.image_size = b.image_size;
  m.created_ns = b.created_ns;
  m.base_file = file;
  m.base_seq = m.checkpoint_seq = b.base_seq;
  m.base_time_ns = b.base_time_ns;
  m.base_sealed = (b.flags & proto::kFlagSealedBase) != 0;
  REWIND_RETURN_IF_ERROR(m.store(dir_));
  progress_ = File();
  file_system().unlink((from + kProgressSuffix).c_str());
  file_system().unlink(join_path(dir_, kReceivingName).c_str());
  (void)sync_dir(dir_);
  receiving_.reset();
  last_time_ns_ = b.base_time_ns;
  journal_ = std::make_unique<Journal>(dir_, std::move(m), JournalOptions{}, logger_);
  log_to(logger_, LogLevel::kInfo,
         fmt::format("{}: base snapshot at seq {} received whole ({} bytes{})", dir_, b.base_seq,
                     proto::stored_base_bytes(b.image_size, b.flags),
                     m.base_sealed ? ", sealed" : ""));
  return Status::ok();
}

Result<proto::Ack> StoredVolume::append(const proto::Records& records) {
  if (!journal_)
    return refuse(proto::ErrorCode::kMalformed,
                  Status::invalid("records before the base snapshot is whole"));
  const uint64_t durable = journal_->last_seq();
  const uint64_t first = records.headers.front().seq;
  if (first > durable + 1)
    return refuse(proto::ErrorCode::kGap,
                  Status::invalid(fmt::format("records from seq {}, but the store holds up to "
                                              "seq {}; send from seq {}",
                                              first, durable, durable + 1)));
  const uint64_t image_size = journal_->manifest().image_size;
  uint64_t last_time = last_time_ns_;
  std::set<std::string> marks = marks_;
  std::vector<QueuedRecord> batch;
  for (size_t i = 0; i < records.headers.size(); ++i) {
    const RecordHeader& h = records.headers[i];
    if (h.seq <= durable) continue;  // held already: a resend
    // What a reader of this journal will rely on: times that never go back, ranges
    // inside the volume, mark names that are valid and unique.
    if (h.time_ns < last_time)
      return refuse(
          proto::ErrorCode::kMalformed,
          Status::invalid(fmt::format("seq {} is older than the record before it", h.seq)));
    last_time = h.time_ns;
    if (h.offset > image_size || h.length > image_size - h.offset)
      return refuse(proto::ErrorCode::kMalformed,
                    Status::invalid(fmt::format("seq {} covers {} bytes at offset {}, past the "
                                                "end of the volume ({} bytes)",
                                                h.seq, h.length, h.offset, image_size)));
    if (h.type == format::RecordType::kMark) {
      const std::string name = mark_name_of(h, records.payloads[i].data());
      if (Status st = check_mark_name(name); !st) return refuse(proto::ErrorCode::kMalformed, st);
      if (!marks.insert(name).second)
        return refuse(
            proto::ErrorCode::kMalformed,
            Status::invalid(fmt::format("seq {}: a second mark named '{}'", h.seq, name)));
    }
    QueuedRecord q;
    q.header = h;
    // Batches start where this store's syncs do (Journal::append sets the flag).
    q.header.flags = static_cast<uint8_t>(q.header.flags & ~format::kFlagBatchStart);
    if (h.payload_length > 0) {
      std::shared_ptr<uint8_t[]> copy(new uint8_t[h.payload_length]);
      std::copy(records.payloads[i].begin(), records.payloads[i].end(), copy.get());
      q.payload = std::move(copy);
    }
    batch.push_back(std::move(q));
  }
  if (batch.empty()) return ack();
  last_error_ = proto::ErrorCode::kServer;
  Status st = journal_->append(batch);
  if (!st) {
    (void)journal_->recover();
    return st;
  }
  last_time_ns_ = last_time;
  marks_ = std::move(marks);
  return ack();
}

}  // namespace rwd
