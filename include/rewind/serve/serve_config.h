// What `nbdkit rewind KEY=VALUE ...` asks for (README.md, "Serving a volume"): the
// plugin's keys, parsed one at a time as nbdkit hands them over, then cross-checked
// once all are given. Nothing here touches the journal or the image; a bad key or a bad
// combination is one error that names the key and says what to give instead.
#pragma once

#include <string>
#include <string_view>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/seal.h"
#include "rewind/history/retention.h"
#include "rewind/replay/target.h"
#include "rewind/ship/shipper.h"
#include "rewind/volume/volume.h"

namespace rwd {

struct ServeConfig {
  // The live volume: image= and journal=, absolute.
  VolumeOptions volume;
  // control=: the control socket (default: in the journal directory; empty after
  // complete() when there is none, because the path is too long for a socket).
  std::string control;
  RetentionPolicy retention;
  // metrics=: where the Prometheus endpoint listens (metrics_endpoint.h); empty: none.
  std::string metrics;
  // ship=: empty link.host when the volume is not shipped.
  ShipperOptions ship;
  // A read-only point-in-time view (at=, seq= or mark=) instead of the live volume:
  // served from journal= alone.
  std::string at, seq, mark;
  // The point they name, resolved by complete_serve_config (a relative at= from the
  // time of that call).
  Target target;
  // In a view: whether what the image still holds of it is read from the image.
  bool image_reads = true;
  // A view of a volume in a bucket (journal=s3://BUCKET/PREFIX; volume.journal_dir
  // then holds the URI), read through a local cache of at most cache_size bytes.
  std::optional<S3Location> view_bucket;
  S3Options view_s3;
  uint64_t cache_size = 1ull << 30;
  // key=@FILE: the keys of a view of a sealed copy (format/seal.h).
  Keyring view_keys;

  bool have_image = false, have_journal = false, have_image_reads = false;
  bool have_ship_compress = false, have_compress_threads = false;

  bool view() const { return !at.empty() || !seq.empty() || !mark.empty(); }
  const std::string& journal_dir() const { return volume.journal_dir; }
};

// Applies one KEY=VALUE. Relative paths are taken from the current directory (image=
// and ship-ca= must exist; no path may be empty); ship-token=@FILE reads the token from FILE. An
// error names the key and the value ("queue-max=1K: must be between ...") and leaves `config` as it
// was.
Status set_serve_key(ServeConfig& config, std::string_view key, std::string_view value);

// Once every key is given: checks that they fit together and fills in what follows
// from them (the target of a view, the default control socket,
// VolumeOptions::shipped). A control socket
// path too long for a UNIX socket is dropped with a warning through `logger`: the
// disk is served without marks rather than not at all.
Status complete_serve_config(ServeConfig& config, const Logger& logger);

// The keys, one per line with what each does, for `nbdkit rewind --help`.
extern const char* const kServeKeysHelp;

}  // namespace rwd
