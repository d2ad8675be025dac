// nbdkit-rewind-plugin: serves a volume over NBD. A thin adapter: the keys go to a
// ServeConfig, the life cycle to Served (serve/), and each request to the Volume (or
// the point-in-time JournalView) it serves, whose Status becomes an NBD error.
//
// Life cycle (see docs/DURABILITY.md): config -> config_complete (check keys) ->
// get_ready (Served::open: create the journal or recover it; errors still reach the
// user's terminal) -> fork -> after_fork (Served::start: the threads, which would not
// survive the fork) -> requests -> cleanup (Served::stop: drain, sync, seal,
// checkpoint).
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "rewind/replay/view.h"
#include "rewind/serve/served.h"
#include "rewind/volume/volume.h"

// NBDKIT_REGISTER_PLUGIN needs it; the thread_model callback says the same.
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

// Set by -D rewind.verbose=1: log segment and checkpoint activity.
extern "C" {
NBDKIT_DLL_PUBLIC int rewind_debug_verbose = 0;
}

namespace {

using rwd::Status;

// Plain pointers, not objects with destructors: the parent process nbdkit leaves
// behind when it forks runs static destructors, and must not close the volume.
rwd::ServeConfig* g_config = new rwd::ServeConfig();
rwd::Served* g_served = nullptr;
rwd::Volume* g_volume = nullptr;     // g_served's live volume, or
rwd::JournalView* g_view = nullptr;  // its point-in-time view

int fail(const Status& st) {
  nbdkit_error("rewind: %s", st.message().c_str());
  nbdkit_set_error(st.errno_value());
  return -1;
}

// Exceptions must not cross into nbdkit.
template <class F>
int guarded(const char* what, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    nbdkit_error("rewind: %s: out of memory", what);
    nbdkit_set_error(ENOMEM);
  } catch (const std::exception& e) {
    nbdkit_error("rewind: %s: %s", what, e.what());
    nbdkit_set_error(EIO);
  }
  return -1;
}

void log_line(rwd::LogLevel level, const std::string& msg) {
  switch (level) {
    case rwd::LogLevel::kDebug:
      if (rewind_debug_verbose) nbdkit_debug("rewind: %s", msg.c_str());
      break;
    case rwd::LogLevel::kInfo:
      nbdkit_debug("rewind: %s", msg.c_str());
      break;
    case rwd::LogLevel::kWarning:
      nbdkit_error("rewind: warning: %s", msg.c_str());
      break;
    case rwd::LogLevel::kError:
      nbdkit_error("rewind: %s", msg.c_str());
      break;
  }
}

void rewind_load() {
  // Every request allocates its payload (the one copy of the write path) on its own
  // thread, and the flusher frees it on another. With glibc's default of an arena per
  // thread, freed payloads pile up in arenas that the next allocations do not come
  // from: the process held over twice queue-max. Two arenas keep the plugin's memory
  // near queue-max (measured in docs/PERFORMANCE.md) at no cost in speed there.
  // MALLOC_ARENA_MAX in the environment still decides.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
}

// Whether the environment sets a malloc parameter (its own variable, or GLIBC_TUNABLES).
bool malloc_param_set(const char* env, const char* tunable) {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return std::getenv(env) != nullptr || (tunables != nullptr && std::strstr(tunables, tunable));
}

// The apply thread frees a batch of payloads at once. glibc hands the free top of an
// arena back to the kernel (madvise) once more than its trim threshold (128 KiB at
// first) is free there, and the next payloads fault the same pages in again: 0.7
// page faults per sequential 64 KiB write, 7% of the plugin's CPU in the fault
// handler (docs/PERFORMANCE.md). The plugin keeps up to queue-max (1 GiB at most) of
// free memory for the next payloads instead. A fixed trim threshold also stops glibc
// from raising its mmap threshold as it goes, so that is fixed at its most, 32 MiB: a
// payload up to that size comes from the arenas rather than from a mmap and a munmap
// of its own. The environment still decides (MALLOC_TRIM_THRESHOLD_,
// MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES).
void keep_freed_payload_memory(uint64_t queue_max) {
  if (!malloc_param_set("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"))
    mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<uint64_t>(queue_max, 1u << 30)));
  if (!malloc_param_set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"))
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

int rewind_config(const char* key, const char* value) {
  return guarded("config", [&] {
    Status st = rwd::set_serve_key(*g_config, key, value);
    return st ? 0 : fail(st);
  });
}

int rewind_config_complete() {
  return guarded("config", [&] {
    Status st = rwd::complete_serve_config(*g_config, log_line);
    return st ? 0 : fail(st);
  });
}

int rewind_get_ready() {
  return guarded("get_ready", [&] {
    keep_freed_payload_memory(g_config->volume.queue_max);
    auto s = rwd::Served::open(*g_config, log_line);
    if (!s) return fail(s.status());
    g_served = s->release();
    g_volume = g_served->volume();
    g_view = g_served->view();
    return 0;
  });
}

// After the fork, like the flusher: a thread started before it would be gone.
int rewind_after_fork() {
  return guarded("after_fork", [&] {
    Status st = g_served->start();
    return st ? 0 : fail(st);
  });
}

void rewind_cleanup() {
  try {
    if (g_served == nullptr) return;
    Status st = g_served->stop();
    if (!st) nbdkit_error("rewind: shutdown: %s", st.message().c_str());
    delete g_served;
    g_served = nullptr;
    g_volume = nullptr;
    g_view = nullptr;
  } catch (const std::exception& e) {
    nbdkit_error("rewind: shutdown: %s", e.what());
  }
}

int g_handle;  // every connection shares the one volume

void* rewind_open(int /*readonly*/) {
  return &g_handle;
}

int64_t rewind_get_size(void*) {
  return static_cast<int64_t>(g_served->size());
}

int rewind_pread(void*, void* buf, uint32_t count, uint64_t offset, uint32_t) {
  return guarded("read", [&] {
    std::span dst(static_cast<uint8_t*>(buf), count);
    Status st = g_view != nullptr ? g_view->read(dst, offset) : g_volume->read(dst, offset);
    return st ? 0 : fail(st);
  });
}

int rewind_pwrite(void*, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("write", [&] {
    Status st = g_volume->write(std::span(static_cast<const uint8_t*>(buf), count), offset,
                                (flags & NBDKIT_FLAG_FUA) != 0);
    return st ? 0 : fail(st);
  });
}

int rewind_flush(void*, uint32_t) {
  return guarded("flush", [&] {
    Status st = g_volume->flush();
    return st ? 0 : fail(st);
  });
}

int rewind_trim(void*, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("trim", [&] {
    Status st = g_volume->trim(offset, count, (flags & NBDKIT_FLAG_FUA) != 0);
    return st ? 0 : fail(st);
  });
}

// A zero is always fast here (one queued record, whatever its length), so a fast-zero
// request is served rather than refused.
int rewind_zero(void*, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("zero", [&] {
    Status st = g_volume->zero(offset, count, (flags & NBDKIT_FLAG_FUA) != 0);
    return st ? 0 : fail(st);
  });
}

int rewind_extents(void*, uint32_t count, uint64_t offset, uint32_t, struct nbdkit_extents* exts) {
  return guarded("extents", [&] {
    int rc = 0;
    Status st =
        g_volume->extents(offset, count, [&](uint64_t s, uint64_t e, rwd::Volume::ExtentKind k) {
          uint32_t type = 0;
          if (k == rwd::Volume::ExtentKind::kZero) type = NBDKIT_EXTENT_ZERO;
          if (k == rwd::Volume::ExtentKind::kHole) type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
          if (rc == 0) rc = nbdkit_add_extent(exts, s, e - s, type);
        });
    if (!st) return fail(st);
    return rc;
  });
}

nbdkit_plugin make_plugin() {
  nbdkit_plugin p{};
  p.name = "rewind";
  p.longname = "rewind continuous data protection";
  p.version = "0.1.0";
  p.description =
      "Serves a disk image and journals every write, so any past moment can be restored.";
  p.load = rewind_load;
  p.config = rewind_config;
  p.config_complete = rewind_config_complete;
  p.config_help = rwd::kServeKeysHelp;
  p.magic_config_key = nullptr;
  p.thread_model = [] { return NBDKIT_THREAD_MODEL_PARALLEL; };
  p.get_ready = rewind_get_ready;
  p.after_fork = rewind_after_fork;
  p.cleanup = rewind_cleanup;
  p.open = rewind_open;
  p.get_size = rewind_get_size;
  // A view is read-only and reports no extents.
  p.can_write = [](void*) -> int { return g_view == nullptr; };
  p.can_extents = [](void*) -> int { return g_view == nullptr; };
  p.can_flush = p.can_trim = p.can_zero = p.can_fast_zero = [](void*) { return 1; };
  p.can_fua = [](void*) { return NBDKIT_FUA_NATIVE; };
  p.is_rotational = [](void*) { return 0; };
  p.can_multi_conn = [](void*) { return 1; };  // one queue for all: a flush covers every connection
  p.pread = rewind_pread;
  p.pwrite = rewind_pwrite;
  p.flush = rewind_flush;
  p.trim = rewind_trim;
  p.zero = rewind_zero;
  p.extents = rewind_extents;
  p.errno_is_preserved = 0;
  return p;
}

nbdkit_plugin plugin = make_plugin();

}  // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
