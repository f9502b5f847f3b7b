#include "core/memory.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace kt {

void* alloc_buffer(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= kHuge;
  const size_t align = huge ? kHuge : 64;
  const size_t size = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple
  void* p = std::aligned_alloc(align, size);
  if (!p) throw std::bad_alloc();
  if (huge) madvise(p, size, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
  return p;
}

}  // namespace kt
