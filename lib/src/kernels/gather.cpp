#include "kernels/gather.hpp"

#include "kernels/prefetch.hpp"

namespace kt {

void gather_dots(const float* q, const float* k, int64_t ldk, const int32_t* idx, int64_t n,
                 int64_t dim, float alpha, float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* kr = k + int64_t(idx[t]) * ldk;
    float dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < dim; ++c) dot += q[c] * kr[c];
    out[t] = alpha * dot;
  }
}

void gather_accumulate(const float* w, const int32_t* idx, int64_t n, const float* v, int64_t ldv,
                       int64_t dv, float* o) {
  for (int64_t t = 0; t < n; ++t) {
    const float* vr = v + int64_t(idx[t]) * ldv;
    const float wt = w[t];
#pragma omp simd
    for (int64_t c = 0; c < dv; ++c) o[c] += wt * vr[c];
  }
}

void gather_prefetch(const int32_t* idx, int64_t n, const GatherPrefetch& pf) {
  for (int64_t t = 0; t < n; ++t) {
    prefetch_floats(pf.base + int64_t(idx[t]) * pf.ld, pf.floats);
  }
}

}  // namespace kt
