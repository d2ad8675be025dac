// The control socket of a running volume: a UNIX stream socket taking one-line
// requests from the `rewind` tool (docs/CONTROL.md):
//   MARK <name>   -> OK <seq> <time_ns>      insert a durable mark
//   STATUS        -> OK <json>               volume state
// and answering ERR <message> otherwise. Requests are at most kMaxRequest bytes; a
// longer one, or a connection idle for kIdleTimeout, is answered (if possible) and
// closed. Other connections are not affected.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "rewind/base/log.h"
#include "rewind/base/status.h"

namespace rwd {

class ControlServer {
 public:
  static constexpr size_t kMaxRequest = 1024;
  static constexpr std::chrono::seconds kIdleTimeout{10};

  // Handles one request line (without the newline); returns the answer line.
  using Handler = std::function<std::string(const std::string& request)>;

  // Binds `path` (a stale socket file is replaced; a live server there is an error)
  // and serves on a thread of its own until stop().
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, Handler handler,
                                                      Logger logger);
  ~ControlServer();
  // Stops accepting, closes every connection, joins the thread, removes the socket.
  void stop();

 private:
  struct Impl;
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sends one request line and returns the answer line (without the newline).
Result<std::string> control_request(const std::string& path, const std::string& request,
                                    std::chrono::milliseconds timeout);

}  // namespace rwd
