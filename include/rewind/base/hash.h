// XXH3-64, the checksum of the on-disk format (docs/FORMAT.md) and of the wire
// protocol. On x86-64 the library's run-time dispatch uses the widest vector unit the
// CPU has (AVX2 where present, about 2.5 times the SSE2 baseline here) for the same
// hash values: every byte written is hashed twice on the request path (the record's
// checksum and the segment index's chunk checksums).
#pragma once

#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif
