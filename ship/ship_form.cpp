#include "rewind/ship/ship_form.h"

namespace rwd {

ShipEncoder::ShipEncoder(const ShipForm& form, const VolumeId& volume)
    : form_(form), volume_(volume) {
  if (form_.compression.codec != format::Codec::kNone) compress_.emplace(form_.compression);
}

void ShipEncoder::encode(RecordHeader* h, std::vector<uint8_t>* payload) {
  if (h->seal != format::Seal::kNone) return;  // sealed already (a store shipped on)
  if (compress_ && worth_encoding(*h) && compress_->encode(*payload, &scratch_)) {
    h->codec = form_.compression.codec;
    h->payload_length = static_cast<uint32_t>(scratch_.size());
    h->payload_checksum = payload_checksum(scratch_);
    payload->swap(scratch_);
  }
  if (form_.key) {
    seal_record(*form_.key, volume_, h, *payload, &scratch_);
    payload->swap(scratch_);
  }
}

}  // namespace rwd
