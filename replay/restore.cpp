#include "rewind/replay/restore.h"

#include <fcntl.h>
#include <libnbd.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/journal/journal.h"

namespace rwd {

namespace {

constexpr uint64_t kChunk = 4ull << 20;
constexpr size_t kDirectAlign = 4096;

uint64_t mapped_bytes(const JournalView& view) {
  uint64_t total = 0;
  for (const auto& [start, e] : view.map()) total += e.end - start;
  return total;
}

// A run of the journal's data to write: [start, end) within one kChunk, `data` bytes
// of it mapped to the journal (the rest reads through to the base).
struct Span {
  uint64_t start, end, data;
};

// Zeroed and trimmed extents of `view` become holes in `f` (*done counts them); the
// spans of data to write are returned.
Result<std::vector<Span>> plan_spans(const JournalView& view, const File& f, uint64_t* done) {
  // Zeroed and trimmed extents become holes; the data of the journal is written in
  // spans of at most kChunk bytes (each from the first to the last data extent in
  // its chunk; the base between them reads through the view unchanged).
  std::vector<Span> spans;
  for (const auto& [start, e] : view.map()) {
    if (e.value.zero) {
      REWIND_RETURN_IF_ERROR(zero_range(f, start, e.end - start, true));
      *done += e.end - start;
      continue;
    }
    for (uint64_t pos = start; pos < e.end;) {
      const uint64_t stop = std::min(e.end, (pos / kChunk + 1) * kChunk);
      if (!spans.empty() && spans.back().start / kChunk == pos / kChunk) {
        spans.back().end = stop;
        spans.back().data += stop - pos;
      } else {
        spans.push_back({pos, stop, stop - pos});
      }
      pos = stop;
    }
  }
  return spans;
}

// Writes `spans` of `view` into `f`, counting them in *done of `total`.
Status write_spans(const JournalView& view, const File& f, const std::vector<Span>& spans,
                   const RestoreOptions& opts, uint64_t* done, uint64_t total) {
  // Reading a span asks the kernel for all its pieces at once (JournalView::read);
  // asking for the next spans too keeps the disk busy while this one is written.
  // Spans are written around the page cache where the file system allows (widened
  // to whole blocks): a restore of a large volume should neither evict the host's
  // cache nor wait for new cache pages. Each span is written on a thread of its own
  // while the next one is read, into the other of two buffers.
  constexpr size_t kAhead = 8;
  for (size_t i = 0; i < std::min(kAhead, spans.size()); ++i)
    view.prefetch(spans[i].start, spans[i].end - spans[i].start);
  auto direct = File::open(f.path(), O_WRONLY | O_DIRECT);
  bool use_direct = direct.is_ok();
  using Buffer = std::unique_ptr<uint8_t, decltype(&::free)>;
  std::vector<Buffer> bufs;
  for (int i = 0; i < 2; ++i) {
    void* mem = nullptr;
    if (::posix_memalign(&mem, kDirectAlign, kChunk + 2 * kDirectAlign) != 0)
      return Status::io_error("cannot allocate restore buffers", ENOMEM);
    bufs.emplace_back(static_cast<uint8_t*>(mem), ::free);
  }
  BackgroundTask writer("rewind-rwrite");
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i + kAhead < spans.size())
      view.prefetch(spans[i + kAhead].start, spans[i + kAhead].end - spans[i + kAhead].start);
    const Span& sp = spans[i];
    // Whole blocks around the span where they lie inside the volume, else the span.
    uint64_t at = sp.start / kDirectAlign * kDirectAlign;
    uint64_t end = (sp.end + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    const bool blocks = end <= view.size();
    if (!blocks) {
      at = sp.start;
      end = sp.end;
    }
    std::span<uint8_t> block(bufs[i % 2].get(), end - at);
    REWIND_RETURN_IF_ERROR(view.read(block, at));
    REWIND_RETURN_IF_ERROR(writer.wait());
    writer.start([&, block, at, blocks]() -> Status {
      if (use_direct && blocks) {
        Status st = direct->pwrite_full(block, at);
        if (st || st.errno_value() != EINVAL) return st;
        use_direct = false;  // O_DIRECT refused after all: plain writes from here on
      }
      return f.pwrite_full(block, at);
    });
    *done += sp.data;
    if (opts.progress) opts.progress(*done, total);
  }
  REWIND_RETURN_IF_ERROR(writer.wait());
  if (direct) REWIND_RETURN_IF_ERROR(direct->close());
  REWIND_RETURN_IF_ERROR(writer.wait());
  if (direct) REWIND_RETURN_IF_ERROR(direct->close());
  return Status::ok();
}

// Runs `fill` on a new temporary beside OUT, then syncs it and renames it to OUT. On
// any error the temporary is removed and OUT is untouched.
Status write_through_temp(const std::string& out, bool force,
                          const std::function<Status(File&)>& fill) {
  if (!force && ::access(out.c_str(), F_OK) == 0)
    return Status::invalid(fmt::format("{} exists (RestoreOptions::force replaces it)", out));
  const std::string tmp = out + ".rewind-tmp";
  auto f = create_temp_file(tmp);
  if (!f) return f.status();
  auto body = [&]() -> Status {
    REWIND_RETURN_IF_ERROR(fill(*f));
    REWIND_RETURN_IF_ERROR(f->sync());
    REWIND_RETURN_IF_ERROR(f->close());
    if (file_system().rename(tmp.c_str(), out.c_str()) != 0)
      return Status::io_error(fmt::format("cannot rename {} to {}", tmp, out), errno);
    return sync_dir(parent_dir(out));
  };
  Status st = body();
  if (!st) file_system().unlink(tmp.c_str());
  return st;
}

}  // namespace

Status restore_to_file(const JournalView& view, const std::string& out,
                       const RestoreOptions& opts) {
  // A sealed base is no image to clone: every byte is read (and opened) through the view.
  if (view.history().manifest().base_sealed) return restore_stream_to_file(view, out, opts);
  return write_through_temp(out, opts.force, [&](File& f) -> Status {
    bool reflinked = false;
    REWIND_RETURN_IF_ERROR(clone_or_sparse_copy(view.base(), view.size(), f, &reflinked));
    const uint64_t total = mapped_bytes(view);
    uint64_t done = 0;
    auto spans = plan_spans(view, f, &done);
    if (!spans) return spans.status();
    REWIND_RETURN_IF_ERROR(write_spans(view, f, *spans, opts, &done, total));
    if (opts.progress) opts.progress(total, total);
    return Status::ok();
  });
}

Status restore_stream_to_file(const JournalView& view, const std::string& out,
                              const RestoreOptions& opts) {
  return write_through_temp(out, opts.force, [&](File& f) -> Status {
    REWIND_RETURN_IF_ERROR(f.truncate(view.size()));
    // A window is fetched (its pieces in parallel) on a thread of its own while the one
    // before it is read and written out.
    constexpr uint64_t kWindow = 64ull << 20;
    std::vector<uint8_t> buf(kChunk);
    BackgroundTask fetcher("rewind-rfetch");
    view.prefetch(0, kWindow);
    for (uint64_t w = 0; w < view.size(); w += kWindow) {
      REWIND_RETURN_IF_ERROR(fetcher.wait());
      if (w + kWindow < view.size())
        fetcher.start([&view, next = w + kWindow]() -> Status {
          view.prefetch(next, kWindow);
          return Status::ok();
        });
      const uint64_t end = std::min(view.size(), w + kWindow);
      for (uint64_t at = w; at < end; at += kChunk) {
        const std::span<uint8_t> block(buf.data(), std::min(kChunk, end - at));
        REWIND_RETURN_IF_ERROR(view.read(block, at));
        // Zeroes stay a hole.
        if (std::any_of(block.begin(), block.end(), [](uint8_t b) { return b != 0; }))
          REWIND_RETURN_IF_ERROR(f.pwrite_full(block, at));
        if (opts.progress) opts.progress(at + block.size(), view.size());
      }
    }
    return fetcher.wait();
  });
}

Status restore_to_nbd(const JournalView& view, const std::string& uri, const RestoreOptions& opts) {
  struct nbd_handle* h = nbd_create();
  if (h == nullptr) return Status::io_error("cannot create an NBD handle", ENOMEM);
  auto nbd_fail = [&](const char* what) {
    return Status::io_error(fmt::format("{} {}: {}", what, uri, nbd_get_error()),
                            nbd_get_errno() ? nbd_get_errno() : EIO);
  };
  auto body = [&]() -> Status {
    if (nbd_connect_uri(h, uri.c_str()) != 0) return nbd_fail("cannot connect to");
    if (nbd_is_read_only(h) == 1) return Status::invalid(fmt::format("{} is read-only", uri));
    int64_t size = nbd_get_size(h);
    if (size < 0) return nbd_fail("cannot get the size of");
    if (static_cast<uint64_t>(size) < view.size())
      return Status::invalid(fmt::format("{} is {} bytes, smaller than the volume ({} bytes)", uri,
                                         size, view.size()));
    std::vector<uint8_t> buf;
    uint64_t done = 0;
    const uint64_t total = view.size();
    // Walk the volume once: base data and journal data are written, holes and zero
    // extents zeroed.
    uint64_t pos = 0;
    while (pos < total) {
      uint64_t n = std::min(kChunk, total - pos);
      // A whole chunk that is a hole in the base and not mapped is zeroed without reading.
      bool any_mapped = false;
      view.map().for_each(
          pos, n, [&](uint64_t, uint64_t, const ViewSource&, uint64_t) { any_mapped = true; });
      off_t data = ::lseek(view.base().fd(), static_cast<off_t>(pos), SEEK_DATA);
      bool base_hole = data < 0 || static_cast<uint64_t>(data) >= pos + n;
      if (!any_mapped && base_hole) {
        if (nbd_zero(h, n, pos, 0) != 0) return nbd_fail("zero request failed on");
      } else {
        buf.resize(n);
        REWIND_RETURN_IF_ERROR(view.read(buf, pos));
        if (nbd_pwrite(h, buf.data(), n, pos, 0) != 0) return nbd_fail("write failed on");
      }
      pos += n;
      done += n;
      if (opts.progress) opts.progress(done, total);
    }
    if (nbd_flush(h, 0) != 0) return nbd_fail("flush failed on");
    nbd_shutdown(h, 0);
    return Status::ok();
  };
  Status st = body();
  nbd_close(h);
  return st;
}

std::vector<ChangedExtent> changed_extents(const JournalHistory& h, uint64_t from_seq,
                                           uint64_t to_seq) {
  struct Unit {
    Unit advanced(uint64_t) const { return *this; }
  };
  std::vector<Interval<Unit>> history;
  h.for_each_entry(from_seq, to_seq, [&](const IndexEntry& e, uint32_t) {
    history.push_back({e.offset, e.length, Unit{}});
  });
  auto map = FlatExtentMap<Unit>::newest_wins(history);
  std::vector<ChangedExtent> out;
  for (const auto& [start, e] : map) {
    if (!out.empty() && out.back().offset + out.back().length == start) {
      out.back().length += e.end - start;
    } else {
      out.push_back(ChangedExtent{start, e.end - start});
    }
  }
  return out;
}

}  // namespace rwd
