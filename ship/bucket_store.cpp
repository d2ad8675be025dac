#include "rewind/ship/bucket_store.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"
#include "rewind/ship/bucket.h"

namespace rwd {

namespace {

constexpr const char* kSpoolDir = "spool";
constexpr const char* kReadDir = "read";

// Lays out `dir` as the journal the bucket manifest `bm` describes, without what the
// bucket holds whole (the base snapshot and the sealed segments stay absent: a
// spool only appends): the manifest, the open segment's bytes from its pieces, and
// SHIP-WRITER naming the generations that wrote the manifest, so that a BucketWriter
// on it goes on from them.
Status lay_out_spool(const std::string& dir, const BucketManifest& bm, S3Client& client) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return Status::io_error(fmt::format("cannot remove the old spool {}", dir), ec.value());
  REWIND_RETURN_IF_ERROR(make_private_dir(dir, "spool"));
  for (const char* sub : {format::kBaseDir, format::kSegmentDir})
    REWIND_RETURN_IF_ERROR(make_private_dir(join_path(dir, sub), "spool directory"));
  Manifest j = bm.journal;
  j.image_path = base_path(dir, j.base_file);
  // An open segment has pieces (BucketManifest::parse checks): its bytes.
  if (!j.segments.empty() && !j.segments.back().sealed) {
    auto f = create_new_file(segment_path(dir, j.segments.back().file));
    if (!f) return f.status();
    uint64_t at = 0;
    for (const BucketTail& t : bm.tails) {
      const std::string key = client.location().key(bucket::tail_key(t.gen, t.first_seq, t.offset));
      if (t.offset != at)
        return Status::corruption(fmt::format(
            "{}: the open segment's pieces leave a gap at byte {}", client.location().uri(), at));
      auto bytes = client.get(key);
      if (!bytes) return bytes.status();
      if (bytes->size() != t.end - t.offset)
        return Status::corruption(fmt::format("s3://{}/{} holds {} bytes, not the {} its name says",
                                              client.location().bucket, key, bytes->size(),
                                              t.end - t.offset));
      REWIND_RETURN_IF_ERROR(f->pwrite_full(
          std::span(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()), at));
      at = t.end;
    }
    REWIND_RETURN_IF_ERROR(f->sync());
  }
  REWIND_RETURN_IF_ERROR(j.store(dir));
  ShipWriterState w{client.location().uri(), {}};
  for (uint64_t g : {bm.owner, bm.writer})
    if (g != 0 && std::find(w.gens.begin(), w.gens.end(), g) == w.gens.end()) w.gens.push_back(g);
  REWIND_RETURN_IF_ERROR(write_ship_writer(dir, w));
  REWIND_RETURN_IF_ERROR(sync_dir(join_path(dir, format::kSegmentDir)));
  return sync_dir(dir);
}

}  // namespace

Status prepare_bucket_store(BucketStoreOptions* o, const Logger& logger) {
  if (o->cache_dir.empty())
    return Status::invalid(fmt::format(
        "--store {} needs --cache DIR: a local directory for the spools of the volumes being "
        "received and the caches of readers (the bucket holds everything acknowledged)",
        o->where.uri()));
  // One request that must find the bucket and no object: it checks the endpoint, the
  // credentials and the bucket before the server creates anything or takes a volume.
  auto client = S3Client::open(o->s3, o->where);
  if (!client) return client.status().with_context("--store");
  auto probe = (*client)->get(o->where.key(".rewind-server-probe"));
  if (!probe && probe.status().code() != Status::Code::kNotFound)
    return probe.status().with_context("--store");
  bool created = false;
  std::optional<mode_t> was;
  REWIND_RETURN_IF_ERROR(prepare_store(o->cache_dir, &created, &was).with_context("--cache"));
  if (created)
    log_to(logger, LogLevel::kInfo, fmt::format("created the cache {} (mode 0700)", o->cache_dir));
  if (was)
    log_to(logger, LogLevel::kInfo,
           fmt::format("the cache {} was readable by others (mode {:04o}); made it private (0700)",
                       o->cache_dir, *was));
  REWIND_RETURN_IF_ERROR(make_private_dir(join_path(o->cache_dir, kSpoolDir), "spool directory"));
  // Readers' caches live as long as their session; a crash leaves them behind.
  const std::string read = bucket_read_dir(*o);
  std::error_code ec;
  std::filesystem::remove_all(read, ec);
  if (ec) return Status::io_error(fmt::format("cannot remove {}", read), ec.value());
  return make_private_dir(read, "cache directory");
}

std::string bucket_read_dir(const BucketStoreOptions& o) {
  return join_path(o.cache_dir, kReadDir);
}

Result<std::pair<S3Location, std::string>> split_volume_location(const S3Location& volume) {
  if (volume.prefix.empty())
    return Status::invalid(fmt::format("{} has no prefix: give s3://BUCKET/PREFIX", volume.uri()));
  const size_t slash = volume.prefix.rfind('/');
  S3Location store = volume;
  store.prefix = slash == std::string::npos ? "" : volume.prefix.substr(0, slash);
  std::string name = volume.prefix.substr(slash == std::string::npos ? 0 : slash + 1);
  if (Status st = proto::check_volume_name(name); !st)
    return Status::invalid(fmt::format("{}: the prefix's last part '{}' names the volume: {}",
                                       volume.uri(), name, st.message()));
  return std::pair{std::move(store), std::move(name)};
}

Result<std::unique_ptr<S3Client>> bucket_volume_client(const BucketStoreOptions& o,
                                                       const std::string& name) {
  REWIND_RETURN_IF_ERROR(proto::check_volume_name(name));
  S3Location where = o.where;
  where.prefix = where.key(name);
  return S3Client::open(o.s3, where);
}

Result<std::unique_ptr<BucketVolume>> BucketVolume::open(const BucketStoreOptions& o,
                                                         const std::string& name, Logger logger) {
  std::unique_ptr<BucketVolume> v(new BucketVolume(o, name, std::move(logger)));
  v->spool_root_ = join_path(o.cache_dir, kSpoolDir);
  auto client = bucket_volume_client(o, name);
  if (!client) return client.status();
  v->uri_ = (*client)->location().uri();
  for (int attempt = 1;; ++attempt) {
    auto text = (*client)->get((*client)->location().key(bucket::kManifestName));
    std::optional<BucketManifest> bm;
    if (text) {
      auto parsed = BucketManifest::parse(*text, v->uri_ + "/" + bucket::kManifestName);
      if (!parsed) return parsed.status();
      bm = std::move(*parsed);
    } else if (text.status().code() != Status::Code::kNotFound) {
      return text.status();
    }
    REWIND_RETURN_IF_ERROR(v->open_spool(bm, **client));
    if (!v->spool_->has_base()) return v;
    Status st = v->start_writer();
    if (st) return v;
    // The manifest moved on after it was read: another server's session of the volume
    // stored it (one its shipper has left, most likely). The newest session goes on,
    // from the bucket as it is now; the other is refused at its next step.
    if (st.code() != Status::Code::kBusy || attempt == 3) return st;
    log_to(v->logger_, LogLevel::kInfo,
           fmt::format("volume '{}': {} changed while the session started ({}); starting again "
                       "from it",
                       name, v->uri_, st.message()));
    v->writer_.reset();
    v->spool_.reset();
    v->trimmed_.clear();
  }
}

BucketVolume::~BucketVolume() {
  if (writer_)
    log_to(logger_, LogLevel::kInfo,
           fmt::format("volume '{}': {} requests to {} in this session (generation {})", name_,
                       writer_->client().requests(), uri_, writer_->generation()));
}

Status BucketVolume::open_spool(const std::optional<BucketManifest>& bm, S3Client& client) {
  const std::string dir = join_path(spool_root_, name_);
  auto spool = StoredVolume::open(spool_root_, name_, true, logger_);
  if (!spool && (!bm || spool.status().code() == Status::Code::kBusy)) return spool.status();
  // Nothing whole in the bucket: the spool goes on as it is (a base arriving, or one
  // received whole and not stored yet).
  if (spool && !bm) {
    spool_ = std::move(*spool);
    return Status::ok();
  }
  // The spool goes on only if it wrote the bucket's manifest last and holds all of it.
  std::string why = spool ? "it did not write the bucket's manifest last"
                          : "it cannot be opened: " + spool.status().message();
  if (spool && (*spool)->journal()) {
    const Journal& j = *(*spool)->journal();
    auto w = read_ship_writer(dir);
    const bool mine = w && w->uri == uri_ &&
                      std::find(w->gens.begin(), w->gens.end(), bm->writer) != w->gens.end();
    if (mine && j.manifest().volume_id == bm->journal.volume_id &&
        j.manifest().base_seq == bm->journal.base_seq && j.last_seq() >= bm->last_seq) {
      spool_ = std::move(*spool);
      return Status::ok();
    }
  } else if (spool) {
    why = "it holds no whole base snapshot";
  }
  if (spool) spool->reset();  // unlocks it
  log_to(logger_, LogLevel::kInfo,
         fmt::format("volume '{}': starting its spool again from {} (seq {}, generation {}): {}",
                     name_, uri_, bm->last_seq, bm->writer, why));
  REWIND_RETURN_IF_ERROR(lay_out_spool(dir, *bm, client));
  auto again = StoredVolume::open(spool_root_, name_, false, logger_);
  if (!again) return again.status();
  if (!(*again)->journal() || (*again)->journal()->last_seq() != bm->last_seq)
    return Status::corruption(fmt::format(
        "{}: the open segment's pieces hold records up to seq {}, but the manifest says seq {}",
        uri_, (*again)->journal() ? (*again)->journal()->last_seq() : 0, bm->last_seq));
  spool_ = std::move(*again);
  return Status::ok();
}

Status BucketVolume::start_writer() {
  const Journal& j = *spool_->journal();
  auto client = bucket_volume_client(opts_, name_);
  if (!client) return fail(client.status());
  auto w =
      BucketWriter::open(std::move(*client), spool_->dir(), j.manifest(), j.last_seq(), logger_);
  if (!w) return fail(w.status());
  writer_ = std::move(*w);
  uint64_t bytes = 0;
  if (!writer_->has_base()) {
    if (Status st = writer_->store_base(j.manifest(), &bytes); !st) return fail(st);
    log_to(logger_, LogLevel::kInfo,
           fmt::format("volume '{}': stored its base snapshot (seq {}) in {}, {} bytes", name_,
                       j.manifest().base_seq, uri_, bytes));
  }
  if (writer_->behind(j.manifest(), j.durable_position()))
    if (Status st = writer_->ship(j.manifest(), j.durable_position(), &bytes); !st) return fail(st);
  trim();
  return Status::ok();
}

void BucketVolume::trim() {
  if (!writer_ || !writer_->manifest()) return;
  const BucketManifest& bm = *writer_->manifest();
  const Manifest& m = spool_->journal()->manifest();
  auto remove = [&](const std::string& path) {
    if (!trimmed_.insert(path).second) return;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      log_to(logger_, LogLevel::kWarning,
             fmt::format("volume '{}': cannot remove {} from its spool: {}", name_, path,
                         std::strerror(errno)));
  };
  if (bm.journal.base_seq == m.base_seq) remove(base_path(spool_->dir(), m.base_file));
  for (const ManifestSegment& held : bm.journal.segments) {
    if (!held.sealed) continue;
    for (const ManifestSegment& seg : m.segments)
      if (seg.sealed && seg.file == held.file) {
        remove(segment_path(spool_->dir(), seg.file));
        remove(segment_path(spool_->dir(), index_file_name(seg.file)));
      }
  }
}

Status BucketVolume::fail(Status st) {
  last_error_ =
      st.code() == Status::Code::kBusy ? proto::ErrorCode::kBusy : proto::ErrorCode::kServer;
  return st;
}

proto::Ack BucketVolume::bucket_ack() const {
  const BucketManifest& bm = *writer_->manifest();
  return proto::Ack{bm.last_seq, bm.journal.base_file_bytes()};
}

proto::Welcome BucketVolume::state() const {
  if (!writer_ || !writer_->manifest()) return spool_->state();
  const BucketManifest& bm = *writer_->manifest();
  proto::Welcome w;
  std::copy(bm.journal.volume_id.begin(), bm.journal.volume_id.end(), w.volume_id.begin());
  w.image_size = bm.journal.image_size;
  w.base_seq = bm.journal.base_seq;
  w.flags = bm.journal.base_sealed ? proto::kFlagSealedBase : 0;
  w.base_bytes = bm.journal.base_file_bytes();
  w.durable_seq = bm.last_seq;
  return w;
}

Result<uint64_t> BucketVolume::stored_bytes() const {
  if (!writer_ || !writer_->manifest()) return spool_->stored_bytes();
  const BucketManifest& bm = *writer_->manifest();
  uint64_t total = writer_->base_map().data_bytes();
  for (const ManifestSegment& seg : bm.journal.segments)
    if (seg.sealed) total += seg.bytes;
  for (const BucketTail& t : bm.tails) total += t.end - t.offset;
  return total;
}

Result<proto::Ack> BucketVolume::begin_base(const proto::BaseBegin& b) {
  auto a = spool_->begin_base(b);
  if (!a) last_error_ = spool_->last_error();
  return a;
}

Result<proto::Ack> BucketVolume::base_data(uint64_t offset, std::span<const uint8_t> data) {
  return base_received(spool_->base_data(offset, data));
}

Result<proto::Ack> BucketVolume::base_zero(uint64_t offset, uint64_t length) {
  return base_received(spool_->base_zero(offset, length));
}

Result<proto::Ack> BucketVolume::base_received(Result<proto::Ack> spooled) {
  if (!spooled) {
    last_error_ = spool_->last_error();
    return spooled;
  }
  // The last of the base: it goes to the bucket before it is acknowledged.
  if (spool_->has_base() && !writer_) REWIND_RETURN_IF_ERROR(start_writer());
  return writer_ ? bucket_ack() : *spooled;
}

Result<proto::Ack> BucketVolume::append(const proto::Records& records) {
  auto a = spool_->append(records);
  if (!a) {
    last_error_ = spool_->last_error();
    return a;
  }
  if (!writer_) return fail(Status::invalid("records before the base snapshot is whole"));
  for (const RecordHeader& h : records.headers)
    if (h.seq > writer_->manifest()->last_seq)
      uncommitted_ += format::record_span(h.payload_length);
  return bucket_ack();
}

Result<proto::Ack> BucketVolume::commit() {
  if (!writer_) return fail(Status::invalid("records before the base snapshot is whole"));
  const Journal& j = *spool_->journal();
  uint64_t bytes = 0;
  if (Status st = writer_->ship(j.manifest(), j.durable_position(), &bytes); !st) return fail(st);
  uncommitted_ = 0;
  trim();
  return bucket_ack();
}

}  // namespace rwd
