// rewind-test-ship: ships a stopped journal to rewind-server, for the end-to-end tests
// (tests/e2e/test-ship.sh).
//
//   rewind-test-ship JOURNAL HOST PORT VOLUME TOKEN [CA_FILE]
//
// Prints "acked seq N base B" (what the server acknowledged last) and exits 0, or
// prints the error and exits 1. With CA_FILE the connection is TLS, verified against
// it (the server's name: HOST).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rewind/ship/ship_client.h"

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr, "usage: rewind-test-ship JOURNAL HOST PORT VOLUME TOKEN [CA_FILE]\n");
    return 2;
  }
  rwd::ShipOptions o;
  o.host = argv[2];
  o.port = static_cast<uint16_t>(std::strtoul(argv[3], nullptr, 10));
  o.volume = argv[4];
  o.token = argv[5];
  if (argc == 7) o.ca_file = argv[6];
  o.timeout = std::chrono::seconds(10);
  auto ack = rwd::ship_journal(argv[1], o, {});
  if (!ack) {
    std::fprintf(stderr, "rewind-test-ship: %s\n", ack.status().message().c_str());
    return 1;
  }
  std::printf("acked seq %llu base %llu\n", static_cast<unsigned long long>(ack->durable_seq),
              static_cast<unsigned long long>(ack->base_bytes));
  return 0;
}
