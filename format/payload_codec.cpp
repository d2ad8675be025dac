#include "rewind/format/payload_codec.h"

#include <algorithm>
#include <charconv>
#include <memory>

#include <fmt/format.h>
#include <zstd.h>

#include "rewind/format/record.h"

namespace rwd {

using format::Codec;
using format::kCodecFrameEntrySize;
using format::kCodecFrameSize;

Result<Compression> parse_compression(const std::string& text) {
  if (text == "off") return Compression{};
  if (text == "zstd") return Compression{Codec::kZstd, kDefaultZstdLevel};
  constexpr std::string_view kPrefix = "zstd:";
  int level = 0;
  if (text.starts_with(kPrefix)) {
    const char* begin = text.data() + kPrefix.size();
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(begin, end, level);
    if (ec == std::errc() && p == end && p != begin && level >= 1 && level <= 19)
      return Compression{Codec::kZstd, level};
  }
  return Status::invalid("must be off, zstd or zstd:LEVEL with LEVEL 1 to 19");
}

std::string compression_name(const Compression& c) {
  if (c.codec == Codec::kNone) return "off";
  return fmt::format("zstd:{}", c.level);
}

PayloadEncoder::PayloadEncoder(Compression c) : c_(c) {
  if (c_.codec == Codec::kZstd) {
    cctx_ = ZSTD_createCCtx();
    if (cctx_ != nullptr)
      ZSTD_CCtx_setParameter(static_cast<ZSTD_CCtx*>(cctx_), ZSTD_c_compressionLevel, c_.level);
  }
}

PayloadEncoder::~PayloadEncoder() {
  ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_));
}

bool PayloadEncoder::encode(std::span<const uint8_t> data, std::vector<uint8_t>* out) {
  const bool encoded = try_encode(data, out);
  if (!encoded) out->clear();
  return encoded;
}

bool PayloadEncoder::try_encode(std::span<const uint8_t> data, std::vector<uint8_t>* out) {
  out->clear();
  if (c_.codec != Codec::kZstd || cctx_ == nullptr || data.empty()) return false;
  auto* cctx = static_cast<ZSTD_CCtx*>(cctx_);
  const uint64_t table = frame_table_size(data.size());
  const uint64_t frames = table / kCodecFrameEntrySize;
  // Worth storing only if it saves 1/16: the limit on every byte written so far.
  const uint64_t limit = data.size() - data.size() / 16;
  if (table >= limit) return false;
  out->resize(table + ZSTD_compressBound(std::min<size_t>(data.size(), kCodecFrameSize)));
  uint64_t used = table;
  for (uint64_t i = 0; i < frames; ++i) {
    const uint64_t at = i * kCodecFrameSize;
    const size_t n = std::min<uint64_t>(kCodecFrameSize, data.size() - at);
    const size_t bound = ZSTD_compressBound(n);
    if (out->size() < used + bound) out->resize(used + bound);
    const size_t got = ZSTD_compress2(cctx, out->data() + used, bound, data.data() + at, n);
    if (ZSTD_isError(got)) return false;
    // The first frame decides for the record: data that does not shrink there is
    // taken to be incompressible (random, or compressed already).
    if (i == 0 && got >= n - n / 16) return false;
    put_u32(out->data() + i * kCodecFrameEntrySize, static_cast<uint32_t>(got));
    used += got;
    if (used >= limit) return false;
  }
  out->resize(used);
  return true;
}

FrameSpan frames_of(uint64_t decoded_length, uint64_t at, uint64_t n) {
  FrameSpan s;
  s.first = static_cast<uint32_t>(at / kCodecFrameSize);
  s.last = static_cast<uint32_t>((at + std::max<uint64_t>(n, 1) - 1) / kCodecFrameSize);
  s.decoded_begin = uint64_t{s.first} * kCodecFrameSize;
  s.decoded_end = std::min<uint64_t>(uint64_t{s.last + 1} * kCodecFrameSize, decoded_length);
  return s;
}

namespace {
struct DctxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
  return dctx.get();
}
}  // namespace

uint64_t frame_table_size(uint64_t decoded_length) {
  return (decoded_length + kCodecFrameSize - 1) / kCodecFrameSize * kCodecFrameEntrySize;
}

Result<std::pair<uint64_t, uint64_t>> frame_bytes(std::span<const uint8_t> table,
                                                  uint64_t decoded_length, uint64_t stored_length,
                                                  const FrameSpan& span) {
  const uint64_t frames = frame_table_size(decoded_length) / kCodecFrameEntrySize;
  if (decoded_length == 0 || span.last >= frames || table.size() != frames * kCodecFrameEntrySize)
    return Status::invalid("frames asked for are outside the payload");
  // The table's sizes must add up to the rest of the payload.
  uint64_t pos = table.size(), begin = 0, end = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    if (i == span.first) begin = pos;
    pos += get_u32(table.data() + i * kCodecFrameEntrySize);
    if (i == span.last) end = pos;
  }
  if (pos != stored_length)
    return Status::corruption(fmt::format(
        "compressed payload's frame table says {} bytes, the payload has {}", pos, stored_length));
  return std::pair{begin, end};
}

Status decode_frame_bytes(std::span<const uint8_t> table, std::span<const uint8_t> bytes,
                          uint64_t decoded_length, const FrameSpan& span, std::span<uint8_t> out) {
  if (out.size() != span.decoded_end - span.decoded_begin)
    return Status::invalid("frames asked for do not fill the buffer");
  ZSTD_DCtx* dctx = thread_dctx();
  if (dctx == nullptr) return Status::io_error("cannot allocate a zstd context", ENOMEM);
  uint64_t src = 0;
  uint8_t* dst = out.data();
  for (uint64_t i = span.first; i <= span.last; ++i) {
    const uint64_t size = get_u32(table.data() + i * kCodecFrameEntrySize);
    const uint64_t n = std::min<uint64_t>(kCodecFrameSize, decoded_length - i * kCodecFrameSize);
    if (src + size > bytes.size()) return Status::invalid("frame bytes given are too short");
    const size_t got = ZSTD_decompressDCtx(dctx, dst, n, bytes.data() + src, size);
    if (ZSTD_isError(got))
      return Status::corruption(
          fmt::format("compressed frame {} does not decode: {}", i, ZSTD_getErrorName(got)));
    if (got != n)
      return Status::corruption(
          fmt::format("compressed frame {} decodes to {} bytes instead of {}", i, got, n));
    src += size;
    dst += n;
  }
  return Status::ok();
}

Status decode_frames(std::span<const uint8_t> stored, uint64_t decoded_length,
                     const FrameSpan& span, std::span<uint8_t> out) {
  const uint64_t table = frame_table_size(decoded_length);
  if (stored.size() < table) return Status::corruption("compressed payload shorter than its table");
  const std::span<const uint8_t> t = stored.first(table);
  auto where = frame_bytes(t, decoded_length, stored.size(), span);
  if (!where) return where.status();
  return decode_frame_bytes(t, stored.subspan(where->first, where->second - where->first),
                            decoded_length, span, out);
}

Status decode_payload(Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> out) {
  if (codec == Codec::kNone) {
    if (stored.size() != out.size()) return Status::corruption("payload length mismatch");
    std::copy(stored.begin(), stored.end(), out.begin());
    return Status::ok();
  }
  return decode_frames(stored, out.size(), frames_of(out.size(), 0, out.size()), out);
}

uint64_t max_stored_length(Codec codec, uint64_t decoded_length) {
  // encode() stores a record compressed only when that saves 1/16.
  return codec == Codec::kNone ? decoded_length : decoded_length - decoded_length / 16;
}

}  // namespace rwd
