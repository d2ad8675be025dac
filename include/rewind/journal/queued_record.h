// A record on its way into the journal: its header and its payload, as the write
// queue holds it and Journal::append writes it.
#pragma once

#include <cstdint>
#include <memory>

#include "rewind/format/record.h"

namespace rwd {

using Payload = std::shared_ptr<const uint8_t[]>;

struct QueuedRecord {
  RecordHeader header;  // type, seq, time, offset, length, payload length and checksum
  Payload payload;      // WRITE data or MARK name; null otherwise
  // The payload's buffer holds, after its payload_length bytes, the record's chunk
  // checksums for the segment index (chunk_sums_of; Volume::write computes them).
  bool chunk_sums_follow = false;
};

}  // namespace rwd
