// The form a record takes on its way off the machine (docs/PROTOCOL.md, "Shipping"):
// compressed if the journal stored it as is and ship-compress= is on, then sealed if
// ship-key= gave a key. The local journal is never changed; the copy keeps the form it
// was sent in.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/seal.h"

namespace rwd {

// ship-compress= and ship-key=: how records leave the machine.
struct ShipForm {
  Compression compression{format::Codec::kZstd, kDefaultZstdLevel};
  std::optional<SealKey> key;
};

class ShipEncoder {
 public:
  // For the records of volume `volume`.
  ShipEncoder(const ShipForm& form, const VolumeId& volume);

  // *h and *payload: a record as the journal stores it (header and stored payload);
  // on return, the form it is shipped in. Records smaller than 512 bytes, marks,
  // ZERO, TRIM and superseded records are not compressed; every record is sealed when
  // there is a key.
  void encode(RecordHeader* h, std::vector<uint8_t>* payload);

 private:
  ShipForm form_;
  VolumeId volume_;
  std::optional<PayloadEncoder> compress_;
  std::vector<uint8_t> scratch_;
};

}  // namespace rwd
