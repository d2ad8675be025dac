// The message codec's building blocks, shared by the files that encode and decode
// the protocol's messages (protocol.cpp, read_messages.cpp): little-endian writers
// and readers of a payload, and the errors a malformed message gets.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "rewind/base/status.h"
#include "rewind/ship/protocol.h"

namespace rwd::proto::codec {

// Appends little-endian fields to a message payload.
class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str8(std::string_view s) {
    u8(static_cast<uint8_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void str16(std::string_view s) {
    u16(static_cast<uint16_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

// Reads little-endian fields from a message payload; ok() turns false at the first
// field that runs past its end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  uint8_t u8() { return static_cast<uint8_t>(get(1)); }
  uint16_t u16() { return static_cast<uint16_t>(get(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get(4)); }
  uint64_t u64() { return get(8); }
  std::span<const uint8_t> bytes(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string str8() { return str(u8()); }
  std::string str16() { return str(u16()); }
  bool ok() const { return ok_; }
  bool at_end() const { return ok_ && pos_ == in_.size(); }
  size_t pos() const { return pos_; }

 private:
  uint64_t get(size_t n) {
    auto b = bytes(n);
    uint64_t v = 0;
    for (size_t i = b.size(); i-- > 0;) v = (v << 8) | b[i];
    return v;
  }
  std::string str(size_t n) {
    auto b = bytes(n);
    return std::string(b.begin(), b.end());
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

inline Status malformed(MessageType t, const std::string& why) {
  return Status::invalid(fmt::format("malformed {} message: {}", message_type_name(t), why));
}

// Text a peer sent, made one line for a log: control characters become '?'.
inline void make_one_line(std::string* text) {
  for (char& c : *text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
}

inline Status expect_type(const Frame& f, MessageType want) {
  if (f.type == want) return Status::ok();
  if (want == MessageType::kPing && f.type == MessageType::kPong) return Status::ok();
  return Status::invalid(fmt::format("expected a {} message, got {}", message_type_name(want),
                                     message_type_name(f.type)));
}

// The whole payload was read, and nothing more is there.
inline Status finished(const Reader& r, MessageType t) {
  if (!r.ok()) return malformed(t, "it ends early");
  if (!r.at_end()) return malformed(t, "bytes follow its last field");
  return Status::ok();
}

}  // namespace rwd::proto::codec
