#include "rewind/serve/serve_config.h"

#include "rewind/ship/metrics_endpoint.h"

#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/base/units.h"
#include "rewind/format/format.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/seal.h"
#include "rewind/replay/target.h"
#include "rewind/ship/bucket_store.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/ship_client.h"

namespace rwd {

namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

constexpr nanoseconds kYear = std::chrono::hours(24 * 365);

// A key's parser: reads the value into the configuration, or says what is wrong
// with it (without the "KEY=VALUE: " prefix that set_serve_key puts in front).
using KeyParser = std::function<Status(ServeConfig&, std::string_view value)>;

Status check_range(bool in_range, const std::string& min, const std::string& max) {
  if (in_range) return Status::ok();
  return Status::invalid(fmt::format("must be between {} and {}", min, max));
}

// A size between `min` and `max`, into the field `field(config)` returns.
template <class Field>
KeyParser size_key(uint64_t min, uint64_t max, Field field) {
  return [=](ServeConfig& c, std::string_view value) -> Status {
    auto v = parse_size(value);
    if (!v) return v.status();
    REWIND_RETURN_IF_ERROR(check_range(*v >= min && *v <= max, format_size(min), format_size(max)));
    field(c) = *v;
    return Status::ok();
  };
}

// A whole number between `min` and `max`.
template <class Field>
KeyParser count_key(unsigned min, unsigned max, Field field) {
  return [=](ServeConfig& c, std::string_view value) -> Status {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size() || v < min || v > max)
      return Status::invalid(fmt::format("must be a whole number between {} and {}", min, max));
    field(c) = v;
    return Status::ok();
  };
}

template <class Field>
KeyParser duration_key(nanoseconds min, nanoseconds max, Field field) {
  return [=](ServeConfig& c, std::string_view value) -> Status {
    auto v = parse_duration(value);
    if (!v) return v.status();
    REWIND_RETURN_IF_ERROR(
        check_range(*v >= min && *v <= max, format_duration(min), format_duration(max)));
    field(c) = *v;
    return Status::ok();
  };
}

// One of two words, `yes` for true and `no` for false.
template <class Field>
KeyParser choice_key(const char* yes, const char* no, Field field) {
  return [=](ServeConfig& c, std::string_view value) -> Status {
    if (value != yes && value != no)
      return Status::invalid(fmt::format("must be {} or {}", yes, no));
    field(c) = value == yes;
    return Status::ok();
  };
}

Status parse_ship_address(ServeConfig& c, std::string_view value) {
  if (is_s3_uri(value)) {
    S3Location where;
    REWIND_RETURN_IF_ERROR(parse_s3_uri(value, &where));
    c.ship.bucket = std::move(where);
    return Status::ok();
  }
  std::string host;
  uint16_t port = 0;
  if (!parse_host_port(value, true, &host, &port))
    return Status::invalid(
        "give the log server as HOST:PORT (e.g. ship=logs.example:7420) or a bucket as "
        "s3://BUCKET/PREFIX");
  c.ship.link.host = std::move(host);
  c.ship.link.port = port;
  return Status::ok();
}

// The token itself, or @FILE to keep it off the command line (one line; the line
// end is not part of it).
Status parse_ship_token(ServeConfig& c, std::string_view value) {
  std::string token(value);
  if (token.starts_with("@")) {
    REWIND_RETURN_IF_ERROR(check_secret_file(token.substr(1)));
    auto text = read_small_file(token.substr(1), 4096);
    if (!text) return text.status();
    token = std::move(*text);
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  }
  c.ship.link.token = std::move(token);
  return Status::ok();
}

Status existing_file_needed(const Status& st, const char* what) {
  return Status::invalid(fmt::format("{}; give {}", std::strerror(st.errno_value()), what));
}

// A path that need not exist yet, made absolute.
Status parse_path(std::string* field, std::string_view value) {
  if (value.empty()) return Status::invalid("needs a value");
  *field = absolute_path(std::string(value));
  return Status::ok();
}

Status parse_point(std::string* field, std::string_view value) {
  if (value.empty()) return Status::invalid("needs a value");
  *field = std::string(value);
  return Status::ok();
}

// ship-key=@FILE, key=@FILE: a key file `rewind keygen` made.
Result<SealKey> parse_key_file(std::string_view v) {
  if (!v.starts_with("@") || v.size() < 2)
    return Status::invalid(
        "give the key file as @FILE (one `rewind keygen FILE` made); a key is never given on "
        "the command line");
  return load_key_file(absolute_path(std::string(v.substr(1))));
}

using KeyTable = std::vector<std::pair<std::string_view, KeyParser>>;

// The live volume: its files, the write queue and the journal's segments.
KeyTable volume_keys() {
  return {
      {"image",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto p = real_path(std::string(v));  // the image must exist
         if (!p) return existing_file_needed(p.status(), "the disk image to serve");
         c.volume.image_path = std::move(*p);
         c.have_image = true;
         return Status::ok();
       }},
      {"journal",
       [](ServeConfig& c, std::string_view v) {
         if (is_s3_uri(v)) {
           S3Location where;
           REWIND_RETURN_IF_ERROR(parse_s3_uri(v, &where));
           c.volume.journal_dir = where.uri();
           c.view_bucket = std::move(where);
           c.have_journal = true;
           return Status::ok();
         }
         // Created on first serve.
         REWIND_RETURN_IF_ERROR(parse_path(&c.volume.journal_dir, v));
         c.have_journal = true;
         return Status::ok();
       }},
      {"control", [](ServeConfig& c, std::string_view v) { return parse_path(&c.control, v); }},
      {"metrics",
       [](ServeConfig& c, std::string_view v) -> Status {
         std::string host;
         uint16_t port = 0;
         REWIND_RETURN_IF_ERROR(parse_metrics_address(v, &host, &port));
         c.metrics = std::string(v);
         return Status::ok();
       }},
      {"flush-interval",
       duration_key(
           1ms, 1h, [](ServeConfig & c) -> auto& { return c.volume.flush_interval; })},
      {"queue-max",
       size_key(
           1ull << 20, 64ull << 30, [](ServeConfig & c) -> auto& { return c.volume.queue_max; })},
      {"segment-size", size_key(
                           1ull << 20, 64ull << 30,
                           [](ServeConfig & c) -> auto& { return c.volume.journal.segment_size; })},
      {"segment-age",
       duration_key(
           1s, kYear, [](ServeConfig & c) -> auto& { return c.volume.journal.segment_age; })},
      {"compress",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto parsed = parse_compression(std::string(v));
         if (!parsed) return parsed.status();
         c.volume.journal.compression = *parsed;
         return Status::ok();
       }},
      {"compress-threads", count_key(
                               1, 64, [](ServeConfig & c) -> auto& {
                                 c.have_compress_threads = true;
                                 return c.volume.journal.compress_threads;
                               })},
  };
}

KeyTable retention_keys() {
  return {
      {"retain", duration_key(
                     1s, 100 * kYear, [](ServeConfig & c) -> auto& { return c.retention.retain; })},
      {"retain-coarse",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto tiers = parse_retention_tiers(v);
         if (!tiers) return tiers.status();
         c.retention.coarse = std::move(*tiers);
         return Status::ok();
       }},
      {"journal-max", size_key(
                          2ull << 20, 1ull << 50,
                          [](ServeConfig & c) -> auto& { return c.retention.journal_max; })},
  };
}

KeyTable ship_keys() {
  return {
      {"ship", parse_ship_address},
      {"ship-token", parse_ship_token},
      {"ship-volume",
       [](ServeConfig& c, std::string_view v) -> Status {
         REWIND_RETURN_IF_ERROR(proto::check_volume_name(v));
         c.ship.link.volume = std::string(v);
         return Status::ok();
       }},
      {"ship-rate", size_key(
                        4096, 1ull << 40, [](ServeConfig & c) -> auto& { return c.ship.rate; })},
      {"ship-ca",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto p = real_path(std::string(v));
         if (!p) return existing_file_needed(p.status(), "the CA certificate (PEM)");
         c.ship.link.ca_file = std::move(*p);
         return Status::ok();
       }},
      {"ship-server-name",
       [](ServeConfig& c, std::string_view v) {
         c.ship.link.server_name = std::string(v);
         return Status::ok();
       }},
      {"ship-endpoint",
       [](ServeConfig& c, std::string_view v) {
         c.ship.s3.endpoint = std::string(v);
         return Status::ok();
       }},
      {"ship-region",
       [](ServeConfig& c, std::string_view v) {
         c.ship.s3.region = std::string(v);
         return Status::ok();
       }},
      {"ship-profile",
       [](ServeConfig& c, std::string_view v) {
         c.ship.s3.profile = std::string(v);
         return Status::ok();
       }},
      {"ship-compress",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto parsed = parse_compression(std::string(v));
         if (!parsed) return parsed.status();
         c.ship.form.compression = *parsed;
         c.have_ship_compress = true;
         return Status::ok();
       }},
      {"ship-key",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto key = parse_key_file(v);
         if (!key) return key.status();
         c.ship.form.key = std::move(*key);
         return Status::ok();
       }},
      {"ship-timeout", duration_key(
                           1s, 1h, [](ServeConfig & c) -> auto& { return c.ship.link.timeout; })},
      {"ship-lag-warn", duration_key(
                            1s, kYear, [](ServeConfig & c) -> auto& { return c.ship.lag_warn; })},
  };
}

// Choices, and the point in time of a view.
KeyTable other_keys() {
  return {
      {"coalesce", choice_key(
                       "on", "off", [](ServeConfig & c) -> auto& { return c.volume.coalesce; })},
      {"cache-size",
       size_key(
           1ull << 20, 1ull << 50, [](ServeConfig & c) -> auto& { return c.cache_size; })},
      {"image-reads",
       [](ServeConfig& c, std::string_view v) -> Status {
         REWIND_RETURN_IF_ERROR(choice_key(
             "on", "off", [](ServeConfig & d) -> auto& { return d.image_reads; })(c, v));
         c.have_image_reads = true;
         return Status::ok();
       }},
      {"start-check",
       choice_key(
           "full", "quick", [](ServeConfig & c) -> auto& { return c.volume.full_check; })},
      {"at", [](ServeConfig& c, std::string_view v) { return parse_point(&c.at, v); }},
      {"seq", [](ServeConfig& c, std::string_view v) { return parse_point(&c.seq, v); }},
      {"mark", [](ServeConfig& c, std::string_view v) { return parse_point(&c.mark, v); }},
      {"key",
       [](ServeConfig& c, std::string_view v) -> Status {
         auto key = parse_key_file(v);
         if (!key) return key.status();
         c.view_keys.add(std::move(*key));
         return Status::ok();
       }},
  };
}

const KeyTable& key_table() {
  static const KeyTable* table = [] {
    auto* t = new KeyTable();
    for (KeyTable part : {volume_keys(), retention_keys(), ship_keys(), other_keys()})
      t->insert(t->end(), part.begin(), part.end());
    return t;
  }();
  return *table;
}

Status complete_view(ServeConfig& c) {
  if (!c.have_journal)
    return Status::invalid(
        "missing parameter: journal=DIR; usage: nbdkit rewind journal=DIR at=TIME");
  if (c.have_image)
    return Status::invalid(
        "image= and a point in time (at=/seq=/mark=) exclude each other: a view is served from "
        "the journal alone; drop image=");
  auto t = make_target(c.at, c.seq, c.mark, wall_clock_ns());
  if (!t) return t.status();
  c.target = std::move(*t);
  if (c.view_bucket) {
    if (Status st = resolve_s3_options(&c.view_s3); !st)
      return Status::invalid("journal=" + c.view_bucket->uri() + ": " + st.message());
  }
  return Status::ok();
}

// The control socket: the one given, or one in the journal directory if its path
// fits in a UNIX socket address, or none (with a warning).
Status complete_control(ServeConfig& c, const Logger& logger) {
  constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
  if (!c.control.empty()) {
    if (c.control.size() <= kMaxSocketPath) return Status::ok();
    return Status::invalid(fmt::format(
        "control={} is longer than {} bytes, the limit for a UNIX socket; give a shorter path",
        c.control, kMaxSocketPath));
  }
  c.control = join_path(c.volume.journal_dir, format::kControlSocketName);
  if (c.control.size() > kMaxSocketPath) {
    // The disk matters more than marks: serve it, and say how to get marks back.
    log_to(logger, LogLevel::kWarning,
           fmt::format("{} is too long for a UNIX socket, so this volume takes no marks; give "
                       "control=PATH with a shorter path",
                       c.control));
    c.control.clear();
  }
  return Status::ok();
}

Status complete_retention(const ServeConfig& c) {
  if (c.retention.journal_max != 0 && c.retention.journal_max < 2 * c.volume.journal.segment_size)
    return Status::invalid(fmt::format(
        "journal-max={} is less than twice segment-size={}: only whole sealed segments can be "
        "folded into the base; raise journal-max or lower segment-size",
        format_size(c.retention.journal_max), format_size(c.volume.journal.segment_size)));
  if (Status st = check_retention_policy(c.retention); !st)
    return Status::invalid("retain=, retain-coarse=: " + st.message());
  return Status::ok();
}

Status complete_bucket_shipping(ServeConfig& c) {
  const ShipOptions& link = c.ship.link;
  if (c.have_ship_compress && !c.ship.form.key)
    return Status::invalid(
        "ship-compress= is for a log server, or a bucket with ship-key=: otherwise a bucket "
        "holds the journal's segments as they are (compress=zstd stores them compressed)");
  // A sealed copy goes through a spool named by the prefix's last part.
  if (c.ship.form.key)
    if (auto split = split_volume_location(*c.ship.bucket); !split)
      return Status::invalid("ship-key= with ship=" + c.ship.bucket->uri() + ": " +
                             split.status().message());
  for (const auto& [key, given] : {std::pair{"ship-token", !link.token.empty()},
                                   std::pair{"ship-volume", !link.volume.empty()},
                                   std::pair{"ship-server-name", !link.server_name.empty()}}) {
    if (given)
      return Status::invalid(fmt::format(
          "{}= is for a log server; ship=s3:// takes S3 credentials from the environment or the "
          "AWS shared files",
          key));
  }
  // TLS to the endpoint is verified by the system's trust store, or ship-ca=.
  c.ship.s3.ca_file = link.ca_file;
  c.ship.s3.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(link.timeout);
  if (Status st = resolve_s3_options(&c.ship.s3); !st)
    return Status::invalid("ship=" + c.ship.bucket->uri() + ": " + st.message());
  c.volume.shipped = true;
  return Status::ok();
}

Status complete_shipping(ServeConfig& c) {
  const ShipOptions& link = c.ship.link;
  if (c.ship.bucket) return complete_bucket_shipping(c);
  for (const auto& [key, given] : {std::pair{"ship-endpoint", !c.ship.s3.endpoint.empty()},
                                   std::pair{"ship-region", !c.ship.s3.region.empty()},
                                   std::pair{"ship-profile", !c.ship.s3.profile.empty()}}) {
    if (given)
      return Status::invalid(
          fmt::format("{}= is for a bucket: it needs ship=s3://BUCKET/PREFIX", key));
  }
  if (link.host.empty()) {
    for (const auto& [key, given] : {std::pair{"ship-token", !link.token.empty()},
                                     std::pair{"ship-volume", !link.volume.empty()},
                                     std::pair{"ship-ca", !link.ca_file.empty()},
                                     std::pair{"ship-compress", c.have_ship_compress},
                                     std::pair{"ship-key", c.ship.form.key.has_value()}}) {
      if (given)
        return Status::invalid(
            fmt::format("{}= without ship=HOST:PORT: say where the log server is", key));
    }
    return Status::ok();
  }
  if (link.token.empty())
    return Status::invalid(
        "ship= needs ship-token=TOKEN (or ship-token=@FILE): the log server grants volumes by "
        "token");
  if (Status st = proto::check_token(link.token); !st)
    return Status::invalid("ship-token=: " + st.message());
  if (link.volume.empty())
    return Status::invalid(
        "ship= needs ship-volume=NAME: the name of this volume on the log server");
  c.volume.shipped = true;
  return Status::ok();
}

}  // namespace

Status set_serve_key(ServeConfig& config, std::string_view key, std::string_view value) {
  for (const auto& [name, parse] : key_table()) {
    if (name != key) continue;
    ServeConfig changed = config;
    if (Status st = parse(changed, value); !st)
      return Status::invalid(fmt::format("{}={}: {}", key, value, st.message()));
    config = std::move(changed);
    return Status::ok();
  }
  return Status::invalid(
      fmt::format("unknown parameter '{}'; see 'nbdkit rewind --help' for the keys", key));
}

Status complete_serve_config(ServeConfig& c, const Logger& logger) {
  if (c.view() && !c.metrics.empty())
    return Status::invalid(
        "metrics= counts what a live volume serves, journals and ships; a point-in-time view "
        "does none of that: drop it");
  if (c.view()) return complete_view(c);
  if (!c.view_keys.empty())
    return Status::invalid(
        "key= opens a sealed copy in a point-in-time view (with at=, seq= or mark=); a live "
        "volume's journal is not sealed: drop it (ship-key= seals what is shipped)");
  if (c.view_bucket)
    return Status::invalid(fmt::format(
        "journal={} serves a point in time read-only: give at=, seq= or mark= (a live volume's "
        "journal is a local directory)",
        c.view_bucket->uri()));
  if (c.have_image_reads)
    return Status::invalid(
        "image-reads= applies to a point-in-time view only (with at=, seq= or mark=); drop it");
  if (!c.have_image || !c.have_journal)
    return Status::invalid(
        fmt::format("missing parameter: {}; usage: nbdkit rewind image=DISK.img journal=DIR",
                    !c.have_image ? "image=DISK.img (the disk image to serve)"
                                  : "journal=DIR (where its journal lives)"));
  if (c.volume.journal_dir == c.volume.image_path)
    return Status::invalid(
        fmt::format("journal={} is the image itself; give a directory", c.volume.journal_dir));
  if (!c.have_compress_threads)
    c.volume.journal.compress_threads = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  REWIND_RETURN_IF_ERROR(complete_control(c, logger));
  REWIND_RETURN_IF_ERROR(complete_retention(c));
  return complete_shipping(c);
}

const char* const kServeKeysHelp =
    "image=DISK.img        (required) The disk image to serve.\n"
    "journal=DIR           (required) Its journal directory (created on first serve).\n"
    "flush-interval=DUR    Longest time a write waits before it is journaled (100ms).\n"
    "queue-max=SIZE        Bytes queued before writers wait (64M).\n"
    "segment-size=SIZE     Seal a journal segment at this size (256M).\n"
    "segment-age=DUR       Seal a journal segment at this age (10m).\n"
    "compress=off|zstd[:LEVEL]  Store written data in the journal zstd-compressed\n"
    "                      (LEVEL 1-19, default 1), by the flusher; data that does\n"
    "                      not compress is stored as it is (off).\n"
    "compress-threads=N    Threads that compress a large batch with compress=zstd\n"
    "                      (the number of CPUs, at most 4).\n"
    "control=PATH          Control socket for marks and status (DIR/control.sock).\n"
    "metrics=[HOST:]PORT   Serve Prometheus metrics at http://HOST:PORT/metrics\n"
    "                      (HOST 127.0.0.1 unless given; docs/METRICS.md).\n"
    "retain=DUR            Keep every write at least this long; fold older whole\n"
    "                      segments into the base snapshot (default: forever).\n"
    "retain-coarse=AGE:GRAN,...  After retain=, keep one state per GRAN (and every\n"
    "                      mark) up to AGE, e.g. 1d:1m,30d:1h; fold what is older\n"
    "                      than the last AGE into the base snapshot.\n"
    "journal-max=SIZE      Hard limit on the journal: past it, fold the oldest\n"
    "                      segments early, logging what history is given up.\n"
    "ship=HOST:PORT        Ship the journal to this rewind-server as it becomes\n"
    "                      durable (with ship-token= and ship-volume=).\n"
    "ship=s3://BUCKET/PREFIX  Ship it to S3-compatible object storage instead\n"
    "                      (credentials as the AWS tools find them).\n"
    "ship-endpoint=URL     The S3 endpoint (AWS_ENDPOINT_URL; default AWS's).\n"
    "ship-region=REGION    The S3 region (AWS_REGION; default us-east-1).\n"
    "ship-profile=NAME     The profile of ~/.aws/credentials and config (AWS_PROFILE).\n"
    "ship-token=TOKEN|@FILE  The token the log server grants this volume by.\n"
    "ship-volume=NAME      The volume's name on the log server.\n"
    "ship-ca=FILE          CA certificate (PEM) the server's must chain to; without\n"
    "                      it, TLS verified by the system's trust store, or plain\n"
    "                      TCP to a loopback address only.\n"
    "ship-server-name=NAME The name the server's certificate carries (HOST).\n"
    "ship-compress=zstd[:LEVEL]|off  Send to the log server (or, with ship-key=, the\n"
    "                      bucket) the written data the journal stores as is\n"
    "                      zstd-compressed (zstd: level 1).\n"
    "ship-key=@FILE        Seal (encrypt and authenticate) everything sent to the log\n"
    "                      server or the bucket with the key `rewind keygen FILE`\n"
    "                      made (to a bucket through JOURNAL/ship-spool).\n"
    "ship-rate=SIZE        Send at most SIZE bytes per second (default: no cap; the\n"
    "                      shipper backs off by itself when the link is congested).\n"
    "ship-timeout=DUR      A request to the server or the bucket that makes no\n"
    "                      progress this long fails, and is tried again (30s).\n"
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
    "                      everything from the journal (off).\n"
    "journal=s3://BUCKET/PREFIX\n"
    "                      With at=, seq= or mark=: serve that point of a volume's\n"
    "                      copy in a bucket (credentials, endpoint and region as the\n"
    "                      AWS tools find them), fetching what is read on demand.\n"
    "cache-size=SIZE       The local cache of such a view ($TMPDIR; 1G).\n"
    "key=@FILE             In such a view of a sealed copy (one shipped with\n"
    "                      ship-key=), its key file; once more for each key a\n"
    "                      rotation left in use.";

}  // namespace rwd
