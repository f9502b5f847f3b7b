// Software prefetch of a span of floats, one request per 64-byte line (the span's first and last
// lines included when it is not aligned): for rows whose first touch the hardware prefetcher does
// not start in time (the next chunk's rows, read from memory while this chunk computes) or at all
// (rows l·d floats apart, which share cache sets).
#pragma once
#include <cstdint>

namespace kt {

inline void prefetch_floats(const float* p, int64_t n) {
  if (n <= 0) return;
  const uintptr_t end = reinterpret_cast<uintptr_t>(p + n);
  for (uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}; a < end; a += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(a));
}

}  // namespace kt
