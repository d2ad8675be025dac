// Fuzzes the store's append path, what rewind-server does with the messages of a peer
// that holds a shipping token: BASE_BEGIN, BASE_DATA, BASE_ZERO and RECORDS, applied
// to a StoredVolume in a scratch store. The input is a script. Most steps build a
// well-formed message from the input's bytes (with valid checksums, so that the
// fuzzer reaches the store's own checks: gaps, resends, overlaps, conflicting bases,
// offsets past the image, records before the base is whole); the others hand raw bytes
// to the decoders. Each message goes through a frame and its decoder as on the wire.
// Every step is acknowledged or refused, never a crash; what was acknowledged
// survives closing and reopening the volume; a volume with a whole base verifies.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "rewind/format/record.h"
#include "rewind/replay/restore.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/store.h"

namespace {

using rwd::proto::MessageType;

// The script's bytes, read as numbers; zeroes once it runs out.
struct Script {
  const uint8_t* p;
  size_t n;
  bool done() const { return n == 0; }
  uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  uint64_t small(uint64_t limit) { return limit == 0 ? 0 : (u8() | uint64_t{u8()} << 8) % limit; }
  std::vector<uint8_t> bytes(size_t want) {
    const size_t k = std::min(want, n);
    std::vector<uint8_t> out(p, p + k);
    out.resize(want, 0x5a);
    p += k;
    n -= k;
    return out;
  }
};

rwd::proto::Frame framed(MessageType type, const std::vector<uint8_t>& payload) {
  rwd::proto::FrameDecoder dec;
  dec.feed(rwd::proto::encode_frame(type, payload));
  rwd::proto::Frame f;
  auto got = dec.next(&f);
  if (!got || !*got) std::abort();  // a frame this side encoded must decode
  return f;
}

// What the server's apply_to_store does with one frame.
rwd::Result<rwd::proto::Ack> apply(rwd::StoredVolume& v, const rwd::proto::Frame& f) {
  namespace proto = rwd::proto;
  if (f.type == MessageType::kBaseBegin) {
    auto b = proto::decode_base_begin(f);
    if (!b) return b.status();
    return v.begin_base(*b);
  }
  if (f.type == MessageType::kBaseData) {
    auto d = proto::decode_base_data(f);
    if (!d) return d.status();
    return v.base_data(d->offset, d->data);
  }
  if (f.type == MessageType::kBaseZero) {
    auto z = proto::decode_base_zero(f);
    if (!z) return z.status();
    return v.base_zero(z->offset, z->length);
  }
  auto r = proto::decode_records(f);
  if (!r) return r.status();
  return v.append(*r);
}

// One step of the script: the frame a peer would send.
rwd::proto::Frame next_frame(Script& s, const rwd::proto::Welcome& held) {
  namespace proto = rwd::proto;
  const uint64_t image = held.image_size != 0 ? held.image_size : 64 * 1024;
  switch (s.u8() % 6) {
    case 0: {
      proto::BaseBegin b;
      b.volume_id.fill(static_cast<uint8_t>(1 + s.u8() % 2));  // two volumes, to conflict
      b.image_size = (1 + s.small(16)) * 4096;
      b.base_seq = s.small(4);
      b.base_time_ns = 1000 + s.small(1000);
      b.created_ns = 1000;
      return framed(MessageType::kBaseBegin, proto::encode(b));
    }
    case 1: {
      const uint64_t at = s.u8() % 4 == 0 ? s.small(image + 8192) : held.base_bytes;
      const auto data = s.bytes(1 + s.small(16384));
      return framed(MessageType::kBaseData, proto::encode(proto::BaseData{at, data}));
    }
    case 2: {
      const uint64_t at = s.u8() % 4 == 0 ? s.small(image + 8192) : held.base_bytes;
      return framed(MessageType::kBaseZero,
                    proto::encode(proto::BaseZero{at, 1 + s.small(image + 4096)}));
    }
    case 3:
    case 4: {
      // Records from about the next seq (a resend, the next, or a gap).
      uint64_t seq = held.durable_seq + 1 + s.small(4);
      seq = seq > 2 ? seq - 2 : 1;
      const size_t count = 1 + s.small(4);
      std::vector<rwd::RecordHeader> hs;
      std::vector<std::vector<uint8_t>> data;
      for (size_t i = 0; i < count; ++i) {
        rwd::RecordHeader h;
        h.type = static_cast<rwd::format::RecordType>(1 + s.u8() % rwd::format::kMaxRecordType);
        h.seq = seq + i;
        h.time_ns = 5000 + h.seq * 10 + s.small(5);
        h.offset = s.small(image / 512 + 4) * 512;
        h.length = (1 + s.small(16)) * 512;
        if (h.type == rwd::format::RecordType::kWrite)
          data.push_back(s.bytes(h.length));
        else if (h.type == rwd::format::RecordType::kMark) {
          h.offset = h.length = 0;
          data.push_back(s.bytes(1 + s.small(8)));
        } else
          data.emplace_back();
        h.payload_length = static_cast<uint32_t>(data.back().size());
        h.payload_checksum = rwd::payload_checksum(data.back());
        hs.push_back(h);
      }
      std::vector<std::span<const uint8_t>> ps(data.begin(), data.end());
      return framed(MessageType::kRecords, proto::encode_records(hs, ps));
    }
    default: {
      // Raw bytes for any of the four, as a peer may send them.
      static constexpr MessageType kTypes[] = {MessageType::kBaseBegin, MessageType::kBaseData,
                                               MessageType::kBaseZero, MessageType::kRecords};
      const MessageType t = kTypes[s.u8() % 4];
      return framed(t, s.bytes(s.small(256)));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // In memory (tmpfs): the store syncs every message.
  char tmpl[] = "/dev/shm/rewind-fuzz-store-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) std::abort();
  const std::string store = tmpl;
  {
    auto v = rwd::StoredVolume::open(store, "vol", true, {});
    if (!v) std::abort();
    Script s{data, size};
    uint64_t acked_seq = 0, acked_base = 0;
    for (int step = 0; step < 64 && !s.done(); ++step) {
      const rwd::proto::Frame f = next_frame(s, (*v)->state());
      auto ack = apply(**v, f);
      if (ack) {
        acked_seq = ack->durable_seq;
        acked_base = ack->base_bytes;
      }
    }
    // What was acknowledged is still there after a close and a reopen.
    if (!(*v)->close()) std::abort();
    v->reset();
    auto again = rwd::StoredVolume::open(store, "vol", false, {});
    if (!again) std::abort();
    const rwd::proto::Welcome held = (*again)->state();
    if (held.durable_seq < acked_seq || held.base_bytes < acked_base) std::abort();
    if ((*again)->has_base()) {
      rwd::VerifyReport report;
      if (!rwd::verify_journal(store + "/vol", "", &report, {})) std::abort();
    }
  }
  std::filesystem::remove_all(store);
  return 0;
}
