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

// Largest float <= t: for a float s, s > float_below(t) <=> double(s) > t, exactly (so a float
// compare takes the same decision as the double one).
float float_below(double t);

// The float threshold a row with n visible keys compares its scores against (keep s > it): -inf
// when n <= k (every key), float_below(theta) for a finite theta, +inf otherwise (nothing passes,
// the argmax guard keeps one key).
float compare_threshold(double theta, int64_t n, int64_t k);

// Keeps { j : x_j > t } (increasing), or the first argmax when that is empty; returns the count
// (>= 1 when n >= 1). idx holds n + 16 int32.
int64_t select_above_or_argmax(const float* x, int64_t n, float t, int32_t* idx);

// Statistical thresholds of one head's query rows from the moments of its keys, without scanning
// any score. With qs = the float α·q_i[:r] the predictor scores are computed from (taken exactly
// in double), s_j = qs·k_j[:r] and y_j = k_j[:r] - k_0[:r] (keys centred on key 0, as
// statistical_threshold centres on x[0], so no cancellation when |μ| >> σ):
//   μ_i - s_0 = qs·m1 / n_i,  E[(s - s_0)²] = qsᵀ·M2·qs / n_i,  m1 = Σ y_j,  M2 = Σ y_j y_jᵀ
// over the visible keys (causal: prefix sums, n_i = i + 1; otherwise all L keys), so
//   theta[i] = μ_i + σ_i·Φ⁻¹(1 - k/n_i)   (population σ)     if n_i > k,   -inf otherwise:
// the statistic statistical_threshold computes from the scores, in O(L·r²) instead of O(L²·r).
// q rows at stride ldq, keys at stride ldk (first r entries used); z = normal_quantiles(k, L)
// (shared by every head: Φ⁻¹ depends on n alone). scratch: moment_scratch_doubles(r) doubles.
int64_t moment_scratch_doubles(int64_t r);
void moment_thresholds(const float* q, int64_t ldq, const float* key, int64_t ldk, int64_t L,
                       int64_t r, float alpha, int64_t k, bool causal, const double* z,
                       double* scratch, double* theta);

// z[n] = Φ⁻¹(1 - k/n) for k < n <= L, -inf for n <= k (L + 1 doubles).
void normal_quantiles(int64_t k, int64_t L, double* z);

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
