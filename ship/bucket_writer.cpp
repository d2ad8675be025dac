#include "rewind/ship/bucket_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <xxhash.h>

#include "rewind/base/clock.h"
#include "rewind/base/file.h"
#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/format/seal.h"
#include "rewind/format/segment_index.h"
#include "rewind/format/text.h"
#include "rewind/ship/bucket_reader.h"

namespace rwd {

namespace {

// A refusal retrying cannot cure is kBusy; any other kBusy (an S3 409 on a plain PUT)
// is an error like others, retried.
Status transient(Status st) {
  if (st.code() == Status::Code::kBusy) return Status::remote(st.message());
  return st;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

std::optional<ShipWriterState> read_ship_writer(const std::string& dir) {
  auto text = read_small_file(join_path(dir, kShipWriterName), 64 * 1024);
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string line;
  ShipWriterState s;
  if (!std::getline(in, line) || line != "rewind-ship-writer 1") return std::nullopt;
  while (std::getline(in, line)) {
    if (line.starts_with("uri ")) s.uri = line.substr(4);
    if (line.starts_with("gens")) {
      std::istringstream g(line.substr(4));
      uint64_t v;
      while (g >> v) s.gens.push_back(v);
    }
  }
  return s;
}

Status write_ship_writer(const std::string& dir, const ShipWriterState& s) {
  std::string text = "rewind-ship-writer 1\nuri " + s.uri + "\ngens";
  for (uint64_t g : s.gens) text += fmt::format(" {}", g);
  text += "\n";
  return write_file_atomic(join_path(dir, kShipWriterName), text);
}

Result<std::unique_ptr<BucketWriter>> BucketWriter::open(std::unique_ptr<S3Client> client,
                                                         std::string journal_dir, const Manifest& m,
                                                         uint64_t durable_seq, Logger logger) {
  std::unique_ptr<BucketWriter> w(
      new BucketWriter(std::move(client), std::move(journal_dir), std::move(logger)));
  S3Client& c = *w->client_;
  const std::string uri = c.location().uri();
  std::string etag;
  auto text = c.get(c.location().key(bucket::kManifestName), &etag);
  if (!text && text.status().code() != Status::Code::kNotFound) return transient(text.status());
  std::optional<ShipWriterState> state = read_ship_writer(w->dir_);
  if (state && state->uri != uri) state.reset();
  uint64_t after = 0;
  if (text) {
    auto bm = BucketManifest::parse(*text, uri + "/" + bucket::kManifestName);
    if (!bm) return bm.status();
    const Manifest& j = bm->journal;
    if (j.volume_id != m.volume_id)
      return Status::busy(fmt::format(
          "{} holds volume {}, not this journal's {}: give this volume a prefix of its own", uri,
          volume_id_hex(j.volume_id), volume_id_hex(m.volume_id)));
    if (bm->last_seq > durable_seq)
      return Status::busy(fmt::format(
          "{} holds this volume up to seq {}, beyond this journal's newest durable seq {}: another "
          "copy of the volume wrote it; nothing is taken as shipped",
          uri, bm->last_seq, durable_seq));
    if (bm->last_seq < m.base_seq)
      return Status::busy(fmt::format(
          "{} holds this volume up to seq {}, but this journal starts after seq {} (its older "
          "records were folded into its base): ship it to a new prefix",
          uri, bm->last_seq, m.base_seq));
    const auto mine = [&](uint64_t g) {
      return std::find(state->gens.begin(), state->gens.end(), g) != state->gens.end();
    };
    if (state && !mine(bm->writer) && !mine(bm->owner)) {
      std::string who = fmt::format("generation {}", bm->writer);
      if (auto claim = c.get(c.location().key(bucket::writer_key(bm->writer))))
        if (auto parsed = WriterClaim::parse(*claim, "claim")) who = parsed->describe();
      return Status::busy(fmt::format(
          "{}: another writer, {}, stored the manifest after this journal last shipped there: "
          "refused, never interleaved; stop the other writer, or ship this volume to a prefix of "
          "its own",
          uri, who));
    }
    after = std::max(bm->writer, bm->owner);
    const std::string map_key = bucket::base_map_key(j.volume_id, j.base_seq);
    auto map_text = c.get(c.location().key(map_key));
    if (!map_text) return transient(map_text.status());
    auto map = BaseMap::parse(*map_text, uri + "/" + map_key);
    if (!map) return map.status();
    w->base_map_ = std::move(*map);
    w->manifest_ = std::move(*bm);
    w->etag_ = etag;
  }
  if (state && !state->gens.empty()) after = std::max(after, state->gens.back());
  REWIND_RETURN_IF_ERROR(w->claim_generation(after, m.volume_id));
  ShipWriterState next = state.value_or(ShipWriterState{uri, {}});
  next.gens.push_back(w->gen_);
  if (next.gens.size() > 16) next.gens.erase(next.gens.begin(), next.gens.end() - 16);
  REWIND_RETURN_IF_ERROR(write_ship_writer(w->dir_, next));
  w->my_gens_ = next.gens;
  return w;
}

Status BucketWriter::claim_generation(uint64_t after, const VolumeId& volume) {
  WriterClaim claim;
  claim.host = host_name();
  claim.pid = static_cast<uint64_t>(::getpid());
  claim.started_ns = wall_clock_ns();
  claim.volume_id = volume;
  // The next generation nobody claimed: claims are created once, so two writers never
  // hold the same one.
  for (uint64_t gen = after + 1; gen <= after + 64; ++gen) {
    claim.gen = gen;
    const std::string text = claim.serialize();
    auto r = client_->put(client_->location().key(bucket::writer_key(gen)),
                          std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                          PutCondition::absent());
    if (r) {
      gen_ = gen;
      return Status::ok();
    }
    if (r.status().code() != Status::Code::kBusy) return transient(r.status());
  }
  return Status::remote(
      fmt::format("{}: generations {}..{} are all claimed: writers keep starting there",
                  client_->location().uri(), after + 1, after + 64));
}

Status BucketWriter::store_manifest(const BucketManifest& next) {
  const std::string text = next.serialize();
  const std::string key = client_->location().key(bucket::kManifestName);
  auto r = client_->put(key, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                        etag_.empty() ? PutCondition::absent() : PutCondition::match(etag_));
  if (r) {
    etag_ = *r;
    manifest_ = next;
    return Status::ok();
  }
  if (r.status().code() != Status::Code::kBusy) return r.status();
  // Someone stored the manifest since: this writer, if an earlier answer was lost;
  // else another writer, which wins.
  std::string etag;
  auto now = client_->get(key, &etag);
  if (!now) return transient(now.status());
  auto parsed =
      BucketManifest::parse(*now, client_->location().uri() + "/" + bucket::kManifestName);
  if (parsed && parsed->writer == gen_) {
    etag_ = etag;
    manifest_ = std::move(*parsed);
    return manifest_ == next ? Status::ok()
                             : Status::remote("the manifest changed under this writer");
  }
  if (maintainer_)
    return Status::busy(fmt::format(
        "{}: the copy changed during this pass (is its volume shipping? run `rewind retain "
        "s3://` with the plugin stopped, or give the plugin retain= to apply to its copy); "
        "nothing it names was touched",
        client_->location().uri()));
  // A maintenance pass stored it on this journal's behalf: start again from it.
  if (parsed && std::find(my_gens_.begin(), my_gens_.end(), parsed->owner) != my_gens_.end())
    return Status::remote(fmt::format(
        "{}: generation {} stored the manifest on this journal's behalf; starting again from it",
        client_->location().uri(), parsed->writer));
  std::string who = parsed ? fmt::format("generation {}", parsed->writer) : "unknown";
  if (parsed)
    if (auto claim = client_->get(client_->location().key(bucket::writer_key(parsed->writer))))
      if (auto c = WriterClaim::parse(*claim, "claim")) who = c->describe();
  return Status::busy(fmt::format(
      "{}: another writer, {}, stored the manifest after this one (generation {}) did: refused, "
      "never interleaved; stop the other writer, or ship this volume to a prefix of its own",
      client_->location().uri(), who, gen_));
}

Result<BaseMap> BucketWriter::store_base_chunks(
    const Manifest& m, const BaseMap* old, const std::vector<bool>* only,
    const std::set<std::pair<std::string, uint64_t>>& have, uint64_t* bytes) {
  auto base = File::open(base_path(dir_, m.base_file), O_RDONLY);
  if (!base) return base.status();
  BaseMap map;
  map.file_size = m.base_file_bytes();
  // A sealed base is stored a slot per object, without the zeroes each slot ends in:
  // every slot holds something (a chunk of zeroes is sealed too), mostly a few bytes.
  if (m.base_sealed) map.chunk_bytes = kSealedSlotBytes;
  std::map<uint64_t, BaseChunk> before;
  if (old)
    for (const BaseChunk& c : old->chunks) before[c.offset] = c;
  std::vector<uint8_t> chunk;
  uint64_t skipped = 0, kept = 0;
  for (uint64_t off = 0; off < map.file_size; off += map.chunk_bytes) {
    const uint64_t len = map.chunk_length(off);
    auto was = before.find(off);
    if (only && !(*only)[off / map.chunk_bytes]) {
      // Not changed since the old base: its object, if it has one, serves again.
      if (was != before.end()) map.chunks.push_back(was->second);
      continue;
    }
    // A hole over the whole chunk reads as zeroes, without reading it.
    const off_t data = ::lseek(base->fd(), static_cast<off_t>(off), SEEK_DATA);
    if (data < 0 && errno == ENXIO && !only) break;
    if ((data < 0 && errno == ENXIO) || (data >= 0 && static_cast<uint64_t>(data) >= off + len)) {
      if (!only && data >= 0)
        off = (static_cast<uint64_t>(data) / map.chunk_bytes) * map.chunk_bytes - map.chunk_bytes;
      continue;
    }
    chunk.resize(len);
    REWIND_RETURN_IF_ERROR(base->pread_full(chunk, off));
    if (std::all_of(chunk.begin(), chunk.end(), [](uint8_t b) { return b == 0; })) continue;
    const uint64_t sum = XXH3_64bits(chunk.data(), chunk.size());
    if (was != before.end() && was->second.sum == sum) {
      map.chunks.push_back(was->second);
      ++kept;
      continue;
    }
    const std::string key =
        client_->location().key(bucket::base_chunk_key(m.volume_id, m.base_seq, off));
    std::span<const uint8_t> object(chunk);
    if (m.base_sealed)
      while (!object.empty() && object.back() == 0) object = object.first(object.size() - 1);
    map.chunks.push_back(BaseChunk{off, sum, m.base_seq, object.size() == len ? 0 : object.size()});
    if (have.count({key, object.size()})) {
      ++skipped;
      continue;
    }
    auto r = client_->put(key, object);
    if (!r) return transient(r.status());
    *bytes += object.size();
  }
  if (skipped)
    log_to(logger_, LogLevel::kInfo,
           fmt::format("ship: {} chunks of the base were stored by an earlier try", skipped));
  const std::string text = map.serialize();
  auto r = client_->put(client_->location().key(bucket::base_map_key(m.volume_id, m.base_seq)),
                        std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  if (!r) return transient(r.status());
  *bytes += text.size();
  return map;
}

Status BucketWriter::store_base(const Manifest& m, uint64_t* bytes) {
  if (manifest_) return Status::ok();
  const std::string dir = client_->location().key(bucket::base_dir(m.volume_id, m.base_seq));
  // Chunks stored by an earlier try (one LIST, while the base is sent only).
  auto listed = client_->list(dir + "/");
  if (!listed) return transient(listed.status());
  std::set<std::pair<std::string, uint64_t>> have;
  for (const ObjectInfo& o : *listed) have.emplace(o.key, o.size);
  auto map = store_base_chunks(m, nullptr, nullptr, have, bytes);
  if (!map) return map.status();

  BucketManifest first;
  first.writer = gen_;
  first.journal.volume_id = m.volume_id;
  first.journal.image_path = m.image_path;
  first.journal.image_size = m.image_size;
  first.journal.created_ns = m.created_ns;
  first.journal.base_file = base_file_name(m.base_seq);
  first.journal.base_seq = m.base_seq;
  first.journal.base_time_ns = m.base_time_ns;
  first.journal.base_sealed = m.base_sealed;
  first.journal.checkpoint_seq = m.base_seq;
  first.last_seq = m.base_seq;
  first.owner = gen_;
  REWIND_RETURN_IF_ERROR(store_manifest(first));
  base_map_ = std::move(*map);
  return Status::ok();
}

Status BucketWriter::upload_segment(const ManifestSegment& seg, BucketSegment* b, uint64_t* bytes) {
  auto file = File::open(segment_path(dir_, seg.file), O_RDONLY);
  if (!file) return file.status();
  auto r = client_->put_file(client_->location().key(bucket::segment_key(gen_, seg.file)), *file, 0,
                             seg.bytes);
  if (!r) return transient(r.status());
  *bytes += seg.bytes;
  *b = BucketSegment{seg.file, gen_, false};
  if (auto idx = File::open(segment_path(dir_, index_file_name(seg.file)), O_RDONLY)) {
    auto size = idx->size();
    if (!size) return size.status();
    auto ri = client_->put_file(
        client_->location().key(bucket::segment_key(gen_, index_file_name(seg.file))), *idx, 0,
        *size);
    if (!ri) return transient(ri.status());
    *bytes += *size;
    b->index = true;
  }
  return Status::ok();
}

namespace {

// The keys of a sealed segment's objects in the bucket.
void keys_of(const BucketSegment& b, const S3Location& loc, std::vector<std::string>* out) {
  out->push_back(loc.key(bucket::segment_key(b.gen, b.file)));
  if (b.index) out->push_back(loc.key(bucket::segment_key(b.gen, index_file_name(b.file))));
}

}  // namespace

Result<std::vector<bool>> BucketWriter::chunks_changed_by(
    const std::vector<std::pair<ManifestSegment, BucketSegment>>& segments, const Manifest& j) {
  const uint64_t nchunks = (j.image_size + bucket::kBaseChunkBytes - 1) / bucket::kBaseChunkBytes;
  std::vector<bool> changed(nchunks, false);
  // The indexes are read with the journal's own reader, from a directory of their own.
  std::string tmp = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/var/tmp") +
                    "/rewind-index.XXXXXX";
  if (!::mkdtemp(tmp.data())) return Status::io_error("cannot make " + tmp, errno);
  struct Remove {
    std::string dir;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } remove{tmp};
  if (::mkdir(join_path(tmp, format::kSegmentDir).c_str(), 0700) != 0)
    return Status::io_error("cannot make a directory in " + tmp, errno);
  for (const auto& [seg, b] : segments) {
    if (!b.index) return Status::not_found(seg.file + " has no index in the bucket");
    auto text =
        client_->get(client_->location().key(bucket::segment_key(b.gen, index_file_name(b.file))));
    if (!text) return transient(text.status());
    REWIND_RETURN_IF_ERROR(write_file_atomic(segment_path(tmp, index_file_name(seg.file)), *text));
    auto entries = read_segment_index(tmp, j.volume_id, seg);
    if (!entries) return entries.status();
    for (const IndexEntry& e : entries->entries) {
      if (e.length == 0 ||
          (e.type != format::RecordType::kWrite && e.type != format::RecordType::kZero &&
           e.type != format::RecordType::kTrim))
        continue;
      for (uint64_t c = e.offset / bucket::kBaseChunkBytes;
           c <= (e.offset + e.length - 1) / bucket::kBaseChunkBytes && c < nchunks; ++c)
        changed[c] = true;
    }
  }
  return changed;
}

Status BucketWriter::mirror_rebase(const Manifest& m, BucketManifest* next,
                                   std::vector<std::string>* dropped, std::optional<BaseMap>* map,
                                   uint64_t* bytes) {
  Manifest& j = next->journal;
  const S3Location& loc = client_->location();
  // The bucket's segments the new base covers: whole ones (the journal folds whole
  // segments only, and the bucket's end where the journal's do).
  std::vector<std::pair<ManifestSegment, BucketSegment>> covered;
  size_t keep = 0, sealed = 0;
  bool open_covered = false;
  for (; keep < j.segments.size() && j.segments[keep].first_seq <= m.base_seq; ++keep) {
    const ManifestSegment& seg = j.segments[keep];
    if (!seg.sealed) {
      if (next->last_seq > m.base_seq)
        return Status::corruption(
            fmt::format("the journal's base (seq {}) ends inside the bucket's open segment {}",
                        m.base_seq, seg.file));
      open_covered = true;
      continue;
    }
    if (seg.last_seq > m.base_seq)
      return Status::corruption(fmt::format(
          "the journal's base (seq {}) ends inside the bucket's segment {} (seqs {}..{})",
          m.base_seq, seg.file, seg.first_seq, seg.last_seq));
    covered.emplace_back(seg, next->segments[sealed++]);
  }
  // The chunks the folded records changed, from the bucket's indexes of them; every
  // chunk when one is missing (or the records are in tail pieces, or the base is sealed:
  // each of its chunks is sealed anew for the new base seq).
  std::optional<std::vector<bool>> only;
  if (!open_covered && !m.base_sealed) {
    auto changed = chunks_changed_by(covered, j);
    if (changed) only = std::move(*changed);
  }
  auto stored = store_base_chunks(m, &base_map_, only ? &*only : nullptr, {}, bytes);
  if (!stored) return stored.status();
  // What the old base had that the new one does not share goes, once unnamed.
  std::set<std::pair<uint64_t, uint64_t>> still;
  for (const BaseChunk& c : stored->chunks) still.emplace(c.offset, c.seq);
  for (const BaseChunk& c : base_map_.chunks)
    if (!still.count({c.offset, c.seq}))
      dropped->push_back(loc.key(bucket::base_chunk_key(j.volume_id, c.seq, c.offset)));
  dropped->push_back(loc.key(bucket::base_map_key(j.volume_id, j.base_seq)));
  for (const auto& [seg, b] : covered) keys_of(b, loc, dropped);
  if (open_covered) {
    for (const BucketTail& t : next->tails)
      dropped->push_back(loc.key(bucket::tail_key(t.gen, t.first_seq, t.offset)));
    next->tails.clear();
  }
  j.segments.erase(j.segments.begin(), j.segments.begin() + static_cast<long>(keep));
  next->segments.erase(next->segments.begin(),
                       next->segments.begin() + static_cast<long>(covered.size()));
  j.base_file = base_file_name(m.base_seq);
  j.base_seq = m.base_seq;
  j.base_time_ns = m.base_time_ns;
  j.base_sealed = m.base_sealed;
  j.checkpoint_seq = m.base_seq;
  // Marks folded away go; one at the base itself stays, as in the journal.
  std::vector<ManifestMark> marks;
  for (const ManifestMark& mk : m.marks)
    if (mk.seq == m.base_seq) marks.push_back(mk);
  for (const ManifestMark& mk : j.marks)
    if (mk.seq > m.base_seq) marks.push_back(mk);
  j.marks = std::move(marks);
  next->last_seq = std::max(next->last_seq, m.base_seq);
  *map = std::move(*stored);
  log_to(logger_, LogLevel::kInfo,
         fmt::format("ship: folded {} segments of {} into its base at seq {}, as the journal "
                     "did ({})",
                     covered.size() + (open_covered ? 1 : 0), loc.uri(), m.base_seq,
                     only ? "the chunks their records changed" : "every chunk read"));
  return Status::ok();
}

Status BucketWriter::mirror_compaction(const Manifest& m, BucketManifest* next,
                                       std::vector<std::string>* dropped, uint64_t* bytes) {
  Manifest& j = next->journal;
  size_t sealed = 0;
  for (ManifestSegment& seg : j.segments) {
    if (!seg.sealed) continue;
    BucketSegment& b = next->segments[sealed++];
    auto local = std::find_if(m.segments.begin(), m.segments.end(), [&](const ManifestSegment& s) {
      return s.first_seq == seg.first_seq;
    });
    if (local == m.segments.end() || !local->sealed || local->file == seg.file ||
        local->last_seq != seg.last_seq)
      continue;
    BucketSegment now;
    REWIND_RETURN_IF_ERROR(upload_segment(*local, &now, bytes));
    keys_of(b, client_->location(), dropped);
    seg = *local;
    b = now;
  }
  return Status::ok();
}

bool BucketWriter::behind(const Manifest& m, const Journal::Position& durable) const {
  if (!manifest_) return true;
  const Manifest& j = manifest_->journal;
  if (durable.seq > manifest_->last_seq || m.base_seq > j.base_seq) return true;
  for (const ManifestSegment& seg : j.segments)
    for (const ManifestSegment& local : m.segments)
      if (seg.sealed && local.sealed && local.first_seq == seg.first_seq &&
          local.last_seq == seg.last_seq && local.file != seg.file)
        return true;
  return false;
}

Status BucketWriter::ship(const Manifest& m, const Journal::Position& durable, uint64_t* bytes) {
  if (!manifest_) return Status::invalid("the bucket has no base snapshot yet");
  BucketManifest next = *manifest_;
  next.writer = gen_;
  next.owner = gen_;
  Manifest& j = next.journal;
  std::vector<BucketTail> replaced;
  // What the journal's own retention did to the history the bucket holds, the copy
  // does too: a new base, rewritten segments.
  std::vector<std::string> dropped;
  std::optional<BaseMap> new_map;
  if (m.base_seq > j.base_seq)
    REWIND_RETURN_IF_ERROR(mirror_rebase(m, &next, &dropped, &new_map, bytes));
  REWIND_RETURN_IF_ERROR(mirror_compaction(m, &next, &dropped, bytes));

  const auto last_sealed = [&] {
    for (auto it = j.segments.rbegin(); it != j.segments.rend(); ++it)
      if (it->sealed) return it->last_seq;
    return j.base_seq;
  };
  for (const ManifestSegment& seg : m.segments) {
    const uint64_t sealed_to = last_sealed();
    if (seg.sealed && seg.last_seq <= sealed_to) continue;
    if (seg.first_seq != sealed_to + 1)
      return Status::corruption(
          fmt::format("segment {} starts at seq {}, but the bucket's sealed segments end at seq {}",
                      seg.file, seg.first_seq, sealed_to));
    const bool open_in_bucket = !j.segments.empty() && !j.segments.back().sealed;
    if (seg.sealed) {
      BucketSegment b;
      REWIND_RETURN_IF_ERROR(upload_segment(seg, &b, bytes));
      if (open_in_bucket) {
        j.segments.pop_back();
        replaced.insert(replaced.end(), next.tails.begin(), next.tails.end());
        next.tails.clear();
      }
      j.segments.push_back(seg);
      next.segments.push_back(b);
      for (const ManifestMark& mk : m.marks)
        if (mk.seq >= seg.first_seq && mk.seq <= seg.last_seq) j.marks.push_back(mk);
      next.last_seq = std::max(next.last_seq, seg.last_seq);
    } else {
      if (durable.segment_first_seq != seg.first_seq) break;
      const uint64_t from = open_in_bucket ? next.tails.back().end : 0;
      if (durable.offset <= from) break;
      auto file = File::open(segment_path(dir_, seg.file), O_RDONLY);
      if (!file) return file.status();
      auto r =
          client_->put_file(client_->location().key(bucket::tail_key(gen_, seg.first_seq, from)),
                            *file, from, durable.offset - from);
      if (!r) return transient(r.status());
      *bytes += durable.offset - from;
      if (!open_in_bucket) {
        ManifestSegment open;
        open.file = seg.file;
        open.first_seq = seg.first_seq;
        j.segments.push_back(open);
      }
      next.tails.push_back(BucketTail{seg.first_seq, from, durable.offset, gen_});
      next.last_seq = std::max(next.last_seq, durable.seq);
    }
  }
  if (next == *manifest_) return Status::ok();
  REWIND_RETURN_IF_ERROR(store_manifest(next));
  if (new_map) base_map_ = std::move(*new_map);
  // What the manifest no longer names goes, the pieces a sealed segment replaced among
  // it; one that cannot be removed now is left for `rewind retain`'s clean pass.
  for (const BucketTail& t : replaced)
    dropped.push_back(client_->location().key(bucket::tail_key(t.gen, t.first_seq, t.offset)));
  for (const std::string& key : dropped) {
    Status st = client_->remove(key);
    if (!st)
      log_to(logger_, LogLevel::kWarning,
             fmt::format("ship: {} (left for the next clean pass)", st.message()));
  }
  return Status::ok();
}

Result<uint64_t> BucketWriter::clean(const BucketManifest& m, const BaseMap& map) {
  const S3Location& loc = client_->location();
  std::set<std::string> named;
  for (const std::string& k : m.object_names()) named.insert(loc.key(k));
  named.insert(loc.key(bucket::kManifestName));
  for (const BaseChunk& c : map.chunks)
    named.insert(loc.key(bucket::base_chunk_key(m.journal.volume_id, c.seq, c.offset)));
  auto listed = client_->list(loc.key(""));
  if (!listed) return transient(listed.status());
  const std::string prefix = loc.key("");
  uint64_t deleted = 0;
  for (const ObjectInfo& o : *listed) {
    if (named.count(o.key) || !o.key.starts_with(prefix)) continue;
    const std::string rest = o.key.substr(prefix.size());
    // The generation in the key, if it has one: objects of a newer generation belong
    // to a writer that started after this pass, and are left alone.
    uint64_t gen = 0;
    bool has_gen = false;
    for (const char* dir : {"segments/", "tail/", "writers/"}) {
      if (!rest.starts_with(dir)) continue;
      const std::string_view digits = std::string_view(rest).substr(std::strlen(dir), 20);
      has_gen = parse_u64(digits, &gen);
    }
    if (rest.starts_with("writers/")) {
      // Claims stay from the owner's on: a shipper reads the one of the manifest's writer.
      if (!has_gen || gen >= m.owner || gen >= gen_) continue;
    } else if (rest.starts_with("segments/") || rest.starts_with("tail/")) {
      if (!has_gen || gen > gen_) continue;
    } else if (!rest.starts_with("base/")) {
      continue;  // not rewind's: left alone
    }
    Status st = client_->remove(o.key);
    if (!st) return transient(st);
    ++deleted;
  }
  return deleted;
}

Result<BucketRetainResult> retain_bucket(std::unique_ptr<S3Client> client,
                                         const RetentionPolicy& policy, uint64_t now_ns,
                                         const Logger& logger) {
  const S3Options opts = client->options();
  const S3Location where = client->location();
  // The copy, in a cache laid out as a journal directory, every byte of it.
  auto cache = BucketCache::open(std::move(client), BucketReadOptions{}, logger);
  if (!cache) return cache.status();
  BucketCache& copy = **cache;
  if (copy.manifest().journal.base_sealed)
    return Status::invalid(fmt::format(
        "{} is a sealed copy (shipped with ship-key=): retention folds and merges records, "
        "which takes their key, and this copy is kept where the key is not; nothing was changed",
        where.uri()));
  REWIND_RETURN_IF_ERROR(copy.fetch_everything());
  // A copy has no image to keep current: every record may be folded.
  auto local = Manifest::load(copy.dir());
  if (!local) return local.status();
  local->checkpoint_seq = copy.manifest().last_seq;
  REWIND_RETURN_IF_ERROR(local->store(copy.dir()));

  auto writer_client = S3Client::open(opts, where);
  if (!writer_client) return writer_client.status();
  std::unique_ptr<BucketWriter> w(new BucketWriter(std::move(*writer_client), copy.dir(), logger));
  w->maintainer_ = true;
  w->manifest_ = copy.manifest();
  w->etag_ = copy.manifest_etag();
  w->base_map_ = copy.base_map();
  const BucketManifest& before = *w->manifest_;
  REWIND_RETURN_IF_ERROR(
      w->claim_generation(std::max(before.writer, before.owner), before.journal.volume_id));

  BucketRetainResult r;
  auto changed = apply_retention(copy.dir(), policy, now_ns, logger);
  if (!changed) return changed.status();
  r.changed = *changed;
  auto m = Manifest::load(copy.dir());
  if (!m) return m.status();

  BucketManifest next = before;
  next.writer = w->gen_;
  std::vector<std::string> dropped;
  std::optional<BaseMap> new_map;
  if (m->base_seq > next.journal.base_seq)
    REWIND_RETURN_IF_ERROR(w->mirror_rebase(*m, &next, &dropped, &new_map, &r.sent));
  REWIND_RETURN_IF_ERROR(w->mirror_compaction(*m, &next, &dropped, &r.sent));
  if (!(next.journal == before.journal && next.segments == before.segments)) {
    REWIND_RETURN_IF_ERROR(w->store_manifest(next));
    if (new_map) w->base_map_ = std::move(*new_map);
    for (const std::string& key : dropped) {
      REWIND_RETURN_IF_ERROR(transient(w->client_->remove(key)));
      ++r.deleted;
    }
  }
  auto cleaned = w->clean(*w->manifest_, w->base_map_);
  if (!cleaned) return cleaned.status();
  r.deleted += *cleaned;
  r.first_seq = w->manifest_->journal.base_seq;
  r.last_seq = w->manifest_->last_seq;
  return r;
}

}  // namespace rwd
