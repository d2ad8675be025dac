// rewind-server: takes volumes' journals over the network (docs/PROTOCOL.md) from
// many machines into a store (store.h), each host with a token that grants it only
// its own volumes (tokens.h).
//
// One Boost.Asio io_context, run by a pool of threads; each connection is a coroutine
// on a strand of its own, so connections never block each other's protocol. TLS is
// required unless the server listens on a loopback address with `insecure_loopback`.
// A peer that sends nothing for `idle_timeout` (or stalls in a TLS handshake) is
// disconnected; a malformed, oversized or unexpected frame gets an ERROR and a close;
// neither touches other connections.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/ship/s3_client.h"

namespace rwd {

struct ServerOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7420;  // 0: any free port (see Server::port())
  // A directory (store.h), or s3://BUCKET/PREFIX (bucket_store.h) with `cache_dir`
  // and the S3 settings in `s3` (the rest from the AWS conventions).
  std::string store_dir;
  std::string cache_dir;
  S3Options s3;
  uint64_t read_cache = 256ull << 20;  // bytes a reader of a bucket store keeps fetched
  std::string tls_cert, tls_key;       // PEM files; both or neither
  std::string tokens_file;
  bool insecure_loopback = false;  // allow plain TCP, on a loopback address only
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(30);
  // From accept to an accepted HELLO (the TLS handshake included): one deadline that
  // bytes trickling in do not extend.
  std::chrono::nanoseconds hello_timeout = std::chrono::seconds(10);
  unsigned threads = 0;            // 0: one per CPU
  unsigned max_connections = 256;  // open at once, in all
  unsigned max_per_address = 16;   // open at once from one IP address
  // --metrics [HOST:]PORT: Prometheus' text at /metrics (metrics_endpoint.h); empty: none.
  std::string metrics;
};

class Server {
 public:
  // Checks the options, loads the tokens, binds the address.
  static Result<std::unique_ptr<Server>> create(const ServerOptions& opts, Logger logger);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port bound (the one given, or the one the system chose for 0).
  uint16_t port() const;
  // Where --metrics serves (empty: nowhere).
  std::string metrics_url() const;
  // Serves until stop(), SIGINT or SIGTERM; SIGHUP reloads the token file.
  void run();
  void stop();
  // Reads the token file again; keeps the old table if the new one is bad.
  Status reload_tokens();

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwd
