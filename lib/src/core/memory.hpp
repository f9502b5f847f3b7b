// Large buffers (tensors, workspace chunks) of the library. Buffers of 2 MiB and more are aligned
// to 2 MiB and marked MADV_HUGEPAGE (transparent huge pages, which this kernel's THP setting
// "madvise" only gives on request): access patterns with a large stride (sparse's residue
// classes, rows l·d floats apart; spark's gathers over a slice's keys) otherwise miss the TLB on
// nearly every row. Smaller buffers are 64-byte aligned.
#pragma once
#include <cstddef>

namespace kt {

// Throws std::bad_alloc when out of memory; free with std::free.
void* alloc_buffer(size_t bytes);

}  // namespace kt
