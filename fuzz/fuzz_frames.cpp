// Fuzzes the network frame decoder and every message decoder with arbitrary bytes, fed
// in pieces of arbitrary sizes: every input is cut into frames and decoded, or refused
// with an error, never a crash, a hang, a read out of bounds or an allocation past the
// frame limit.
#include <cstdint>
#include <cstdlib>

#include "rewind/ship/protocol.h"

using namespace rwd::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the size of the pieces the stream arrives in.
  const size_t piece = 1 + data[0] % 64;
  FrameDecoder d;
  for (size_t at = 1; at < size; at += piece) {
    d.feed(std::span<const uint8_t>(data + at, std::min(piece, size - at)));
    Frame f;
    for (;;) {
      auto got = d.next(&f);
      if (!got.is_ok() || !*got) break;
      switch (f.type) {
        case MessageType::kHello:
          (void)decode_hello(f);
          break;
        case MessageType::kWelcome:
          (void)decode_welcome(f);
          break;
        case MessageType::kError:
          (void)decode_error(f);
          break;
        case MessageType::kBaseBegin:
          (void)decode_base_begin(f);
          break;
        case MessageType::kBaseData:
          (void)decode_base_data(f);
          break;
        case MessageType::kBaseZero:
          (void)decode_base_zero(f);
          break;
        case MessageType::kRecords:
          (void)decode_records(f);
          break;
        case MessageType::kAck:
          (void)decode_ack(f);
          break;
        case MessageType::kPing:
        case MessageType::kPong:
          (void)decode_ping(f);
          break;
        case MessageType::kInfo:
          (void)decode_info(f);
          break;
        case MessageType::kReport:
          (void)decode_report(f);
          break;
        case MessageType::kRestore:
          (void)decode_restore(f);
          break;
        case MessageType::kView:
          (void)decode_view(f);
          break;
        case MessageType::kExtent:
          (void)decode_extent(f);
          break;
        case MessageType::kEnd:
          (void)decode_end(f);
          break;
        case MessageType::kFetch:  // carries no payload
          break;
      }
    }
  }
  // A frame is never accepted from bytes it did not hold whole.
  if (d.pending() > size) std::abort();
  return 0;
}
