// Vectorisable exp and the row passes of the softmax. exp_approx is written so that GCC vectorises
// the loops that call it (no libm call, no branches): Cody-Waite reduction x = n·ln2 + r with
// |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (truncation 5e-9 relative), 2^n built
// in the exponent bits. Relative error < 2e-7 on [-87, 88] (tested); below -87 it returns 0
// (so -inf, the masked score, gives exactly 0), above 88 it saturates at exp(88).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace kt {

inline float exp_approx(float x) {
  // Plain selects, not std::fmin/fmax: those stay libm calls without -ffinite-math-only.
  float xc = x < -87.0f ? -87.0f : x;
  xc = xc > 88.0f ? 88.0f : xc;
  // Round to nearest by the 1.5·2^23 trick (vectorises without SSE4.1 round).
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float two_n = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : p * two_n;
}

// max over x[0..n); -inf for n == 0.
inline float row_max(const float* x, int64_t n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// x[j] = exp(x[j] - shift) in place; returns the sum. shift must be finite.
inline float exp_shift_sum(float* x, int64_t n, float shift) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = exp_approx(x[j] - shift);
    x[j] = e;
    sum += e;
  }
  return sum;
}

inline void scale_row(float* x, int64_t n, float s) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= s;
}

// The two dot products a·(w ⊙ c) and b·(w ⊙ c) over n entries, vectorised (out of line: inlined
// into a large OpenMP region GCC 12 left the reduction scalar).
void dot2_weighted(const float* a, const float* b, const float* w, const float* c, int64_t n,
                   float& sa, float& sb);

// Sets flush-to-zero and denormals-are-zero for the calling thread while alive (x86 MXCSR).
class FlushDenormals {
 public:
  FlushDenormals();
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_ = 0;
};

}  // namespace kt
