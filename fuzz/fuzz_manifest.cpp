// Fuzzes the manifest parser: any text is parsed or refused with an error, and what
// it accepts serializes to text that parses back to the same manifest.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "rewind/format/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = rwd::Manifest::parse(text, "fuzz");
  if (!m) return 0;
  std::string again = m->serialize();
  auto m2 = rwd::Manifest::parse(again, "fuzz (serialized)");
  if (!m2 || !(*m2 == *m)) std::abort();
  return 0;
}
