// The sending side of journal shipping (docs/PROTOCOL.md, "Shipping"): connects to
// rewind-server, learns what it holds of the volume, and sends the rest of a journal,
// the base snapshot first if the server lacks it, waiting for each acknowledgement.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "rewind/log.h"
#include "rewind/manifest.h"
#include "rewind/protocol.h"
#include "rewind/status.h"

namespace rwd {

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

// Ships the stopped journal at `journal_dir` (every sealed segment) to the server.
// Returns the server's last acknowledgement; an ERROR from the server is a status
// with its message, prefixed with the error's name.
Result<proto::Ack> ship_journal(const std::string& journal_dir, const ShipOptions& opts,
                                const Logger& logger);

}  // namespace rwd
