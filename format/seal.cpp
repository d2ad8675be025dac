#include "rewind/format/seal.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <sodium.h>

#include "rewind/base/file.h"
#include "rewind/base/hex.h"

namespace rwd {

namespace {

static_assert(kKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(format::kSealNonceSize == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(format::kSealTagSize == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(format::kSealKeyIdSize == kKeyIdBytes);

// "id (file), id (file)": the keys a reader was given, for an error.
std::string keys_text(const Keyring& keys) {
  std::string text;
  for (const SealKey& k : keys.keys())
    text += fmt::format("{}{} ({})", text.empty() ? "" : ", ", key_id_hex(k.id), k.file);
  return text;
}

constexpr std::string_view kKeyLinePrefix = "rewind-key-v1 ";
constexpr char kKeyIdContext[] = "rewind key id v1";
constexpr char kAadContext[16] = {'r', 'e', 'w', 'i', 'n', 'd', ' ', 's',
                                  'e', 'a', 'l', ' ', 'v', '1', 0,   0};

void init_sodium() {
  // sodium_init() is safe to call from several threads and more than once; it fails
  // only when the system's random generator cannot be opened.
  static const int ok = sodium_init();
  if (ok < 0) {
    std::fputs("rewind: libsodium could not initialise (no system random generator)\n", stderr);
    std::abort();
  }
}

std::array<uint8_t, kKeyIdBytes> key_id_of(const std::array<uint8_t, kKeyBytes>& key) {
  init_sodium();
  std::array<uint8_t, kKeyIdBytes> id{};
  crypto_generichash(id.data(), id.size(), reinterpret_cast<const uint8_t*>(kKeyIdContext),
                     sizeof kKeyIdContext - 1, key.data(), key.size());
  return id;
}

// Whether a record's body is encrypted (a WRITE's data) or only authenticated.
bool body_encrypted(const RecordHeader& h) {
  return h.type == format::RecordType::kWrite && !(h.flags & format::kFlagSuperseded);
}

// The associated data: the volume, every header field that gives the record its
// meaning (not the batch-start flag, a hint to local recovery that a store may set
// anew, nor the checksums), and a body in the clear.
std::vector<uint8_t> associated_data(const VolumeId& volume, const RecordHeader& h,
                                     uint32_t body_length, std::span<const uint8_t> clear_body) {
  std::vector<uint8_t> a(sizeof kAadContext + volume.size() + 40 + clear_body.size());
  uint8_t* p = a.data();
  std::memcpy(p, kAadContext, sizeof kAadContext);
  p += sizeof kAadContext;
  std::memcpy(p, volume.data(), volume.size());
  p += volume.size();
  p[0] = static_cast<uint8_t>(h.type);
  p[1] = static_cast<uint8_t>(h.flags & ~format::kFlagBatchStart);
  p[2] = static_cast<uint8_t>(h.codec);
  p[3] = static_cast<uint8_t>(h.seal);
  put_u32(p + 4, body_length);
  put_u64(p + 8, h.seq);
  put_u64(p + 16, h.time_ns);
  put_u64(p + 24, h.offset);
  put_u64(p + 32, h.length);
  std::copy(clear_body.begin(), clear_body.end(), p + 40);
  return a;
}

}  // namespace

std::string key_id_hex(std::span<const uint8_t, kKeyIdBytes> id) {
  return hex_of(id);
}

Result<SealKey> generate_key_file(const std::string& path) {
  init_sodium();
  SealKey k;
  randombytes_buf(k.key.data(), k.key.size());
  k.id = key_id_of(k.key);
  k.file = path;
  std::string hex = hex_of(k.key);
  const std::string text = fmt::format(
      "# rewind key {}: keep it secret, and keep a copy of it somewhere else.\n"
      "# A copy sealed with it (ship-key=) cannot be read without it.\n"
      "{}{}\n",
      key_id_hex(k.id), kKeyLinePrefix, hex);
  sodium_memzero(hex.data(), hex.size());
  auto f = create_new_file(path, O_WRONLY);
  if (!f) return f.status();
  Status st =
      f->pwrite_full(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0);
  if (st) st = f->sync();
  if (st) st = f->close();
  if (st) st = sync_dir(parent_dir(path));
  if (!st) {
    ::unlink(path.c_str());
    return st;
  }
  return k;
}

Result<SealKey> load_key_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return Status::io_error(fmt::format("key file {}: cannot open it", path), errno);
  File f(fd, path);
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return Status::io_error(fmt::format("key file {}: cannot stat it", path), errno);
  if (!S_ISREG(st.st_mode))
    return Status::invalid(
        fmt::format("key file {}: not a regular file; give the file `rewind keygen` made", path));
  if ((st.st_mode & 077) != 0)
    return Status::invalid(fmt::format(
        "key file {}: its group or others may read it (mode {:04o}); run chmod 600 {} and keep "
        "it private",
        path, st.st_mode & 07777, path));
  if (st.st_size > 4096)
    return Status::invalid(
        fmt::format("key file {}: {} bytes, not a key `rewind keygen` made", path, st.st_size));
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  if (Status r = f.pread_full(bytes, 0); !r) return r;
  std::string text(bytes.begin(), bytes.end());
  sodium_memzero(bytes.data(), bytes.size());
  SealKey k;
  k.file = path;
  bool found = false;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.empty() || line.front() == '#') continue;
    if (found || !line.starts_with(kKeyLinePrefix) ||
        !parse_hex(line.substr(kKeyLinePrefix.size()), k.key, true)) {
      sodium_memzero(text.data(), text.size());
      return Status::invalid(fmt::format(
          "key file {}: not a key `rewind keygen` made (one line 'rewind-key-v1' and 64 hex "
          "digits expected)",
          path));
    }
    found = true;
  }
  sodium_memzero(text.data(), text.size());
  if (!found)
    return Status::invalid(
        fmt::format("key file {}: holds no key; give the file `rewind keygen` made", path));
  k.id = key_id_of(k.key);
  return k;
}

const SealKey* Keyring::find(std::span<const uint8_t, kKeyIdBytes> id) const {
  for (const SealKey& k : keys_)
    if (std::equal(k.id.begin(), k.id.end(), id.begin())) return &k;
  return nullptr;
}

void seal_record(const SealKey& key, const VolumeId& volume, RecordHeader* h,
                 std::span<const uint8_t> body, std::vector<uint8_t>* out) {
  init_sodium();
  h->seal = format::Seal::kXChaCha20Poly1305;
  const auto body_length = static_cast<uint32_t>(body.size());
  const bool encrypt = body_encrypted(*h);
  out->resize(body.size() + format::kSealTrailerSize);
  uint8_t* trailer = out->data() + body.size();
  uint8_t* nonce = trailer + format::kSealKeyIdSize;
  uint8_t* tag = nonce + format::kSealNonceSize;
  std::copy(key.id.begin(), key.id.end(), trailer);
  randombytes_buf(nonce, format::kSealNonceSize);
  const std::vector<uint8_t> ad =
      associated_data(volume, *h, body_length, encrypt ? std::span<const uint8_t>() : body);
  if (encrypt) {
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out->data(), tag, nullptr, body.data(),
                                                        body.size(), ad.data(), ad.size(), nullptr,
                                                        nonce, key.key.data());
  } else {
    std::copy(body.begin(), body.end(), out->begin());
    uint8_t none = 0;  // libsodium wants pointers even for no bytes
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(&none, tag, nullptr, &none, 0, ad.data(),
                                                        ad.size(), nullptr, nonce, key.key.data());
  }
  h->payload_length = static_cast<uint32_t>(out->size());
  h->payload_checksum = payload_checksum(*out);
}

std::array<uint8_t, kKeyIdBytes> sealed_key_id(std::span<const uint8_t> stored) {
  std::array<uint8_t, kKeyIdBytes> id{};
  if (stored.size() >= format::kSealTrailerSize)
    std::copy_n(stored.end() - format::kSealTrailerSize, kKeyIdBytes, id.begin());
  return id;
}

Status open_record(const Keyring& keys, const VolumeId& volume, const RecordHeader& h,
                   std::span<const uint8_t> stored, std::vector<uint8_t>* body,
                   RecordHeader* unsealed) {
  init_sodium();
  if (h.seal != format::Seal::kXChaCha20Poly1305 || stored.size() != h.payload_length ||
      stored.size() < format::kSealTrailerSize)
    return Status::corruption("not a sealed record");
  const size_t body_length = stored.size() - format::kSealTrailerSize;
  const uint8_t* trailer = stored.data() + body_length;
  const auto id = sealed_key_id(stored);
  const SealKey* key = keys.find(id);
  if (key == nullptr) {
    const std::string have = keys_text(keys);
    return Status::invalid(
        fmt::format("sealed with key {}, which {}; give the key file it was sealed with (--key)",
                    key_id_hex(id), have.empty() ? "no --key gave" : "is not " + have));
  }
  const uint8_t* nonce = trailer + format::kSealKeyIdSize;
  const uint8_t* tag = nonce + format::kSealNonceSize;
  const bool encrypt = body_encrypted(h);
  const std::span<const uint8_t> clear = stored.first(body_length);
  const std::vector<uint8_t> ad = associated_data(volume, h, static_cast<uint32_t>(body_length),
                                                  encrypt ? std::span<const uint8_t>() : clear);
  body->resize(body_length);
  int rc = 0;
  if (encrypt) {
    rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(body->data(), nullptr, clear.data(),
                                                             clear.size(), tag, ad.data(),
                                                             ad.size(), nonce, key->key.data());
  } else {
    uint8_t none = 0;  // libsodium wants pointers even for no bytes
    rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
        &none, nullptr, &none, 0, tag, ad.data(), ad.size(), nonce, key->key.data());
    if (rc == 0) std::copy(clear.begin(), clear.end(), body->begin());
  }
  if (rc != 0) {
    body->clear();
    return Status::corruption(fmt::format(
        "sealed record does not authenticate with key {}: changed after sealing, moved from "
        "another seq, or from another volume",
        key_id_hex(id)));
  }
  RecordHeader u = h;
  u.seal = format::Seal::kNone;
  u.payload_length = static_cast<uint32_t>(body_length);
  u.payload_checksum = payload_checksum(*body);
  *unsealed = u;
  return Status::ok();
}

}  // namespace rwd

namespace rwd {

namespace {

constexpr char kBaseAadContext[16] = {'r', 'e', 'w', 'i', 'n', 'd', ' ', 'b',
                                      'a', 's', 'e', ' ', 'v', '1', 0,   0};
enum : uint8_t { kChunkZero = 0, kChunkRaw = 1, kChunkZstd = 2 };

std::array<uint8_t, 16 + format::kVolumeIdSize + 8 + 8 + 8 + 1 + 4> base_associated_data(
    const VolumeId& volume, uint64_t base_seq, uint64_t index, uint64_t chunk_length, uint8_t kind,
    uint32_t body_length) {
  std::array<uint8_t, 16 + format::kVolumeIdSize + 8 + 8 + 8 + 1 + 4> a{};
  uint8_t* p = a.data();
  std::memcpy(p, kBaseAadContext, 16);
  std::memcpy(p + 16, volume.data(), volume.size());
  p += 16 + volume.size();
  put_u64(p, base_seq);
  put_u64(p + 8, index);
  put_u64(p + 16, chunk_length);
  p[24] = kind;
  put_u32(p + 25, body_length);
  return a;
}

}  // namespace

uint64_t sealed_base_size(uint64_t image_size) {
  return sealed_chunk_count(image_size) * kSealedSlotBytes;
}

void seal_base_chunk(const SealKey& key, const VolumeId& volume, uint64_t base_seq, uint64_t index,
                     std::span<const uint8_t> data, PayloadEncoder* compress,
                     std::vector<uint8_t>* out) {
  init_sodium();
  std::vector<uint8_t> packed;
  std::span<const uint8_t> body = data;
  uint8_t kind = kChunkRaw;
  if (std::all_of(data.begin(), data.end(), [](uint8_t b) { return b == 0; })) {
    kind = kChunkZero;
    body = {};
  } else if (compress != nullptr && compress->encode(data, &packed)) {
    kind = kChunkZstd;
    body = packed;
  }
  const auto body_length = static_cast<uint32_t>(body.size());
  const auto ad = base_associated_data(volume, base_seq, index, data.size(), kind, body_length);
  out->assign(kSealedSlotHeader + body.size() + format::kSealTrailerSize, 0);
  uint8_t* p = out->data();
  put_u32(p, body_length);
  p[4] = kind;
  uint8_t* trailer = p + kSealedSlotHeader + body.size();
  uint8_t* nonce = trailer + format::kSealKeyIdSize;
  uint8_t* tag = nonce + format::kSealNonceSize;
  std::copy(key.id.begin(), key.id.end(), trailer);
  // The synthetic nonce: a keyed hash of everything the seal covers.
  crypto_generichash_state st;
  crypto_generichash_init(&st, key.key.data(), key.key.size(), format::kSealNonceSize);
  crypto_generichash_update(&st, ad.data(), ad.size());
  crypto_generichash_update(&st, body.data(), body.size());
  crypto_generichash_final(&st, nonce, format::kSealNonceSize);
  uint8_t none = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
      body.empty() ? &none : p + kSealedSlotHeader, tag, nullptr,
      body.empty() ? &none : body.data(), body.size(), ad.data(), ad.size(), nullptr, nonce,
      key.key.data());
}

Status open_base_chunk(const Keyring& keys, const VolumeId& volume, uint64_t base_seq,
                       uint64_t index, std::span<const uint8_t> slot, std::span<uint8_t> out) {
  init_sodium();
  auto bad = [&](const std::string& why) {
    return Status::corruption(fmt::format("sealed base chunk {} (bytes {}..{} of the volume): {}",
                                          index, index * kSealedChunkBytes,
                                          index * kSealedChunkBytes + out.size(), why));
  };
  if (slot.size() < kSealedSlotHeader + format::kSealTrailerSize) return bad("cut off");
  if (std::all_of(slot.begin(), slot.begin() + kSealedSlotHeader + format::kSealTrailerSize,
                  [](uint8_t b) { return b == 0; }))
    return bad("its slot holds no seal (emptied or never written)");
  const uint32_t body_length = get_u32(slot.data());
  const uint8_t kind = slot[4];
  if (slot[5] != 0 || slot[6] != 0 || slot[7] != 0 || kind > kChunkZstd ||
      body_length > slot.size() - kSealedSlotHeader - format::kSealTrailerSize ||
      (kind == kChunkZero) != (body_length == 0) ||
      (kind == kChunkRaw && body_length != out.size()))
    return bad("its slot header is damaged");
  const uint8_t* body = slot.data() + kSealedSlotHeader;
  const uint8_t* trailer = body + body_length;
  std::array<uint8_t, kKeyIdBytes> id{};
  std::copy_n(trailer, kKeyIdBytes, id.begin());
  const SealKey* key = keys.find(id);
  if (key == nullptr) {
    const std::string have = keys_text(keys);
    return Status::invalid(fmt::format(
        "the base snapshot is sealed with key {}, which {}; give the key file it was sealed with",
        key_id_hex(id), have.empty() ? "no key given is" : "is not " + have));
  }
  const uint8_t* nonce = trailer + format::kSealKeyIdSize;
  const uint8_t* tag = nonce + format::kSealNonceSize;
  const auto ad = base_associated_data(volume, base_seq, index, out.size(), kind, body_length);
  std::vector<uint8_t> plain(body_length);
  uint8_t none = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
          body_length == 0 ? &none : plain.data(), nullptr, body_length == 0 ? &none : body,
          body_length, tag, ad.data(), ad.size(), nonce, key->key.data()) != 0)
    return bad(fmt::format(
        "does not authenticate with key {}: changed, moved from another place, or of another "
        "volume",
        key_id_hex(id)));
  switch (kind) {
    case kChunkZero:
      std::fill(out.begin(), out.end(), uint8_t{0});
      break;
    case kChunkRaw:
      std::copy(plain.begin(), plain.end(), out.begin());
      break;
    default:
      if (Status st = decode_payload(format::Codec::kZstd, plain, out); !st)
        return bad(st.message());
  }
  return Status::ok();
}

}  // namespace rwd
