// Top-k key selection for one query row (Spark Transformer, You et al. 2025, §3;
// mechanisms-softmax.md §5): the statistical top-k threshold θ = μ + σ·Φ⁻¹(1 - k/n) (population σ,
// as in the Gemma 3n code) and the exact top-k, both turning a row of scores into an increasing
// list of key indices.
#pragma once
#include <cstdint>

namespace kt {

// Standard normal quantile Φ⁻¹(p) in double: Acklam's rational approximation (relative error
// 1.15e-9) refined by one Halley step on Φ(x) - p, which brings |Φ(Φ⁻¹(p)) - p| to ~1e-16.
// Returns -inf at p = 0, +inf at p = 1, NaN outside [0, 1].
double inverse_normal_cdf(double p);
// Φ(x) = erfc(-x/√2)/2.
double normal_cdf(double x);

enum class TopkMode { Statistical, Exact };

// θ = μ + σ·Φ⁻¹(1 - k/n) over x[0..n), 0 < k < n; μ and σ accumulated in double around x[0]
// (so a shifted row loses no precision and a constant row gives σ = 0 exactly).
double statistical_threshold(const float* x, int64_t n, int64_t k);

// Indices (increasing) of the keys row x[0..n) keeps, returns their count (>= 1 when n >= 1):
//   n <= k                 every key;
//   Statistical            { j : x_j > θ } (θ from statistical_threshold);
//   Exact                  the k largest, ties to the smaller index;
//   nothing kept           the argmax, ties to the smaller index (min_keep = 1 guard).
// idx holds n + 16 int32 (vector stores may write up to 16 past the count); scratch holds n floats
// (Exact only, may be null otherwise).
int64_t select_topk(const float* x, int64_t n, int64_t k, TopkMode mode, int32_t* idx,
                    float* scratch);

// Appends to idx the j in [0, n) with x_j > t in increasing order; returns the count. idx holds
// n + 16 int32. AVX-512: compare + in-register compress, 16 keys per step.
int64_t select_greater(const float* x, int64_t n, float t, int32_t* idx);

}  // namespace kt
