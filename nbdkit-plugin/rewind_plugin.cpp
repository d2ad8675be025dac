// nbdkit-rewind-plugin: serves a volume over NBD. A thin adapter: each callback
// translates to the Volume API of journal/ and maps its Status to an NBD error.
//
// Life cycle (see docs/DURABILITY.md): config -> config_complete (check keys) ->
// get_ready (open the volume: create the journal or recover it; errors still reach
// the user's terminal) -> fork -> after_fork (start the flusher thread, which would
// not survive the fork) -> requests -> cleanup (drain, sync, seal, checkpoint).
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <malloc.h>
#include <sys/un.h>

#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/base/units.h"
#include "rewind/format/format.h"
#include "rewind/history/retention.h"
#include "rewind/replay/view.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/shipper.h"
#include "rewind/volume/control.h"
#include "rewind/volume/volume.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

// Set by -D rewind.verbose=1: log segment and checkpoint activity.
extern "C" {
NBDKIT_DLL_PUBLIC int rewind_debug_verbose = 0;
}

namespace {

using rwd::Status;

struct Config {
  std::string image;
  std::string journal;
  std::string control;
  rwd::VolumeOptions opts;
  rwd::RetentionPolicy retention;
  // Shipping to a log server (ship=): empty host when not shipped.
  rwd::ShipperOptions ship;
  bool have_image = false, have_journal = false;
  // A read-only point-in-time view (at=, seq= or mark=) instead of the live volume.
  std::string at, seq, mark;
  // In a view: whether what the image still holds of it is read from the image.
  bool image_reads = true;
  bool have_image_reads = false;
  bool view() const { return !at.empty() || !seq.empty() || !mark.empty(); }
};

// Plain pointers, not objects with destructors: the parent process nbdkit leaves
// behind when it forks runs static destructors, and must not close the volume.
Config* config_state() {
  static Config* c = new Config();
  return c;
}
rwd::Volume* g_volume = nullptr;          // the live volume, or
rwd::JournalView* g_view = nullptr;       // a point-in-time view
rwd::ControlServer* g_control = nullptr;  // the live volume's control socket
rwd::Retention* g_retention = nullptr;    // its retention policy, if it has one
rwd::Shipper* g_shipper = nullptr;        // its shipper to a log server, if it has one

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

int config_size(const char* key, const char* value, uint64_t min, uint64_t max, uint64_t* out) {
  auto v = rwd::parse_size(value);
  if (!v) {
    nbdkit_error("rewind: %s=%s: %s", key, value, v.status().message().c_str());
    return -1;
  }
  if (*v < min || *v > max) {
    nbdkit_error("rewind: %s=%s: must be between %s and %s", key, value,
                 rwd::format_size(min).c_str(), rwd::format_size(max).c_str());
    return -1;
  }
  *out = *v;
  return 0;
}

int config_duration(const char* key, const char* value, std::chrono::nanoseconds min,
                    std::chrono::nanoseconds max, std::chrono::nanoseconds* out) {
  auto v = rwd::parse_duration(value);
  if (!v) {
    nbdkit_error("rewind: %s=%s: %s", key, value, v.status().message().c_str());
    return -1;
  }
  if (*v < min || *v > max) {
    nbdkit_error("rewind: %s=%s: must be between %s and %s", key, value,
                 rwd::format_duration(min).c_str(), rwd::format_duration(max).c_str());
    return -1;
  }
  *out = *v;
  return 0;
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

int rewind_config(const char* key, const char* value) {
  return guarded("config", [&] {
    Config& c = *config_state();
    using namespace std::chrono_literals;
    std::string k = key;
    if (k == "image") {
      char* p = nbdkit_realpath(value);  // the image must exist
      if (p == nullptr) return -1;
      c.image = p;
      free(p);
      c.have_image = true;
    } else if (k == "journal") {
      char* p = nbdkit_absolute_path(value);  // created on first serve
      if (p == nullptr) return -1;
      c.journal = p;
      free(p);
      c.have_journal = true;
    } else if (k == "control") {
      char* p = nbdkit_absolute_path(value);
      if (p == nullptr) return -1;
      c.control = p;
      free(p);
    } else if (k == "flush-interval") {
      return config_duration(key, value, 1ms, 1h, &c.opts.flush_interval);
    } else if (k == "queue-max") {
      return config_size(key, value, 1ull << 20, 64ull << 30, &c.opts.queue_max);
    } else if (k == "segment-size") {
      return config_size(key, value, 1ull << 20, 64ull << 30, &c.opts.journal.segment_size);
    } else if (k == "segment-age") {
      return config_duration(key, value, 1s, std::chrono::hours(24 * 365),
                             &c.opts.journal.segment_age);
    } else if (k == "retain") {
      return config_duration(key, value, 1s, std::chrono::hours(24 * 365 * 100),
                             &c.retention.retain);
    } else if (k == "retain-coarse") {
      auto tiers = rwd::parse_retention_tiers(value);
      if (!tiers) {
        nbdkit_error("rewind: retain-coarse=%s: %s", value, tiers.status().message().c_str());
        return -1;
      }
      c.retention.coarse = std::move(*tiers);
    } else if (k == "journal-max") {
      return config_size(key, value, 2ull << 20, 1ull << 50, &c.retention.journal_max);
    } else if (k == "ship") {
      // HOST:PORT, or [IPv6]:PORT
      const std::string_view v = value;
      const size_t colon = v.rfind(':');
      std::string_view host = colon == std::string_view::npos ? v : v.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      uint64_t port = 0;
      const std::string_view ptext = colon == std::string_view::npos ? "" : v.substr(colon + 1);
      auto [end, ec] = std::from_chars(ptext.data(), ptext.data() + ptext.size(), port);
      if (host.empty() || ptext.empty() || ec != std::errc() ||
          end != ptext.data() + ptext.size() || port == 0 || port > 65535) {
        nbdkit_error(
            "rewind: ship=%s: give the log server as HOST:PORT, e.g. ship=logs.example:7420",
            value);
        return -1;
      }
      c.ship.link.host = std::string(host);
      c.ship.link.port = static_cast<uint16_t>(port);
    } else if (k == "ship-token") {
      // The token itself, or @FILE to keep it off the command line.
      std::string token = value;
      if (token.starts_with("@")) {
        auto text = rwd::read_small_file(token.substr(1), 4096);
        if (!text) {
          nbdkit_error("rewind: ship-token=%s: %s", value, text.status().message().c_str());
          return -1;
        }
        token = *text;
        while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
      }
      c.ship.link.token = token;
    } else if (k == "ship-volume") {
      if (rwd::Status st = rwd::proto::check_volume_name(value); !st) {
        nbdkit_error("rewind: ship-volume=%s: %s", value, st.message().c_str());
        return -1;
      }
      c.ship.link.volume = value;
    } else if (k == "ship-rate") {
      return config_size(key, value, 4096, 1ull << 40, &c.ship.rate);
    } else if (k == "ship-ca") {
      char* p = nbdkit_realpath(value);
      if (p == nullptr) return -1;
      c.ship.link.ca_file = p;
      free(p);
    } else if (k == "ship-server-name") {
      c.ship.link.server_name = value;
    } else if (k == "ship-lag-warn") {
      return config_duration(key, value, 1s, std::chrono::hours(24 * 365), &c.ship.lag_warn);
    } else if (k == "coalesce") {
      if (std::string_view(value) != "on" && std::string_view(value) != "off") {
        nbdkit_error("rewind: coalesce=%s: must be on or off", value);
        return -1;
      }
      c.opts.coalesce = std::string_view(value) == "on";
    } else if (k == "image-reads") {
      if (std::string_view(value) != "on" && std::string_view(value) != "off") {
        nbdkit_error("rewind: image-reads=%s: must be on or off", value);
        return -1;
      }
      c.image_reads = std::string_view(value) == "on";
      c.have_image_reads = true;
    } else if (k == "start-check") {
      if (std::string_view(value) != "full" && std::string_view(value) != "quick") {
        nbdkit_error("rewind: start-check=%s: must be full or quick", value);
        return -1;
      }
      c.opts.full_check = std::string_view(value) == "full";
    } else if (k == "at" || k == "seq" || k == "mark") {
      if (*value == '\0') {
        nbdkit_error("rewind: %s= needs a value", key);
        return -1;
      }
      (k == "at" ? c.at : k == "seq" ? c.seq : c.mark) = value;
    } else {
      nbdkit_error("rewind: unknown parameter '%s'; see 'nbdkit rewind --help' for the keys", key);
      return -1;
    }
    return 0;
  });
}

int rewind_config_complete() {
  Config& c = *config_state();
  if (c.view()) {
    if (!c.have_journal) {
      nbdkit_error(
          "rewind: missing parameter: journal=DIR; usage: nbdkit rewind journal=DIR at=TIME");
      return -1;
    }
    if (c.have_image) {
      nbdkit_error(
          "rewind: image= and a point in time (at=/seq=/mark=) exclude each other: a view is "
          "served from the journal alone; drop image=");
      return -1;
    }
    auto t = rwd::make_target(c.at, c.seq, c.mark, rwd::wall_clock_ns());
    if (!t) {
      nbdkit_error("rewind: %s", t.status().message().c_str());
      return -1;
    }
    return 0;
  }
  if (c.have_image_reads) {
    nbdkit_error(
        "rewind: image-reads= applies to a point-in-time view only (with at=, seq= or mark=); "
        "drop it");
    return -1;
  }
  if (!c.have_image || !c.have_journal) {
    nbdkit_error("rewind: missing parameter: %s; usage: nbdkit rewind image=DISK.img journal=DIR",
                 !c.have_image ? "image=DISK.img (the disk image to serve)"
                               : "journal=DIR (where its journal lives)");
    return -1;
  }
  if (c.journal == c.image) {
    nbdkit_error("rewind: journal=%s is the image itself; give a directory", c.journal.c_str());
    return -1;
  }
  constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
  if (!c.control.empty() && c.control.size() > kMaxSocketPath) {
    nbdkit_error(
        "rewind: control=%s is longer than %zu bytes, the limit for a UNIX socket; give a "
        "shorter path",
        c.control.c_str(), kMaxSocketPath);
    return -1;
  }
  if (c.control.empty()) {
    c.control = rwd::join_path(c.journal, rwd::format::kControlSocketName);
    if (c.control.size() > kMaxSocketPath) {
      // The disk matters more than marks: serve it, and say how to get marks back.
      nbdkit_error(
          "rewind: warning: %s is too long for a UNIX socket, so this volume takes no "
          "marks; give control=PATH with a shorter path",
          c.control.c_str());
      c.control.clear();
    }
  }
  if (c.retention.journal_max != 0 && c.retention.journal_max < 2 * c.opts.journal.segment_size) {
    nbdkit_error(
        "rewind: journal-max=%s is less than twice segment-size=%s: only whole sealed segments "
        "can be folded into the base; raise journal-max or lower segment-size",
        rwd::format_size(c.retention.journal_max).c_str(),
        rwd::format_size(c.opts.journal.segment_size).c_str());
    return -1;
  }
  if (rwd::Status st = rwd::check_retention_policy(c.retention); !st) {
    nbdkit_error("rewind: retain=, retain-coarse=: %s", st.message().c_str());
    return -1;
  }
  if (c.ship.link.host.empty()) {
    for (const char* key : {"ship-token", "ship-volume", "ship-ca"}) {
      const bool given = std::string_view(key) == "ship-token"    ? !c.ship.link.token.empty()
                         : std::string_view(key) == "ship-volume" ? !c.ship.link.volume.empty()
                                                                  : !c.ship.link.ca_file.empty();
      if (given) {
        nbdkit_error("rewind: %s= without ship=HOST:PORT: say where the log server is", key);
        return -1;
      }
    }
  } else {
    if (c.ship.link.token.empty()) {
      nbdkit_error(
          "rewind: ship= needs ship-token=TOKEN (or ship-token=@FILE): the log server grants "
          "volumes by token");
      return -1;
    }
    if (rwd::Status st = rwd::proto::check_token(c.ship.link.token); !st) {
      nbdkit_error("rewind: ship-token=: %s", st.message().c_str());
      return -1;
    }
    if (c.ship.link.volume.empty()) {
      nbdkit_error(
          "rewind: ship= needs ship-volume=NAME: the name of this volume on the log server");
      return -1;
    }
    c.opts.shipped = true;
  }
  c.opts.image_path = c.image;
  c.opts.journal_dir = c.journal;
  return 0;
}

int rewind_get_ready() {
  return guarded("get_ready", [&] {
    Config& c = *config_state();
    if (c.view()) {
      auto t = rwd::make_target(c.at, c.seq, c.mark, rwd::wall_clock_ns());
      if (!t) return fail(t.status());
      auto v = rwd::JournalView::open(c.journal, *t, log_line);
      if (!v) return fail(v.status());
      // Without the mappings (say, more segments than vm.max_map_count allows) reads
      // use pread: slower for data read again, the same otherwise.
      if (Status st = (*v)->map_segments(); !st)
        log_line(rwd::LogLevel::kWarning,
                 st.message() + "; the segments not mapped are read with pread");
      if (c.image_reads) (*v)->use_image(log_line);
      for (const std::string& d : (*v)->damaged_segments())
        log_line(rwd::LogLevel::kWarning,
                 d + "; reads that need what is lost from it fail, the rest are served");
      nbdkit_debug("rewind: serving %s read-only at seq %" PRIu64 "%s%s", c.journal.c_str(),
                   (*v)->seq(), (*v)->note().empty() ? "" : ": ", (*v)->note().c_str());
      g_view = v->release();
      return 0;
    }
    auto v = rwd::Volume::open(c.opts, log_line);
    if (!v) return fail(v.status());
    g_volume = v->release();
    return 0;
  });
}

// One request line from the control socket (see rewind/control.h).
std::string control_handler(const std::string& line) {
  try {
    if (line.starts_with("MARK ")) {
      auto m = g_volume->mark(line.substr(5));
      if (!m) return "ERR " + m.status().message();
      return fmt::format("OK {} {}", m->seq, m->time_ns);
    }
    if (line == "STATUS") {
      const rwd::WriteQueue& q = g_volume->queue();
      return fmt::format(
          "OK {{\"last_seq\":{},\"durable_seq\":{},\"queued_bytes\":{},\"size\":{}{}}}",
          q.last_seq(), q.durable_seq(), q.queued_bytes(), g_volume->size(),
          g_shipper != nullptr
              ? ",\"ship\":" + rwd::ship_status_json(g_shipper->status(), config_state()->ship)
              : "");
    }
    return "ERR unknown request; send MARK <name> or STATUS";
  } catch (const std::exception& e) {
    return std::string("ERR ") + e.what();
  }
}

int rewind_after_fork() {
  if (g_volume == nullptr) return 0;  // a view has no threads
  g_volume->start();
  if (config_state()->opts.shipped)
    g_shipper = new rwd::Shipper(rwd::ship_source_of(*g_volume), config_state()->journal,
                                 config_state()->ship, log_line);
  if (config_state()->retention.active())
    g_retention =
        new rwd::Retention(*g_volume, config_state()->journal, config_state()->retention, log_line);
  if (config_state()->control.empty()) return 0;
  // After the fork, like the flusher: a thread started before it would be gone.
  auto server = rwd::ControlServer::start(config_state()->control, control_handler, log_line);
  if (!server) return fail(server.status());
  g_control = server->release();
  return 0;
}

void rewind_cleanup() {
  try {
    if (g_control != nullptr) {
      g_control->stop();
      delete g_control;
      g_control = nullptr;
    }
    if (g_shipper != nullptr) {
      g_shipper->stop();
      delete g_shipper;
      g_shipper = nullptr;
    }
    if (g_retention != nullptr) {
      g_retention->stop();
      delete g_retention;
      g_retention = nullptr;
    }
    if (g_volume != nullptr) {
      Status st = g_volume->close();
      if (!st) nbdkit_error("rewind: shutdown: %s", st.message().c_str());
      delete g_volume;
      g_volume = nullptr;
    }
    delete g_view;
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
  return static_cast<int64_t>(g_view != nullptr ? g_view->size() : g_volume->size());
}

int rewind_can_true(void*) {
  return 1;
}
int rewind_can_write(void*) {
  return g_view == nullptr;  // a view is read-only
}
int rewind_can_extents(void*) {
  return g_view == nullptr;
}
int rewind_can_fua(void*) {
  return NBDKIT_FUA_NATIVE;
}
int rewind_can_rotational(void*) {
  return 0;
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

int rewind_thread_model() {
  return NBDKIT_THREAD_MODEL_PARALLEL;
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
  p.config_help =
      "image=DISK.img        (required) The disk image to serve.\n"
      "journal=DIR           (required) Its journal directory (created on first serve).\n"
      "flush-interval=DUR    Longest time a write waits before it is journaled (100ms).\n"
      "queue-max=SIZE        Bytes queued before writers wait (64M).\n"
      "segment-size=SIZE     Seal a journal segment at this size (256M).\n"
      "segment-age=DUR       Seal a journal segment at this age (10m).\n"
      "control=PATH          Control socket for marks and status (DIR/control.sock).\n"
      "retain=DUR            Keep every write at least this long; fold older whole\n"
      "                      segments into the base snapshot (default: forever).\n"
      "retain-coarse=AGE:GRAN,...  After retain=, keep one state per GRAN (and every\n"
      "                      mark) up to AGE, e.g. 1d:1m,30d:1h; fold what is older\n"
      "                      than the last AGE into the base snapshot.\n"
      "journal-max=SIZE      Hard limit on the journal: past it, fold the oldest\n"
      "                      segments early, logging what history is given up.\n"
      "ship=HOST:PORT        Ship the journal to this rewind-server as it becomes\n"
      "                      durable (with ship-token= and ship-volume=).\n"
      "ship-token=TOKEN|@FILE  The token the log server grants this volume by.\n"
      "ship-volume=NAME      The volume's name on the log server.\n"
      "ship-ca=FILE          CA certificate (PEM) the server's must chain to; without\n"
      "                      it the link is plain TCP (a server on loopback only).\n"
      "ship-server-name=NAME The name the server's certificate carries (HOST).\n"
      "ship-rate=SIZE        Send at most SIZE bytes per second (default: no cap; the\n"
      "                      shipper backs off by itself when the link is congested).\n"
      "ship-lag-warn=DUR     Warn when the server is this far behind (5m).\n"
      "coalesce=on|off       Drop a queued write that a newer one covers before it is\n"
      "                      journaled (off: on gives up the points in time between\n"
      "                      flushes).\n"
      "start-check=full|quick  At start, verify every journal record (full, the\n"
      "                      default) or only segment headers and sizes (quick).\n"
      "at=TIME | seq=N | mark=NAME\n"
      "                      With journal= alone: serve the volume read-only as it\n"
      "                      was at that point in time.\n"
      "image-reads=on|off    In such a view, read what the volume's image still holds\n"
      "                      of that point from the image, each piece checked against\n"
      "                      the journal's checksums (on, the default), or read\n"
      "                      everything from the journal (off).";
  p.magic_config_key = nullptr;
  p.thread_model = rewind_thread_model;
  p.get_ready = rewind_get_ready;
  p.after_fork = rewind_after_fork;
  p.cleanup = rewind_cleanup;
  p.open = rewind_open;
  p.get_size = rewind_get_size;
  p.can_write = rewind_can_write;
  p.can_flush = rewind_can_true;
  p.is_rotational = rewind_can_rotational;
  p.can_trim = rewind_can_true;
  p.can_zero = rewind_can_true;
  p.can_fast_zero = rewind_can_true;
  p.can_fua = rewind_can_fua;
  p.can_multi_conn = rewind_can_true;  // one queue for all: a flush covers every connection
  p.can_extents = rewind_can_extents;
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
