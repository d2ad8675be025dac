#include "rewind/format/record.h"

#include <fmt/format.h>

#include "rewind/base/hash.h"
#include "rewind/format/payload_codec.h"

namespace rwd {

using format::RecordType;

uint64_t payload_checksum(std::span<const uint8_t> payload) {
  return XXH3_64bits(payload.data(), payload.size());
}

const char* record_type_name(RecordType t) {
  switch (t) {
    case RecordType::kNone:
      return "NONE";
    case RecordType::kWrite:
      return "WRITE";
    case RecordType::kZero:
      return "ZERO";
    case RecordType::kTrim:
      return "TRIM";
    case RecordType::kMark:
      return "MARK";
  }
  return "UNKNOWN";
}

void encode_header(const RecordHeader& h, uint8_t* out) {
  out[8] = static_cast<uint8_t>(h.type);
  out[9] = h.flags;
  out[10] = static_cast<uint8_t>(h.codec);
  out[11] = static_cast<uint8_t>(h.seal);
  put_u32(out + 12, h.payload_length);
  put_u64(out + 16, h.seq);
  put_u64(out + 24, h.time_ns);
  put_u64(out + 32, h.offset);
  put_u64(out + 40, h.length);
  put_u64(out + 48, h.payload_checksum);
  put_u64(out, XXH3_64bits(out + format::kRecordChecksummedOffset,
                           format::kRecordHeaderSize - format::kRecordChecksummedOffset));
}

bool is_zero_header(const uint8_t* in) {
  for (size_t i = 0; i < format::kRecordHeaderSize; ++i)
    if (in[i] != 0) return false;
  return true;
}

Status validate_header(const RecordHeader& h) {
  if (h.seal != format::Seal::kNone) {
    if (static_cast<uint8_t>(h.seal) > format::kMaxSeal)
      return Status::corruption(fmt::format("unknown seal {}", static_cast<int>(h.seal)));
    if (h.payload_length < format::kSealTrailerSize)
      return Status::corruption(fmt::format("sealed {} record with a payload of {} bytes",
                                            record_type_name(h.type), h.payload_length));
    // The body is what the record would be unsealed.
    RecordHeader body = h;
    body.seal = format::Seal::kNone;
    body.payload_length -= format::kSealTrailerSize;
    return validate_header(body);
  }
  auto type = static_cast<uint8_t>(h.type);
  if (type == 0 || type > format::kMaxRecordType)
    return Status::corruption(fmt::format("unknown record type {}", type));
  if ((h.flags & ~format::kKnownFlags) != 0)
    return Status::corruption(fmt::format("unknown record flags {:#x}", h.flags));
  if (h.offset + h.length < h.offset) return Status::corruption("record range overflows");
  if (static_cast<uint8_t>(h.codec) > format::kMaxCodec)
    return Status::corruption(fmt::format("unknown payload codec {}", static_cast<int>(h.codec)));
  if (h.codec != format::Codec::kNone) {
    const uint64_t table = frame_table_size(h.length);
    if (h.type != RecordType::kWrite || (h.flags & format::kFlagSuperseded) || h.length == 0 ||
        h.length > format::kMaxPayload || h.payload_length <= table ||
        h.payload_length > max_stored_length(h.codec, h.length))
      return Status::corruption(
          fmt::format("{} record of length {} with a compressed payload of {} bytes",
                      record_type_name(h.type), h.length, h.payload_length));
    return Status::ok();
  }
  if ((h.flags & format::kFlagCompacted) && h.type == RecordType::kMark)
    return Status::corruption("compacted MARK record");
  if (h.flags & format::kFlagSuperseded) {
    if (h.type == RecordType::kMark || h.length == 0 ||
        h.payload_length != format::kSupersededPayload)
      return Status::corruption(
          fmt::format("superseded {} record of length {} with payload length {}",
                      record_type_name(h.type), h.length, h.payload_length));
    return Status::ok();
  }
  switch (h.type) {
    case RecordType::kWrite:
      if (h.length == 0 || h.length > format::kMaxPayload || h.payload_length != h.length)
        return Status::corruption(fmt::format("WRITE record of length {} with payload length {}",
                                              h.length, h.payload_length));
      break;
    case RecordType::kZero:
    case RecordType::kTrim:
      if (h.length == 0 || h.payload_length != 0)
        return Status::corruption(fmt::format("{} record of length {} with payload length {}",
                                              record_type_name(h.type), h.length,
                                              h.payload_length));
      break;
    case RecordType::kMark:
      if (h.offset != 0 || h.length != 0 || h.payload_length == 0 ||
          h.payload_length > format::kMaxMarkPayload)
        return Status::corruption(fmt::format("MARK record with name length {}", h.payload_length));
      break;
    case RecordType::kNone:
      break;
  }
  return Status::ok();
}

Status decode_header(const uint8_t* in, RecordHeader* out) {
  uint64_t stored = get_u64(in);
  uint64_t computed = XXH3_64bits(in + format::kRecordChecksummedOffset,
                                  format::kRecordHeaderSize - format::kRecordChecksummedOffset);
  if (stored != computed) return Status::corruption("record header checksum mismatch");
  RecordHeader h;
  h.codec = static_cast<format::Codec>(in[10]);
  h.seal = static_cast<format::Seal>(in[11]);
  h.type = static_cast<RecordType>(in[8]);
  h.flags = in[9];
  h.payload_length = get_u32(in + 12);
  h.seq = get_u64(in + 16);
  h.time_ns = get_u64(in + 24);
  h.offset = get_u64(in + 32);
  h.length = get_u64(in + 40);
  h.payload_checksum = get_u64(in + 48);
  REWIND_RETURN_IF_ERROR(validate_header(h));
  *out = h;
  return Status::ok();
}

MarkPayload mark_payload_of(const RecordHeader& h, const uint8_t* stored) {
  size_t n = h.payload_length;
  if (h.seal != format::Seal::kNone)
    n = n >= format::kSealTrailerSize ? n - format::kSealTrailerSize : 0;
  const std::string_view all(reinterpret_cast<const char*>(stored), n);
  const size_t nl = all.find('\n');
  MarkPayload p;
  p.name = std::string(all.substr(0, nl));
  if (nl == std::string_view::npos) return p;
  // "group=ID volumes=VOLUME,VOLUME,...": anything else is not a group line, and the
  // mark is then a plain one.
  std::string_view line = all.substr(nl + 1);
  const size_t sp = line.find(' ');
  if (!line.starts_with("group=") || sp == std::string_view::npos ||
      !line.substr(sp + 1).starts_with("volumes="))
    return p;
  std::string_view vols = line.substr(sp + 1 + 8);
  std::vector<std::string> volumes;
  while (!vols.empty()) {
    const size_t comma = vols.find(',');
    volumes.emplace_back(vols.substr(0, comma));
    if (comma == std::string_view::npos) break;
    vols.remove_prefix(comma + 1);
  }
  p.group = std::string(line.substr(6, sp - 6));
  p.volumes = std::move(volumes);
  return p;
}

std::string mark_name_of(const RecordHeader& h, const uint8_t* stored) {
  return mark_payload_of(h, stored).name;
}

std::string encode_mark_payload(const MarkPayload& p) {
  if (p.group.empty()) return p.name;
  return fmt::format("{}\ngroup={} volumes={}", p.name, p.group, fmt::join(p.volumes, ","));
}

Status check_mark_name(std::string_view name) {
  if (name.empty() || name.size() > format::kMaxMarkName)
    return Status::invalid(
        fmt::format("mark name '{}' must be 1 to {} bytes", name, format::kMaxMarkName));
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return Status::invalid(fmt::format(
          "mark name '{}' has whitespace or a control character; use e.g. before-upgrade", name));
  }
  return Status::ok();
}

}  // namespace rwd
