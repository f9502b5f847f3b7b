// Attention over a per-row index list (mechanisms-softmax.md §10, block 3): one query row attends
// only to the keys idx[0..n) it selected, with a pluggable per-key weight function. Used by spark
// (softmax over the kept predictor scores times a softplus gate); a plain top-k softmax passes no
// gate. Vectorised, no libm per element (exp_approx, log1p_unit).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/vexp.hpp"

namespace kt {

// log(1 + y) for y in [0, 1] as 2·atanh(t), t = y / (2 + y) in [0, 1/3], by its odd series up to
// t^13 (truncation < (1/9)^7 / 15 · 9/8 = 1.6e-8 relative, below half a float ulp); vectorisable.
inline float log1p_unit(float y) {
  const float t = y / (2.0f + y), t2 = t * t;
  float p = 1.0f / 13;
  p = p * t2 + 1.0f / 11;
  p = p * t2 + 1.0f / 9;
  p = p * t2 + 1.0f / 7;
  p = p * t2 + 1.0f / 5;
  p = p * t2 + 1.0f / 3;
  p = p * t2 + 1.0f;
  return 2.0f * t * p;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}) (stable for every x; relative error
// a few float ulps, tested against log1p in double).
inline float softplus_approx(float x) {
  const float a = x < 0 ? -x : x;
  return (x > 0 ? x : 0.0f) + log1p_unit(exp_approx(-a));
}

// out[t] = alpha · q[0..dim) · k[idx[t]·ldk + 0..dim), t < n (gathered key rows).
void gather_dots(const float* q, const float* k, int64_t ldk, const int32_t* idx, int64_t n,
                 int64_t dim, float alpha, float* out);

// Rows to prefetch ahead while a block of keys is processed: for each listed key, `floats`
// floats starting at base + idx·ld (the gathered K/V rows the gate and the value sum will read).
struct GatherPrefetch {
  const float* base = nullptr;
  int64_t ld = 0, floats = 0;
};

// o[0..dv) = Σ_t w_t · v[idx[t]·ldv ..] / Σ_t e_t with e_t = exp(s_t - max s) and w_t = e_t · gate
// (the weight function `gate(w, idx, n)` multiplies w[0..n) in place by the factor of each listed
// key idx[0..n); pass NoGate{} for plain softmax). Keys go in blocks of kGatherBlock: the gate of a
// block, then its value sum, while the next block's rows are prefetched. s[0..n) holds the listed
// keys' logits and is overwritten with w. n >= 1. Returns the log-sum-exp of the listed logits.
constexpr int64_t kGatherBlock = 16;

struct NoGate {
  void operator()(float*, const int32_t*, int64_t) const {}
};

// Accumulates o[0..dv) += Σ_t w[t] · v[idx[t]·ldv ..] (the value aggregation over gathered rows).
void gather_accumulate(const float* w, const int32_t* idx, int64_t n, const float* v, int64_t ldv,
                       int64_t dv, float* o);
void gather_prefetch(const int32_t* idx, int64_t n, const GatherPrefetch& pf);

template <class Gate>
float attend_gather_row(float* s, const int32_t* idx, int64_t n, const float* v, int64_t ldv,
                        int64_t dv, float* o, Gate&& gate, const GatherPrefetch& pf = {}) {
  const float mx = row_max(s, n);
  const float sum = exp_shift_sum(s, n, mx);
  for (int64_t c = 0; c < dv; ++c) o[c] = 0.0f;
  if (pf.base) gather_prefetch(idx, std::min(n, kGatherBlock), pf);
  for (int64_t t0 = 0; t0 < n; t0 += kGatherBlock) {
    const int64_t nb = std::min(kGatherBlock, n - t0);
    if (pf.base && t0 + nb < n)
      gather_prefetch(idx + t0 + nb, std::min(kGatherBlock, n - t0 - nb), pf);
    gate(s + t0, idx + t0, nb);
    gather_accumulate(s + t0, idx + t0, nb, v, ldv, dv, o);
  }
  scale_row(o, dv, 1.0f / sum);
  return mx + std::log(sum);
}

}  // namespace kt
