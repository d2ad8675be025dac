#include "rewind/ship/bucket_reader.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <xxhash.h>

#include "rewind/base/file.h"
#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/format/segment_index.h"

namespace rwd {

namespace {

constexpr uint64_t kSegmentBlock = 1u << 20;
// CachedFile::present
constexpr uint8_t kMissing = 0, kFetched = 1, kFixed = 2;
// Bytes fetched per round of parallel GETs (buffers are held until written out).
constexpr uint64_t kRoundBytes = 64u << 20;

}  // namespace

Result<std::unique_ptr<S3Client>> open_bucket_client(const std::string& uri,
                                                     const std::string& endpoint,
                                                     const std::string& region,
                                                     const std::string& ca_file) {
  S3Location where;
  REWIND_RETURN_IF_ERROR(parse_s3_uri(uri, &where));
  S3Options o;
  o.endpoint = endpoint;
  o.region = region;
  o.ca_file = ca_file;
  REWIND_RETURN_IF_ERROR(resolve_s3_options(&o));
  return S3Client::open(o, where);
}

Result<std::shared_ptr<BucketCache>> BucketCache::open(std::unique_ptr<S3Client> client,
                                                       BucketReadOptions o, Logger logger) {
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<BucketCache> c(new BucketCache());
    c->client_ = std::move(client);
    c->opts_ = o;
    c->logger_ = logger;
    Status st = c->load();
    if (st) return c;
    // An object the manifest named is gone: its writer replaced the manifest (and
    // deleted what it no longer names) meanwhile. The new manifest names what is there.
    if (st.code() != Status::Code::kNotFound || !c->manifest_read_ || attempt == 4) return st;
    client = std::move(c->client_);
  }
}

Status BucketCache::load() {
  S3Client& s3 = *client_;
  const std::string uri = s3.location().uri();

  auto text = s3.get(s3.location().key(bucket::kManifestName), &etag_);
  if (!text) {
    if (text.status().code() == Status::Code::kNotFound)
      return Status::not_found(
          fmt::format("{} holds no rewind volume (no {}): check the bucket and prefix", uri,
                      bucket::kManifestName));
    return text.status();
  }
  auto bm = BucketManifest::parse(*text, uri + "/" + bucket::kManifestName);
  if (!bm) return bm.status();
  manifest_read_ = true;
  manifest_ = std::move(*bm);
  const Manifest& j = manifest_.journal;

  const std::string map_key = bucket::base_map_key(j.volume_id, j.base_seq);
  auto map_text = s3.get(s3.location().key(map_key));
  if (!map_text) return map_text.status();
  auto map = BaseMap::parse(*map_text, uri + "/" + map_key);
  if (!map) return map.status();
  if (map->file_size != j.base_file_bytes())
    return Status::corruption(fmt::format("{}/{}: a base of {} bytes, but the manifest's is {}{}",
                                          uri, map_key, map->file_size, j.base_file_bytes(),
                                          j.base_sealed ? " (sealed)" : ""));
  base_map_ = std::move(*map);

  // The cache directory, laid out as a journal directory.
  if (opts_.cache_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/var/tmp") + "/rewind-cache.XXXXXX";
    if (!::mkdtemp(templ.data()))
      return Status::io_error(fmt::format("cannot make a cache directory {}", templ), errno);
    dir_ = templ;
  } else {
    dir_ = opts_.cache_dir;
    if (::mkdir(dir_.c_str(), 0700) != 0)
      return Status::io_error(
          fmt::format("cannot make the cache directory {} (it must not exist yet)", dir_), errno);
  }
  remove_dir_ = true;
  for (const char* sub : {format::kBaseDir, format::kSegmentDir})
    if (::mkdir(join_path(dir_, sub).c_str(), 0700) != 0)
      return Status::io_error("cannot make " + join_path(dir_, sub), errno);
  REWIND_RETURN_IF_ERROR(j.store(dir_));

  // The base: a sparse file; chunks the map does not list are zeroes, present already.
  const BaseMap& bmap = base_map_;
  base_.path = base_path(dir_, j.base_file);
  base_.size = bmap.file_size;
  base_.block = bmap.chunk_bytes;
  const uint64_t nchunks = (bmap.file_size + bmap.chunk_bytes - 1) / bmap.chunk_bytes;
  base_.present.assign(nchunks, kFixed);
  base_.used.assign(nchunks, 0);
  for (const BaseChunk& ch : bmap.chunks) base_.present[ch.offset / bmap.chunk_bytes] = kMissing;
  {
    auto f = create_new_file(base_.path);
    if (!f) return f.status();
    REWIND_RETURN_IF_ERROR(f->truncate(bmap.file_size));
  }

  // Segments: sparse files; indexes fetched; the open one fetched whole from its tails.
  size_t sealed = 0;
  for (size_t i = 0; i < j.segments.size(); ++i) {
    const ManifestSegment& seg = j.segments[i];
    CachedFile cf;
    cf.path = segment_path(dir_, seg.file);
    cf.size = seg.sealed ? seg.bytes : manifest_.tails.back().end;
    cf.block = kSegmentBlock;
    const uint64_t nblocks = (cf.size + cf.block - 1) / cf.block;
    cf.present.assign(nblocks, kMissing);
    cf.used.assign(nblocks, 0);
    auto f = create_new_file(cf.path);
    if (!f) return f.status();
    REWIND_RETURN_IF_ERROR(f->truncate(cf.size));
    segments_.push_back(std::move(cf));
    if (!seg.sealed) {
      std::vector<std::vector<uint8_t>> bufs;
      std::vector<RangeRead> reads;
      for (const BucketTail& t : manifest_.tails) {
        bufs.emplace_back(t.end - t.offset);
        reads.push_back(RangeRead{s3.location().key(bucket::tail_key(t.gen, t.first_seq, t.offset)),
                                  0, bufs.back()});
      }
      REWIND_RETURN_IF_ERROR(s3.get_ranges(reads, opts_.parallel));
      for (size_t t = 0; t < reads.size(); ++t)
        REWIND_RETURN_IF_ERROR(f->pwrite_full(bufs[t], manifest_.tails[t].offset));
      segments_.back().present.assign(nblocks, kFixed);
      segments_.back().resident = true;
      stats_.fetched_bytes += segments_.back().size;
      continue;
    }
    const BucketSegment& b = manifest_.segments[sealed++];
    bool indexed = false;
    if (b.index) {
      auto idx = s3.get(s3.location().key(bucket::segment_key(b.gen, index_file_name(seg.file))));
      if (!idx) return idx.status();
      REWIND_RETURN_IF_ERROR(
          write_file_atomic(segment_path(dir_, index_file_name(seg.file)), *idx));
      auto entries = read_segment_index(dir_, j.volume_id, seg);
      if (entries) {
        indexed = true;
        // The records of marks: JournalHistory reads their names.
        std::vector<Range> marks;
        for (const IndexEntry& e : entries->entries)
          if (e.type == format::RecordType::kMark)
            marks.push_back(Range{static_cast<int64_t>(i), e.position,
                                  format::kRecordHeaderSize + e.payload_length});
        if (!marks.empty()) {
          auto blocks = blocks_of(marks);
          std::unique_lock lk(mu_);
          REWIND_RETURN_IF_ERROR(fetch_blocks(blocks));
        }
      } else {
        log_to(logger_, LogLevel::kInfo,
               fmt::format("the index of segment {} in {} is unusable ({}); fetching the segment "
                           "whole",
                           seg.file, uri, entries.status().message()));
      }
    }
    if (!indexed) REWIND_RETURN_IF_ERROR(fetch_whole(static_cast<int64_t>(i)));
  }
  return Status::ok();
}

BucketCache::~BucketCache() {
  if (remove_dir_ && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

BucketCache::CachedFile& BucketCache::file_of(int64_t segment) const {
  return segment < 0 ? base_ : segments_[static_cast<size_t>(segment)];
}

std::vector<std::pair<int64_t, uint64_t>> BucketCache::blocks_of(
    std::span<const Range> ranges) const {
  std::vector<std::pair<int64_t, uint64_t>> out;
  for (const Range& r : ranges) {
    if (r.length == 0) continue;
    const CachedFile& f = file_of(r.segment);
    const uint64_t end = std::min(r.offset + r.length, f.size);
    for (uint64_t b = r.offset / f.block; b * f.block < end; ++b) out.emplace_back(r.segment, b);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status BucketCache::fetch_whole(int64_t segment) {
  CachedFile& f = file_of(segment);
  std::vector<std::pair<int64_t, uint64_t>> all;
  for (uint64_t b = 0; b < f.present.size(); ++b) all.emplace_back(segment, b);
  std::unique_lock lk(mu_);
  REWIND_RETURN_IF_ERROR(fetch_blocks(all));
  f.resident = true;
  f.present.assign(f.present.size(), kFixed);
  return Status::ok();
}

Status BucketCache::fetch_blocks(const std::vector<std::pair<int64_t, uint64_t>>& wanted) const {
  const S3Location& loc = client_->location();
  const Manifest& j = manifest_.journal;
  // Segment i's sealed-segment entry in the bucket manifest.
  std::vector<const BucketSegment*> bseg(j.segments.size(), nullptr);
  for (size_t i = 0, s = 0; i < j.segments.size(); ++i)
    if (j.segments[i].sealed) bseg[i] = &manifest_.segments[s++];
  std::map<uint64_t, BaseChunk> base_chunks;
  for (const BaseChunk& ch : base_map_.chunks) base_chunks[ch.offset] = ch;

  size_t at = 0;
  while (at < wanted.size()) {
    // A round: up to kRoundBytes of missing blocks, fetched in parallel.
    std::vector<std::pair<int64_t, uint64_t>> round;
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<RangeRead> reads;
    uint64_t round_bytes = 0;
    for (; at < wanted.size() && round_bytes < kRoundBytes; ++at) {
      const auto [file, block] = wanted[at];
      CachedFile& f = file_of(file);
      if (f.present[block] != kMissing) continue;
      const uint64_t off = block * f.block;
      const uint64_t len = std::min(f.block, f.size - off);
      std::string key;
      uint64_t obj_off = off;
      if (file < 0) {
        key = loc.key(bucket::base_chunk_key(j.volume_id, base_chunks[off].seq, off));
        obj_off = 0;
      } else {
        const BucketSegment* b = bseg[static_cast<size_t>(file)];
        if (!b) return Status::invalid("the open segment is not fetched by blocks");
        key = loc.key(bucket::segment_key(b->gen, b->file));
      }
      bufs.emplace_back(len);
      reads.push_back(RangeRead{std::move(key), obj_off, {}, file < 0 && j.base_sealed});
      round.emplace_back(file, block);
      round_bytes += len;
    }
    for (size_t i = 0; i < reads.size(); ++i) reads[i].into = bufs[i];
    REWIND_RETURN_IF_ERROR(client_->get_ranges(reads, opts_.parallel));
    for (size_t i = 0; i < round.size(); ++i) {
      const auto [file, block] = round[i];
      CachedFile& f = file_of(file);
      if (file < 0) {
        const uint64_t off = block * f.block;
        const uint64_t sum = XXH3_64bits(bufs[i].data(), bufs[i].size());
        if (base_chunks[off].sum != sum)
          return Status::corruption(fmt::format(
              "{}: the base chunk at offset {} does not match its checksum in the base map (the "
              "object is damaged or was replaced)",
              loc.uri(), off));
      }
      auto out = File::open(f.path, O_WRONLY);
      if (!out) return out.status();
      REWIND_RETURN_IF_ERROR(out->pwrite_full(bufs[i], block * f.block));
      f.present[block] = kFetched;
      f.used[block] = ++tick_;
      stats_.fetched_bytes += bufs[i].size();
      stats_.cached_bytes += bufs[i].size();
    }
  }
  return Status::ok();
}

void BucketCache::make_room(uint64_t incoming,
                            const std::vector<std::pair<int64_t, uint64_t>>& keep) const {
  if (opts_.cache_limit == 0 || stats_.cached_bytes + incoming <= opts_.cache_limit) return;
  struct Candidate {
    uint64_t used;
    int64_t file;
    uint64_t block;
  };
  std::vector<Candidate> all;
  auto collect = [&](int64_t file) {
    const CachedFile& f = file_of(file);
    if (f.resident) return;
    for (uint64_t b = 0; b < f.present.size(); ++b)
      if (f.present[b] == kFetched &&
          !std::binary_search(keep.begin(), keep.end(), std::pair{file, b}))
        all.push_back({f.used[b], file, b});
  };
  collect(-1);
  for (size_t i = 0; i < segments_.size(); ++i) collect(static_cast<int64_t>(i));
  std::sort(all.begin(), all.end(),
            [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
  for (const Candidate& c : all) {
    if (stats_.cached_bytes + incoming <= opts_.cache_limit) break;
    CachedFile& f = file_of(c.file);
    const uint64_t off = c.block * f.block;
    const uint64_t len = std::min(f.block, f.size - off);
    auto out = File::open(f.path, O_WRONLY);
    if (!out || ::fallocate(out->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(off), static_cast<off_t>(len)) != 0)
      continue;  // kept: the cache may then pass its limit, reads stay right
    f.present[c.block] = kMissing;
    f.used[c.block] = 0;
    stats_.cached_bytes -= len;
    stats_.evicted_bytes += len;
  }
}

Result<std::shared_ptr<void>> BucketCache::fetch(std::span<const Range> ranges) const {
  const auto blocks = blocks_of(ranges);
  auto all_present = [&] {
    return std::all_of(blocks.begin(), blocks.end(), [&](const auto& fb) {
      return file_of(fb.first).present[fb.second] != kMissing;
    });
  };
  for (;;) {
    {
      auto pin = std::make_shared<std::shared_lock<std::shared_mutex>>(mu_);
      if (all_present()) return std::shared_ptr<void>(pin);
    }
    std::unique_lock lk(mu_);
    std::vector<std::pair<int64_t, uint64_t>> missing;
    uint64_t incoming = 0;
    for (const auto& fb : blocks) {
      CachedFile& f = file_of(fb.first);
      if (f.present[fb.second] == kFixed) continue;
      if (f.present[fb.second] == kFetched) {
        f.used[fb.second] = ++tick_;
      } else {
        missing.push_back(fb);
        incoming += std::min(f.block, f.size - fb.second * f.block);
      }
    }
    make_room(incoming, blocks);
    REWIND_RETURN_IF_ERROR(fetch_blocks(missing));
  }
}

Status BucketCache::fetch_everything() {
  for (int64_t file = -1; file < static_cast<int64_t>(segments_.size()); ++file) {
    const CachedFile& f = file_of(file);
    if (f.resident) continue;
    std::vector<std::pair<int64_t, uint64_t>> all;
    for (uint64_t b = 0; b < f.present.size(); ++b) all.emplace_back(file, b);
    std::unique_lock lk(mu_);
    REWIND_RETURN_IF_ERROR(fetch_blocks(all));
  }
  return Status::ok();
}

BucketCache::Stats BucketCache::stats() const {
  std::shared_lock lk(mu_);
  Stats s = stats_;
  s.requests = client_->requests();
  return s;
}

}  // namespace rwd
