#include "kernels/rope.hpp"

#include <cmath>

#include "kittention/error.hpp"

namespace kt {

void rope_table(int64_t len, int64_t dim, double base, int64_t pos0, float* cos_t, float* sin_t) {
  KT_ASSERT(dim % 2 == 0, "rope dim must be even");
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double theta = std::pow(base, -2.0 * double(i) / double(dim));
    for (int64_t t = 0; t < len; ++t) {
      const double a = double(pos0 + t) * theta;
      cos_t[t * half + i] = static_cast<float>(std::cos(a));
      sin_t[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

void rope_apply(float* x, int64_t batch, int64_t len, int64_t heads, int64_t dim,
                int64_t batch_stride, int64_t row_stride, int64_t head_stride, const float* cos_t,
                const float* sin_t, int threads) {
  KT_ASSERT(dim % 2 == 0, "rope dim must be even");
  const int64_t half = dim / 2;
  if (half == 0) return;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len; ++t) {
      const float* c = cos_t + t * half;
      const float* s = sin_t + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + b * batch_stride + t * row_stride + h * head_stride;
        for (int64_t i = 0; i < half; ++i) {
          const float x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * c[i] - x1 * s[i];
          v[2 * i + 1] = x0 * s[i] + x1 * c[i];
        }
      }
    }
}

}  // namespace kt
