// The sending side of journal shipping (docs/PROTOCOL.md, "Shipping"): connects to
// rewind-server, learns what it holds of the volume, and sends the rest of a journal,
// the base snapshot first if the server lacks it, waiting for each acknowledgement.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/seal.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/target.h"
#include "rewind/ship/protocol.h"

namespace rwd {

// The link to a rewind-server: where, which volume, the token, TLS.
struct ShipOptions {
  std::string host;
  uint16_t port = 7420;
  std::string volume;
  std::string token;
  // TLS: the CA (PEM) the server's certificate must chain to, and the name it must
  // carry (default: host). Empty ca_file: plain TCP (a server with
  // --insecure-loopback).
  std::string ca_file;
  std::string server_name;
  std::chrono::nanoseconds timeout = std::chrono::seconds(30);
  uint32_t records_per_frame_bytes = 4u << 20;  // RECORDS frames of about this size
};

// The BASE_BEGIN that announces the base snapshot of the volume `m` describes.
proto::BaseBegin base_begin_of(const Manifest& m);

// The next run of a base snapshot of `size` bytes from `at`: zeroes (a hole, or a
// chunk that reads as all zero) go as their length only; data as at most
// proto::kMaxBaseChunk bytes, read into *data.
struct BaseRun {
  bool zero = false;
  uint64_t length = 0;
};
Result<BaseRun> next_base_run(const File& base, uint64_t at, uint64_t size,
                              std::vector<uint8_t>* data);

// The runs of a base snapshot as it is shipped: as it is, or, with a key (ship-key=),
// in its sealed form (seal.h): each slot's used bytes as data, the rest of it as
// zeroes. Sealing is deterministic, so a run sent again after a broken link holds the
// same bytes.
class ShippedBaseRuns {
 public:
  ShippedBaseRuns(const File& base, const Manifest& m, const SealKey* key);
  uint64_t size() const { return size_; }
  // The next run from `at` (< size()), its data into *data.
  Result<BaseRun> next(uint64_t at, std::vector<uint8_t>* data);
  // Where to go on after the run at `at`, from the receiver's acknowledgement that it
  // holds `base_bytes`: an error when it took nothing or more than the base has.
  Result<uint64_t> went_on(uint64_t at, uint64_t base_bytes) const;

 private:
  const File& base_;
  const Manifest& m_;
  const SealKey* key_;
  uint64_t size_;
  PayloadEncoder compress_{Compression{format::Codec::kZstd, kDefaultZstdLevel}};
  uint64_t slot_index_ = UINT64_MAX;  // of slot_
  std::vector<uint8_t> slot_, plain_;
};

// What a copy holds of the volume (a rewind-server's or a bucket spool's Welcome),
// judged against the local journal (manifest `m`, newest durable seq) before anything
// is sent. `where` names the copy in messages ("the server's volume 'db1'"), and
// `elsewhere` says how to ship the volume to a copy of its own ("give it another
// ship-volume=").
struct CopyPlan {
  bool send_base = false;  // the copy lacks the whole base: send it first
  uint64_t after_seq = 0;  // then the records after this seq
  std::string warning;     // the copy's base is in the clear and records go sealed, or
                           // the reverse
};
Result<CopyPlan> plan_copy(const proto::Welcome& w, const Manifest& m, uint64_t durable_seq,
                           bool sealed, std::string_view where, std::string_view elsewhere);

// Ships the stopped journal at `journal_dir` (every sealed segment) to the server.
// Returns the server's last acknowledgement; an ERROR from the server is a status
// with its message, prefixed with the error's name.
Result<proto::Ack> ship_journal(const std::string& journal_dir, const ShipOptions& opts,
                                const Logger& logger);

// A log server's address, "HOST:PORT" or "[IPv6]:PORT" (brackets removed in *host);
// "HOST" alone when `port_required` is false, leaving *port as it is. An error says
// what is wrong ("no host", "no port", "bad port") and changes nothing.
Status parse_host_port(std::string_view text, bool port_required, std::string* host,
                       uint16_t* port);

// Reading a volume from a log server (docs/PROTOCOL.md, "Reading"), for `rewind
// restore`, `info` and `log` on a rewind://HOST[:PORT]/VOLUME URI.
bool is_remote_uri(std::string_view text);
// Fills host, port (7420 if not given) and volume of `*opts` from the URI.
Status parse_remote_uri(std::string_view uri, ShipOptions* opts);

// What `rewind info` (scan false) or `rewind log` (scan true) shows of the volume.
Result<JournalReport> remote_report(const ShipOptions& opts, bool scan);

// Fetches the volume as the server stores it (FETCH: a sealed copy, which the server
// cannot read) into the new directory `dir` (a store's volume directory, which
// `rewind` reads as a journal with the volume's keys). On error `dir` is removed.
Status remote_fetch(const ShipOptions& opts, const std::string& dir);

struct RemoteRestore {
  proto::ViewInfo view;
  proto::End end;
  uint64_t wire_bytes = 0;  // received, frame headers included
};
// Writes the volume at `target` to the file `out`: a temporary beside it, filled with
// the server's data runs (runs of zeroes are left sparse), synced, then renamed to
// OUT. On any error the temporary is removed and OUT is untouched.
Result<RemoteRestore> remote_restore(const ShipOptions& opts, const Target& target,
                                     const std::string& out, const RestoreOptions& ro);

}  // namespace rwd
