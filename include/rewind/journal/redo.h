// Redo: applies journal records to an image file in seq order. Used by start-up
// recovery (records after the last checkpoint) and by the simple replay to the end.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "rewind/base/file.h"
#include "rewind/format/manifest.h"
#include "rewind/format/record.h"

namespace rwd {

// Applies one record to `image`: WRITE writes its payload, ZERO zeroes the range,
// TRIM punches a hole (reads as zeroes, as replay treats it), MARK does nothing.
Status apply_record(const File& image, const RecordHeader& h, std::span<const uint8_t> payload);

// Applies every record with after_seq < seq in the segments of `m` to `image`,
// reading and verifying each; an open segment is read up to its last whole record.
// Does not sync the image.
Status redo_records(const std::string& journal_dir, const Manifest& m, uint64_t after_seq,
                    const File& image);

}  // namespace rwd
