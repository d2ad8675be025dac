#include "rewind/journal/journal_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "rewind/base/clock.h"
#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/format/segment.h"
#include "rewind/format/segment_index.h"

namespace rwd {

namespace {

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::io_error(fmt::format("cannot list {}", dir), errno);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

// A directory of the journal: private to this user, as every file in it.
Status make_dir(const std::string& dir) {
  return make_private_dir(dir, "journal directory");
}

// The journal directory itself: made private, or checked to be this user's own and
// closed to writers other than this user (what another user created may hold planted
// links). One that others could read is made private, with a warning: an older
// journal, or one whose mode was changed by hand.
Status make_journal_dir(const std::string& dir, const Logger& logger) {
  std::optional<mode_t> was;
  REWIND_RETURN_IF_ERROR(make_private_dir(dir, "journal", nullptr, &was));
  if (was)
    log_to(logger, LogLevel::kWarning,
           fmt::format("journal {} was readable by others (mode {:04o}); made it private (0700)",
                       dir, *was));
  return Status::ok();
}

// The volume id recorded on the image (user xattr), if the file system keeps one.
std::optional<VolumeId> image_volume_id(const std::string& image) {
  char buf[64];
  ssize_t n = ::getxattr(image.c_str(), format::kImageXattr, buf, sizeof buf);
  VolumeId id;
  if (n <= 0 || !parse_volume_id(std::string_view(buf, static_cast<size_t>(n)), &id)) return {};
  return id;
}

}  // namespace

Result<uint64_t> check_image(const std::string& image_path) {
  struct stat st;
  if (::stat(image_path.c_str(), &st) != 0)
    return Status::io_error(fmt::format("image {}", image_path), errno);
  if (!S_ISREG(st.st_mode))
    return Status::invalid(fmt::format("image {} is not a regular file", image_path));
  auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0 || size % 512 != 0)
    return Status::invalid(fmt::format(
        "image {} is {} bytes, not a non-zero multiple of 512 (whole sectors)", image_path, size));
  return size;
}

Result<File> lock_journal(const std::string& journal_dir) {
  auto f = File::open(join_path(journal_dir, format::kLockName), O_RDWR | O_CREAT | O_NOFOLLOW);
  if (!f) return f.status();
  if (::flock(f->fd(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return Status::busy(fmt::format(
          "journal {} is in use by another rewind process (it holds the journal's lock)",
          journal_dir));
    return Status::io_error(fmt::format("cannot lock journal {}", journal_dir), errno);
  }
  return f;
}

namespace {

// The journal directory must be empty but for what an interrupted create left: the
// lock, temporaries, empty subdirectories and a base snapshot written before the
// manifest (never served from, so it is simply made again).
Status check_empty_journal_dir(const std::string& journal_dir) {
  auto names = list_dir(journal_dir);
  if (!names) return names.status();
  const std::string first_base = base_file_name(0);
  for (const std::string& n : *names) {
    if (n == format::kLockName || n == std::string(format::kManifestName) + ".tmp") continue;
    if (n == format::kSegmentDir || n == format::kBaseDir) {
      auto inner = list_dir(join_path(journal_dir, n));
      if (!inner) return inner.status();
      bool leftovers_only = true;
      for (const std::string& i : *inner)
        if (!i.ends_with(".tmp") && !(n == format::kBaseDir && i == first_base))
          leftovers_only = false;
      if (leftovers_only) continue;
    }
    return Status::invalid(fmt::format(
        "journal directory {} is not empty and has no {}: it is not a rewind journal; give a new "
        "or empty directory",
        journal_dir, format::kManifestName));
  }
  return Status::ok();
}

Status create_journal_locked(const std::string& image_path, const std::string& journal_dir,
                             const Logger& logger) {
  auto size = check_image(image_path);
  if (!size) return size.status();
  REWIND_RETURN_IF_ERROR(check_empty_journal_dir(journal_dir));
  const std::string seg_dir = join_path(journal_dir, format::kSegmentDir);
  const std::string base_dir = join_path(journal_dir, format::kBaseDir);
  REWIND_RETURN_IF_ERROR(make_dir(seg_dir));
  REWIND_RETURN_IF_ERROR(make_dir(base_dir));

  Manifest m;
  m.volume_id = random_volume_id();
  m.image_path = image_path;
  m.image_size = *size;
  m.created_ns = wall_clock_ns();
  m.base_file = base_file_name(0);
  m.base_seq = 0;
  m.base_time_ns = m.created_ns;
  m.checkpoint_seq = 0;

  auto src = File::open(image_path, O_RDONLY);
  if (!src) return src.status();
  std::string base = base_path(journal_dir, m.base_file);
  std::string tmp = base + ".tmp";
  auto dst = create_temp_file(tmp);
  if (!dst) return dst.status();
  bool reflinked = false;
  REWIND_RETURN_IF_ERROR(clone_or_sparse_copy(*src, *size, *dst, &reflinked));
  if (file_system().rename(tmp.c_str(), base.c_str()) != 0)
    return Status::io_error(fmt::format("cannot rename {} to {}", tmp, base), errno);
  REWIND_RETURN_IF_ERROR(sync_dir(base_dir));
  REWIND_RETURN_IF_ERROR(sync_dir(journal_dir));
  REWIND_RETURN_IF_ERROR(sync_dir(parent_dir(journal_dir)));
  // Tag the image with the volume id where the file system allows user xattrs, so a
  // journal is never applied to another image, even one moved to this path.
  std::string hex = volume_id_hex(m.volume_id);
  if (::setxattr(image_path.c_str(), format::kImageXattr, hex.data(), hex.size(), 0) != 0)
    log_to(logger, LogLevel::kDebug,
           fmt::format("image {} keeps no xattr ({}); the journal is tied to its path only",
                       image_path, std::strerror(errno)));
  REWIND_RETURN_IF_ERROR(m.store(journal_dir));
  log_to(logger, LogLevel::kInfo,
         fmt::format("created journal {} for image {} ({} bytes, base snapshot by {}), volume {}",
                     journal_dir, image_path, *size, reflinked ? "reflink" : "sparse copy", hex));
  return Status::ok();
}

// Checks that the journal in `dir` belongs to the image at `image_path`.
Status check_identity(const Manifest& m, const std::string& dir, const std::string& image_path,
                      uint64_t image_size) {
  auto tagged = image_volume_id(image_path);
  if (tagged && *tagged != m.volume_id)
    return Status::invalid(fmt::format(
        "image {} belongs to volume {} but journal {} is volume {} (created for {}); give the "
        "journal that was created with this image, or a new journal directory",
        image_path, volume_id_hex(*tagged), dir, volume_id_hex(m.volume_id), m.image_path));
  if (!tagged && m.image_path != image_path)
    return Status::invalid(fmt::format(
        "journal {} (volume {}) was created for image {}, not {}; give that image, or a new "
        "journal directory",
        dir, volume_id_hex(m.volume_id), m.image_path, image_path));
  if (m.image_size != image_size)
    return Status::invalid(fmt::format(
        "image {} is {} bytes but journal {} was created for {} bytes; resizing a volume is not "
        "supported",
        image_path, image_size, dir, m.image_size));
  return Status::ok();
}

}  // namespace

Status seal_open_segment(Manifest* m, const std::string& dir, const Logger& logger) {
  if (m->segments.empty() || m->segments.back().sealed) return Status::ok();
  ManifestSegment& seg = m->segments.back();
  const std::string path = segment_path(dir, seg.file);
  auto scanned = scan_segment_entries(dir, m->volume_id, seg);
  if (!scanned) return scanned.status();
  const std::vector<IndexEntry>& entries = scanned->entries;
  if (scanned->torn_tail)
    log_to(logger, LogLevel::kWarning,
           fmt::format("segment {}: discarding a torn tail at {} (it was never acknowledged as "
                       "flushed)",
                       seg.file, *scanned->torn_tail));
  if (entries.empty()) {
    log_to(logger, LogLevel::kInfo, fmt::format("removing empty segment {}", seg.file));
    m->segments.pop_back();
    REWIND_RETURN_IF_ERROR(m->store(dir));
    if (file_system().unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::io_error(fmt::format("cannot remove {}", path), errno);
    return Status::ok();
  }
  const IndexEntry& last = entries.back();
  const uint64_t end = last.position + format::record_span(last.payload_length);
  auto f = File::open(path, O_RDWR);
  if (!f) return f.status();
  REWIND_RETURN_IF_ERROR(f->truncate(end));
  REWIND_RETURN_IF_ERROR(f->sync());
  seg.sealed = true;
  seg.last_seq = last.seq;
  seg.bytes = end;
  seg.records = entries.size();
  seg.first_time_ns = entries.front().time_ns;
  seg.last_time_ns = last.time_ns;
  for (const IndexEntry& e : entries) {
    if (e.type != format::RecordType::kMark) continue;
    auto mark = read_mark(dir, seg, e);
    if (!mark) return mark.status();
    m->marks.push_back(ManifestMark{mark->name, e.seq, e.time_ns});
  }
  Status idx =
      write_segment_index(dir, seg.file, m->volume_id, seg.first_seq, entries, scanned->chunk_sums);
  if (!idx)
    log_to(logger, LogLevel::kWarning,
           fmt::format("could not write the index of segment {}: {}", seg.file, idx.message()));
  log_to(logger, LogLevel::kInfo,
         fmt::format("sealed segment {} left open by an unclean stop: seq {}..{}", seg.file,
                     seg.first_seq, seg.last_seq));
  return m->store(dir);
}

namespace {

// Reads every record of a sealed segment, verifying its checksums, and rebuilds the
// segment's index if it is missing, damaged or disagrees with the records.
Status check_sealed_records(const Manifest& m, const std::string& dir, const ManifestSegment& seg,
                            const Logger& logger) {
  auto scanned = scan_segment_entries(dir, m.volume_id, seg);
  if (!scanned) return scanned.status();
  const std::vector<IndexEntry>& entries = scanned->entries;
  const uint64_t last = entries.empty() ? seg.first_seq - 1 : entries.back().seq;
  if (last != seg.last_seq || entries.size() != seg.records)
    return Status::corruption(
        fmt::format("segment {} holds {} records up to seq {} but the manifest says {} up to {}",
                    seg.file, entries.size(), last, seg.records, seg.last_seq));
  auto index = read_segment_index(dir, m.volume_id, seg);
  const bool agrees = index && index_agrees(*index, *scanned);
  if (agrees && index->index_version == format::kIndexVersion) return Status::ok();
  if (agrees)
    log_to(logger, LogLevel::kInfo,
           fmt::format("index of segment {} is of version {}; rewritten with chunk checksums",
                       seg.file, index->index_version));
  else
    log_to(logger, LogLevel::kWarning,
           fmt::format("index of segment {} {}; rebuilt from its records", seg.file,
                       index ? "disagrees with the records" : index.status().message()));
  return write_segment_index(dir, seg.file, m.volume_id, seg.first_seq, entries,
                             scanned->chunk_sums);
}

// Checks the segments at start: each sealed segment exists, has the size the manifest
// says and a valid header of this volume, and the seqs run on without a gap. With
// `full`, every record is read and its checksums verified as well, and an index that
// is missing, damaged or disagrees with the records is rebuilt.
Status check_segments(const Manifest& m, const std::string& dir, bool full, const Logger& logger) {
  uint64_t next_seq = m.base_seq + 1;
  for (const ManifestSegment& seg : m.segments) {
    if (seg.first_seq != next_seq)
      return Status::corruption(
          fmt::format("segment {} starts at seq {} but the one before it ends at seq {}", seg.file,
                      seg.first_seq, next_seq - 1));
    if (seg.sealed) next_seq = seg.last_seq + 1;
    const std::string path = segment_path(dir, seg.file);
    // One open, the 64-byte header and the size: nothing more is read at start.
    auto f = File::open(path, O_RDONLY);
    if (!f) {
      if (f.status().errno_value() == ENOENT)
        return Status::corruption(
            fmt::format("segment {} (seq {}..) listed in the manifest of {} is missing", seg.file,
                        seg.first_seq, dir));
      return f.status();
    }
    uint8_t raw[format::kSegmentHeaderSize];
    size_t got = 0;
    REWIND_RETURN_IF_ERROR(f->pread_full(raw, 0, &got));
    SegmentHeader header;
    Status hs = got < sizeof raw ? Status::corruption("file is shorter than its header")
                                 : decode_segment_header(raw, &header);
    if (!hs)
      return Status::corruption(fmt::format("segment {} offset 0: {}", seg.file, hs.message()));
    if (header.volume_id != m.volume_id)
      return Status::corruption(fmt::format("segment {} belongs to volume {}, not {}", seg.file,
                                            volume_id_hex(header.volume_id),
                                            volume_id_hex(m.volume_id)));
    if (header.first_seq != seg.first_seq)
      return Status::corruption(fmt::format("segment {} starts at seq {} but the manifest says {}",
                                            seg.file, header.first_seq, seg.first_seq));
    if (seg.sealed) {
      auto size = f->size();
      if (!size) return size.status();
      if (*size != seg.bytes)
        return Status::corruption(fmt::format(
            "segment {} is {} bytes but the manifest says {} (truncated or overwritten)", seg.file,
            *size, seg.bytes));
      if (full) REWIND_RETURN_IF_ERROR(check_sealed_records(m, dir, seg, logger));
    }
  }
  return Status::ok();
}

}  // namespace

Status remove_leftovers(const Manifest& m, const std::string& dir, const Logger& logger) {
  std::set<std::string> listed;  // segments and their indexes
  for (const ManifestSegment& seg : m.segments) {
    listed.insert(seg.file);
    listed.insert(index_file_name(seg.file));
  }
  // Segments after the last listed one were created and never listed; those at or
  // before the base were folded into it by a rebase; the others were replaced by a
  // compaction's rewrite, or written by one that never switched to them.
  const uint64_t last = m.segments.empty() ? m.base_seq : m.segments.back().first_seq;
  auto why_unused = [&](uint64_t first) {
    return first > last          ? "created, never used"
           : first <= m.base_seq ? "folded into the base"
                                 : "replaced by compaction, or written by one that did not finish";
  };
  bool removed = false;
  auto remove = [&](const std::string& path, const std::string& why) {
    log_to(logger, LogLevel::kInfo, fmt::format("removing {} ({})", path, why));
    if (file_system().unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::io_error(fmt::format("cannot remove {}", path), errno);
    removed = true;
    return Status::ok();
  };
  const std::string seg_dir = join_path(dir, format::kSegmentDir);
  auto names = list_dir(seg_dir);
  if (!names) return names.status();
  for (const std::string& n : *names) {
    if (listed.count(n) != 0) continue;
    uint64_t first = 0;
    if (n.ends_with(".tmp")) {
      REWIND_RETURN_IF_ERROR(remove(join_path(seg_dir, n), "a temporary file"));
    } else if (parse_segment_file_name(n, &first)) {
      REWIND_RETURN_IF_ERROR(remove(join_path(seg_dir, n), why_unused(first)));
    } else {
      log_to(logger, LogLevel::kWarning,
             fmt::format("segment directory of {} holds {}, which the manifest does not list", dir,
                         n));
    }
  }
  const std::string base_dir = join_path(dir, format::kBaseDir);
  auto bases = list_dir(base_dir);
  if (!bases) return bases.status();
  for (const std::string& n : *bases) {
    if (n == m.base_file) continue;
    uint64_t seq = 0;
    if (n.ends_with(".tmp") || n.ends_with(".rewind-tmp") || parse_base_file_name(n, &seq)) {
      REWIND_RETURN_IF_ERROR(
          remove(join_path(base_dir, n), "a base snapshot the manifest does not name"));
    } else {
      log_to(
          logger, LogLevel::kWarning,
          fmt::format("base directory of {} holds {}, which the manifest does not name", dir, n));
    }
  }
  if (removed) {
    REWIND_RETURN_IF_ERROR(sync_dir(seg_dir));
    REWIND_RETURN_IF_ERROR(sync_dir(base_dir));
  }
  return Status::ok();
}

Status create_journal(const std::string& image_path, const std::string& journal_dir,
                      const Logger& logger) {
  REWIND_RETURN_IF_ERROR(make_journal_dir(journal_dir, logger));
  auto lock = lock_journal(journal_dir);
  if (!lock) return lock.status();
  if (::access(join_path(journal_dir, format::kManifestName).c_str(), F_OK) == 0)
    return Status::invalid(fmt::format("journal {} already exists", journal_dir));
  return create_journal_locked(image_path, journal_dir, logger);
}

Result<OpenedJournal> open_journal_dir(const std::string& image_path, const std::string& dir,
                                       bool full_check, const Logger& logger) {
  auto size = check_image(image_path);
  if (!size) return size.status();
  // A directory that is not a journal is refused before anything is created in it.
  const bool have_manifest = ::access(join_path(dir, format::kManifestName).c_str(), F_OK) == 0;
  if (!have_manifest && ::access(dir.c_str(), F_OK) == 0)
    REWIND_RETURN_IF_ERROR(check_empty_journal_dir(dir));
  REWIND_RETURN_IF_ERROR(make_journal_dir(dir, logger));
  auto lock = lock_journal(dir);
  if (!lock) return lock.status();
  if (::access(join_path(dir, format::kManifestName).c_str(), F_OK) != 0)
    REWIND_RETURN_IF_ERROR(create_journal_locked(image_path, dir, logger));

  auto m = Manifest::load(dir);
  if (!m) {
    if (m.status().code() != Status::Code::kCorruption) return m.status();
    return Status::corruption(
        fmt::format("{}: without its manifest, the history of journal {} cannot be trusted; "
                    "nothing was changed",
                    m.status().message(), dir));
  }
  REWIND_RETURN_IF_ERROR(check_identity(*m, dir, image_path, *size));
  Status checked = check_segments(*m, dir, full_check, logger);
  if (checked.is_ok()) checked = seal_open_segment(&*m, dir, logger);
  if (checked.code() == Status::Code::kCorruption)
    return Status::corruption(
        fmt::format("journal {} is damaged: {}; nothing was changed", dir, checked.message()));
  REWIND_RETURN_IF_ERROR(checked);
  REWIND_RETURN_IF_ERROR(remove_leftovers(*m, dir, logger));
  return OpenedJournal{std::move(*lock), std::move(*m), *size};
}

}  // namespace rwd
