// rewind-server: the log server that takes journals from many machines (server.h).
#include <iostream>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "rewind/base/units.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/server.h"
#include "rewind/ship/tokens.h"

int main(int argc, char** argv) {
  rwd::ServerOptions o;
  std::string listen = "127.0.0.1:7420";
  std::string idle = "30s";
  std::string hello = "10s";
  CLI::App app{"rewind-server: takes rewind journals from many machines into a store"};
  app.add_option("--listen", listen, "HOST:PORT to listen on (PORT 0: any free port)")
      ->capture_default_str();
  app.add_option("--store", o.store_dir,
                 "Directory of the store (one journal per volume), or s3://BUCKET/PREFIX (each "
                 "volume's copy under PREFIX/NAME); required");
  app.add_option("--cache", o.cache_dir,
                 "With --store s3://: a local directory for the spools of volumes being received "
                 "(a base snapshot while it arrives, and an open segment) and readers' caches");
  std::string s3_timeout = "30s";
  std::string read_cache = "256M";
  app.add_option("--s3-endpoint", o.s3.endpoint,
                 "With --store s3://: the endpoint URL (default: $AWS_ENDPOINT_URL_S3, "
                 "$AWS_ENDPOINT_URL, the profile's, else AWS's for the region); credentials as "
                 "the AWS tools find them ($AWS_ACCESS_KEY_ID, ~/.aws/credentials, $AWS_PROFILE)");
  app.add_option("--s3-region", o.s3.region,
                 "With --store s3://: the region (default: $AWS_REGION, the profile's, else "
                 "us-east-1)");
  app.add_option("--s3-profile", o.s3.profile,
                 "With --store s3://: the profile of the shared files (default: $AWS_PROFILE, "
                 "else default)");
  app.add_option("--s3-ca", o.s3.ca_file,
                 "With --store s3://: a CA bundle (PEM) to verify the endpoint's certificate by "
                 "(default: $AWS_CA_BUNDLE, else the system's)");
  app.add_option("--s3-timeout", s3_timeout,
                 "With --store s3://: fail a request that moves no byte this long")
      ->capture_default_str();
  app.add_option("--read-cache-size", read_cache,
                 "With --store s3://: the bytes of a volume each reader keeps fetched")
      ->capture_default_str();
  app.add_option("--tls-cert", o.tls_cert, "TLS certificate chain (PEM)");
  app.add_option("--tls-key", o.tls_key, "TLS private key (PEM)");
  app.add_option("--tokens", o.tokens_file,
                 "Token file: 'TOKEN VOLUME...' per line (r:VOLUME: read only); reloaded on "
                 "SIGHUP; required");
  app.add_flag("--insecure-loopback", o.insecure_loopback,
               "Serve plain TCP, without TLS (only on a loopback address)");
  app.add_option("--threads", o.threads, "Worker threads (default: one per CPU)");
  app.add_option("--idle-timeout", idle, "Disconnect a peer silent this long")
      ->capture_default_str();
  app.add_option("--hello-timeout", hello,
                 "Disconnect a peer that has not finished the TLS handshake and its HELLO this "
                 "long after connecting (bytes trickling in do not extend it)")
      ->capture_default_str();
  app.add_option("--max-connections", o.max_connections, "Connections open at once, in all")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-per-address", o.max_per_address,
                 "Connections open at once from one IP address")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--metrics", o.metrics,
                 "[HOST:]PORT to serve Prometheus metrics on, at /metrics (HOST 127.0.0.1 "
                 "unless given; PORT 0: any free port)");
  bool hash_token = false;
  app.add_flag("--hash-token", hash_token,
               "Read a token from stdin and print the sha256:HEX form a token file may hold "
               "instead of the token itself; then exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fmt::print(stderr, "rewind-server: {}; see 'rewind-server --help'\n", e.what());
    return 2;
  }
  if (hash_token) {
    std::string token;
    std::getline(std::cin, token);
    if (!token.empty() && token.back() == '\r') token.pop_back();
    if (rwd::Status st = rwd::proto::check_token(token); !st) {
      fmt::print(stderr, "rewind-server: --hash-token: {}\n", st.message());
      return 2;
    }
    fmt::print("{}\n", rwd::TokenTable::hashed_form(token));
    return 0;
  }
  const size_t colon = listen.rfind(':');
  unsigned long port = 0;
  if (colon == std::string::npos || colon + 1 == listen.size() ||
      std::sscanf(listen.c_str() + colon + 1, "%lu", &port) != 1 || port > 65535) {
    fmt::print(stderr, "rewind-server: --listen {}: give HOST:PORT, e.g. 127.0.0.1:7420\n", listen);
    return 2;
  }
  o.listen_host = listen.substr(0, colon);
  if (o.listen_host.size() > 2 && o.listen_host.front() == '[' && o.listen_host.back() == ']')
    o.listen_host = o.listen_host.substr(1, o.listen_host.size() - 2);
  o.listen_port = static_cast<uint16_t>(port);
  auto idle_ns = rwd::parse_duration(idle);
  if (!idle_ns || idle_ns->count() <= 0) {
    fmt::print(stderr, "rewind-server: --idle-timeout {}: give a duration, e.g. 30s\n", idle);
    return 2;
  }
  o.idle_timeout = *idle_ns;
  auto hello_ns = rwd::parse_duration(hello);
  if (!hello_ns || hello_ns->count() <= 0) {
    fmt::print(stderr, "rewind-server: --hello-timeout {}: give a duration, e.g. 10s\n", hello);
    return 2;
  }
  o.hello_timeout = *hello_ns;
  auto s3_ns = rwd::parse_duration(s3_timeout);
  if (!s3_ns || s3_ns->count() <= 0) {
    fmt::print(stderr, "rewind-server: --s3-timeout {}: give a duration, e.g. 30s\n", s3_timeout);
    return 2;
  }
  o.s3.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*s3_ns);
  auto read_bytes = rwd::parse_size(read_cache);
  if (!read_bytes || *read_bytes < (16u << 20)) {
    fmt::print(stderr,
               "rewind-server: --read-cache-size {}: give a size of 16M or more, e.g. 256M\n",
               read_cache);
    return 2;
  }
  o.read_cache = *read_bytes;
  auto logger = [](rwd::LogLevel level, const std::string& m) {
    fmt::print(stderr, "rewind-server: {}{}\n", level >= rwd::LogLevel::kWarning ? "warning: " : "",
               m);
  };
  auto server = rwd::Server::create(o, logger);
  if (!server) {
    fmt::print(stderr, "rewind-server: {}\n", server.status().message());
    return 2;
  }
  fmt::print(stderr, "rewind-server: listening on {}:{}{}\n", o.listen_host, (*server)->port(),
             o.tls_cert.empty() ? " (plain TCP, loopback only)" : " (TLS)");
  if (const std::string url = (*server)->metrics_url(); !url.empty())
    fmt::print(stderr, "rewind-server: metrics at {}\n", url);
  (*server)->run();
  return 0;
}
