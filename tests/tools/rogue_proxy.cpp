// A lying log server for the security tests: a plain-TCP proxy on 127.0.0.1 in front
// of a real rewind-server that passes every frame through, except that it adds N to
// the durable_seq of each ACK (`ack N`) or of each WELCOME (`welcome N`), as a rogue
// or broken server would. Prints the port it listens on, then one line per lie.
//
//   rewind-test-rogue UPSTREAM_PORT ack|welcome N
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "rewind/ship/protocol.h"

namespace {

using rwd::proto::MessageType;

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The client's bytes go upstream as they are.
void pass_through(int from, int to) {
  std::array<uint8_t, 65536> buf;
  for (ssize_t n; (n = ::read(from, buf.data(), buf.size())) > 0;)
    if (!write_all(to, buf.data(), static_cast<size_t>(n))) break;
  ::shutdown(to, SHUT_WR);
}

// The server's frames come back with the lie told.
void lie(int from, int to, bool acks, uint64_t n) {
  rwd::proto::FrameDecoder dec;
  std::array<uint8_t, 65536> buf;
  for (ssize_t got; (got = ::read(from, buf.data(), buf.size())) > 0;) {
    dec.feed(std::span<const uint8_t>(buf.data(), static_cast<size_t>(got)));
    rwd::proto::Frame f;
    for (auto more = dec.next(&f); more && *more; more = dec.next(&f)) {
      std::vector<uint8_t> payload = f.payload;
      if (acks && f.type == MessageType::kAck) {
        auto a = rwd::proto::decode_ack(f);
        std::printf("ACK seq %llu told as %llu\n", static_cast<unsigned long long>(a->durable_seq),
                    static_cast<unsigned long long>(a->durable_seq + n));
        a->durable_seq += n;
        payload = rwd::proto::encode(*a);
      } else if (!acks && f.type == MessageType::kWelcome) {
        auto w = rwd::proto::decode_welcome(f);
        std::printf("WELCOME seq %llu told as %llu\n",
                    static_cast<unsigned long long>(w->durable_seq),
                    static_cast<unsigned long long>(w->durable_seq + n));
        w->durable_seq += n;
        payload = rwd::proto::encode(*w);
      }
      std::fflush(stdout);
      const std::vector<uint8_t> frame = rwd::proto::encode_frame(f.type, payload);
      if (!write_all(to, frame.data(), frame.size())) return;
    }
  }
  ::shutdown(to, SHUT_WR);
}

int connect_upstream(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::strcmp(argv[2], "ack") != 0 && std::strcmp(argv[2], "welcome") != 0)) {
    std::fprintf(stderr, "usage: %s UPSTREAM_PORT ack|welcome N\n", argv[0]);
    return 2;
  }
  const auto upstream = static_cast<uint16_t>(std::strtoul(argv[1], nullptr, 10));
  const bool acks = std::strcmp(argv[2], "ack") == 0;
  const uint64_t n = std::strtoull(argv[3], nullptr, 10);
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 16) != 0 ||
      ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("rewind-test-rogue: listen");
    return 1;
  }
  std::printf("listening on %u\n", ntohs(a.sin_port));
  std::fflush(stdout);
  for (;;) {
    const int client = ::accept(lfd, nullptr, nullptr);
    if (client < 0) continue;
    const int server = connect_upstream(upstream);
    if (server < 0) {
      ::close(client);
      continue;
    }
    std::thread([client, server] { pass_through(client, server); }).detach();
    std::thread([client, server, acks, n] { lie(server, client, acks, n); }).detach();
  }
}
