// Sealed records: encrypted and authenticated with a key only the volume's owner holds
// (docs/FORMAT.md, "Sealed records"; docs/SECURITY.md, "Encrypted copies"), so that a
// log server or a bucket keeps a copy it cannot read and cannot change unnoticed.
//
// A sealed record keeps its header readable (a store resolves targets and checks
// continuity without the key) and ends its payload with a 48-byte trailer: the key's
// id, a random 24-byte nonce and the 16-byte tag of XChaCha20-Poly1305 (libsodium).
// What comes before the trailer, the body, is the unsealed payload: a WRITE's bytes
// (as its codec stores them) encrypted, anything else (a mark's name, a superseded
// record's seq) in the clear. The tag authenticates the body together with the
// volume's id and every header field that gives the record its meaning, so a changed
// byte anywhere, or a record moved to another seq or volume, fails to open.
//
// Nonces are drawn at random from the system's generator: 192 bits make a repeat
// negligible (below 2^-96 after 2^48 records under one key), and no counter has to
// survive crashes, restarts or two machines shipping with the same key.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/format.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/segment.h"

namespace rwd {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kKeyIdBytes = 8;

// A key of a key file (`rewind keygen`): its 32 bytes and its id, a keyed hash of
// it that names it in records and errors without revealing it.
struct SealKey {
  std::array<uint8_t, kKeyBytes> key{};
  std::array<uint8_t, kKeyIdBytes> id{};
  std::string file;  // where it was read from, for errors
};
std::string key_id_hex(std::span<const uint8_t, kKeyIdBytes> id);

// Creates the key file `path` (which must not exist), private to this user (0600),
// with a new random key; returns it.
Result<SealKey> generate_key_file(const std::string& path);
// Reads a key file. Refused when it is not a regular file, when its group or others
// may read it ("chmod 600"), or when it is not one `rewind keygen` wrote.
Result<SealKey> load_key_file(const std::string& path);

// The keys a reader may open sealed records with: the current one first, older ones
// (from before a rotation) after it.
class Keyring {
 public:
  Keyring() = default;
  explicit Keyring(std::vector<SealKey> keys) : keys_(std::move(keys)) {}
  bool empty() const { return keys_.empty(); }
  void add(SealKey key) { keys_.push_back(std::move(key)); }
  const SealKey* find(std::span<const uint8_t, kKeyIdBytes> id) const;
  const std::vector<SealKey>& keys() const { return keys_; }

 private:
  std::vector<SealKey> keys_;
};

// Seals a record of volume `volume` whose unsealed payload is `body` (as the header
// describes it without a seal): sets h->seal, payload_length and payload_checksum,
// and writes the stored payload into *out.
void seal_record(const SealKey& key, const VolumeId& volume, RecordHeader* h,
                 std::span<const uint8_t> body, std::vector<uint8_t>* out);

// Opens a sealed record's stored payload (its payload checksum already checked):
// writes the unsealed payload into *body and sets *unsealed to the header as it was
// before sealing. A record sealed with a key the keyring lacks is kInvalid naming both
// keys' ids; one that does not authenticate (changed, moved, of another volume) is a
// corruption. Neither message gives a position: the caller knows it.
Status open_record(const Keyring& keys, const VolumeId& volume, const RecordHeader& h,
                   std::span<const uint8_t> stored, std::vector<uint8_t>* body,
                   RecordHeader* unsealed);

// The id of the key a sealed record's stored payload names.
std::array<uint8_t, kKeyIdBytes> sealed_key_id(std::span<const uint8_t> stored);

}  // namespace rwd

namespace rwd {

// ---- Sealed base snapshots ---------------------------------------------------------
// A sealed copy's base snapshot is a file of slots, one per kSealedChunkBytes of the
// volume: slot i, at i * kSealedSlotBytes, holds chunk i sealed (compressed first when
// that saves 1/16), the rest of the slot zeroes (a hole). A chunk of zeroes is sealed
// too, with no body, so a slot that was emptied or cut off is found, never read as
// zeroes. The nonce of a chunk is derived from the key, its place and its bytes (a
// synthetic nonce): a chunk sent again after a broken link seals to the same bytes.
inline constexpr uint64_t kSealedChunkBytes = 1u << 20;
inline constexpr uint64_t kSealedSlotBytes = kSealedChunkBytes + 4096;
inline constexpr uint64_t kSealedSlotHeader = 8;  // u32 body length, u8 kind, 3 zero
uint64_t sealed_base_size(uint64_t image_size);
inline uint64_t sealed_chunk_count(uint64_t image_size) {
  return (image_size + kSealedChunkBytes - 1) / kSealedChunkBytes;
}

// Seals chunk `index` of the base at `base_seq` of volume `volume`, whose bytes are
// `data` (the chunk's length), into *out: the slot's used bytes (at most
// kSealedSlotBytes; the rest of the slot is zeroes). `compress`: may be null.
void seal_base_chunk(const SealKey& key, const VolumeId& volume, uint64_t base_seq, uint64_t index,
                     std::span<const uint8_t> data, PayloadEncoder* compress,
                     std::vector<uint8_t>* out);
// Opens slot `index` (`slot`: its bytes, kSealedSlotBytes or fewer at the end of a
// short file) into `out` (the chunk's length). An empty or damaged slot, or one of
// another place or volume, is a corruption; an unknown key kInvalid.
Status open_base_chunk(const Keyring& keys, const VolumeId& volume, uint64_t base_seq,
                       uint64_t index, std::span<const uint8_t> slot, std::span<uint8_t> out);

}  // namespace rwd
