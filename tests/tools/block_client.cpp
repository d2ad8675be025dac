// rewind-test-blocks: a libnbd client for the kill -9 test (tests/e2e/test-plugin-kill9-blocks.sh).
//
//   rewind-test-blocks write URI FIRST COUNT LOG
//     Writes 4 KiB blocks FIRST, FIRST+1, ... (block N at offset N*4096, its bytes a
//     function of N) with 8 requests in flight and a FLUSH after every 16. After each
//     FLUSH completes it appends "N" to LOG: every block up to N is acknowledged as
//     durable. Stops at COUNT blocks or at the first error (the server was killed);
//     prints the highest block it sent.
//   rewind-test-blocks check URI FLUSHED SENT
//     Every block up to FLUSHED must read back exactly; each block after it, up to
//     SENT, must be either exactly right or untouched (zeroes), never anything else.
//   rewind-test-blocks pairs URI_A URI_B BLOCKS STOPFILE
//     For the group mark test (tests/e2e/test-group-mark.sh): writes 4 KiB block N of A,
//     waits for its acknowledgement, then writes block N of B saying so; N goes round
//     0..BLOCKS-1, and each block starts with "round R block N" (R counts the rounds
//     from 1). Stops once STOPFILE exists; prints the pairs written.
#include <libnbd.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

constexpr uint64_t kBlock = 4096;

void fill_block(uint64_t n, uint8_t* out) {
  for (uint64_t i = 0; i < kBlock / 8; ++i) {
    uint64_t v = (n * 0x9E3779B97F4A7C15ull) ^ (i << 52) ^ n;
    std::memcpy(out + i * 8, &v, 8);
  }
}

int die(nbd_handle* h, const char* what) {
  std::fprintf(stderr, "rewind-test-blocks: %s: %s\n", what, nbd_get_error());
  if (h != nullptr) nbd_close(h);
  return 1;
}

nbd_handle* connect(const char* uri) {
  nbd_handle* h = nbd_create();
  if (h == nullptr) return nullptr;
  if (nbd_connect_uri(h, uri) == -1) {
    std::fprintf(stderr, "rewind-test-blocks: connect %s: %s\n", uri, nbd_get_error());
    nbd_close(h);
    return nullptr;
  }
  return h;
}

int write_blocks(const char* uri, uint64_t first, uint64_t count, const char* log_path) {
  nbd_handle* h = connect(uri);
  if (h == nullptr) return 1;
  FILE* log = std::fopen(log_path, "a");
  if (log == nullptr) return die(h, "cannot open the log");
  struct InFlight {
    int64_t cookie;
    uint64_t block;  // for a flush: the highest block it covers
    bool flush;
    std::vector<uint8_t> buf;
  };
  std::deque<InFlight> inflight;
  uint64_t next = first, sent = first == 0 ? 0 : first - 1;
  // Completes the oldest request; a completed FLUSH is logged at once.
  auto complete_oldest = [&]() -> bool {
    InFlight& f = inflight.front();
    int done;
    while ((done = nbd_aio_command_completed(h, static_cast<uint64_t>(f.cookie))) == 0)
      if (nbd_poll(h, -1) == -1) return false;
    if (done == -1) return false;  // the request failed
    if (f.flush) {
      std::fprintf(log, "%" PRIu64 "\n", f.block);
      std::fflush(log);
    }
    inflight.pop_front();
    return true;
  };
  while (next < first + count) {
    InFlight w{0, next, false, std::vector<uint8_t>(kBlock)};
    fill_block(next, w.buf.data());
    w.cookie = nbd_aio_pwrite(h, w.buf.data(), kBlock, next * kBlock, NBD_NULL_COMPLETION, 0);
    if (w.cookie == -1) break;
    sent = next;
    inflight.push_back(std::move(w));
    if ((next + 1) % 16 == 0) {
      // A FLUSH covers the writes completed before it is sent: complete them first.
      while (!inflight.empty())
        if (!complete_oldest()) goto out;
      int64_t c = nbd_aio_flush(h, NBD_NULL_COMPLETION, 0);
      if (c == -1) break;
      inflight.push_back(InFlight{c, next, true, {}});
    }
    ++next;
    while (inflight.size() > 8)
      if (!complete_oldest()) goto out;
  }
  while (!inflight.empty())
    if (!complete_oldest()) break;
out:
  std::printf("%" PRIu64 "\n", sent);
  std::fclose(log);
  nbd_close(h);
  return 0;
}

int check_blocks(const char* uri, uint64_t flushed, uint64_t sent) {
  nbd_handle* h = connect(uri);
  if (h == nullptr) return 1;
  std::vector<uint8_t> want(kBlock), got(kBlock), zero(kBlock, 0);
  uint64_t lost = 0, wrong = 0, present_unflushed = 0;
  for (uint64_t n = 1; n <= sent; ++n) {
    if (nbd_pread(h, got.data(), kBlock, n * kBlock, 0) == -1) return die(h, "read");
    fill_block(n, want.data());
    if (got == want) {
      if (n > flushed) present_unflushed++;
    } else if (n <= flushed) {
      if (lost++ < 5) std::fprintf(stderr, "block %" PRIu64 " (flushed) is wrong\n", n);
    } else if (got != zero) {
      if (wrong++ < 5) std::fprintf(stderr, "block %" PRIu64 " (unflushed) is torn\n", n);
    }
  }
  nbd_close(h);
  std::printf("blocks 1..%" PRIu64 " flushed and intact; %" PRIu64 " of the %" PRIu64
              " unflushed present\n",
              flushed, present_unflushed, sent - flushed);
  return lost == 0 && wrong == 0 ? 0 : 1;
}

int write_pairs(const char* uri_a, const char* uri_b, uint64_t blocks, const char* stop) {
  nbd_handle* a = connect(uri_a);
  nbd_handle* b = connect(uri_b);
  if (a == nullptr || b == nullptr) return 1;
  std::vector<uint8_t> buf(kBlock);
  uint64_t pairs = 0;
  for (uint64_t round = 1;; ++round) {
    for (uint64_t n = 0; n < blocks; ++n, ++pairs) {
      if (n % 64 == 0 && access(stop, F_OK) == 0) {
        std::printf("%" PRIu64 "\n", pairs);
        nbd_close(a);
        nbd_close(b);
        return 0;
      }
      std::memset(buf.data(), 0, kBlock);
      std::snprintf(reinterpret_cast<char*>(buf.data()), 64, "round %" PRIu64 " block %" PRIu64,
                    round, n);
      if (nbd_pwrite(a, buf.data(), kBlock, n * kBlock, 0) == -1) return die(a, "write A");
      if (nbd_pwrite(b, buf.data(), kBlock, n * kBlock, 0) == -1) return die(b, "write B");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "write")
    return write_blocks(argv[2], std::strtoull(argv[3], nullptr, 10),
                        std::strtoull(argv[4], nullptr, 10), argv[5]);
  if (argc == 5 && std::string(argv[1]) == "check")
    return check_blocks(argv[2], std::strtoull(argv[3], nullptr, 10),
                        std::strtoull(argv[4], nullptr, 10));
  if (argc == 6 && std::string(argv[1]) == "pairs")
    return write_pairs(argv[2], argv[3], std::strtoull(argv[4], nullptr, 10), argv[5]);
  std::fprintf(stderr,
               "usage: rewind-test-blocks write URI FIRST COUNT LOG | check URI FLUSHED SENT | "
               "pairs URI_A URI_B BLOCKS STOPFILE\n");
  return 2;
}
