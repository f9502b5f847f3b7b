#include "kernels/vexp.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace kt {

void dot2_weighted(const float* a, const float* b, const float* w, const float* c, int64_t n,
                   float& sa, float& sb) {
  float x = 0, y = 0;
#pragma omp simd reduction(+ : x, y)
  for (int64_t m = 0; m < n; ++m) {
    const float wc = w[m] * c[m];
    x += a[m] * wc;
    y += b[m] * wc;
  }
  sa = x;
  sb = y;
}

#if defined(__x86_64__) || defined(__i386__)
FlushDenormals::FlushDenormals() : saved_(_mm_getcsr()) {
  _mm_setcsr(saved_ | 0x8040);
}
FlushDenormals::~FlushDenormals() {
  _mm_setcsr(saved_);
}
#else
FlushDenormals::FlushDenormals() {}
FlushDenormals::~FlushDenormals() {}
#endif

}  // namespace kt
