#include "kernels/topk.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "kernels/prefetch.hpp"

#ifdef __AVX512F__
// GCC 12's AVX-512 intrinsics headers raise false -Wmaybe-uninitialized warnings (their
// _mm512_undefined_ps placeholders, GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace kt {

double normal_cdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

double inverse_normal_cdf(double p) {
  if (!(p >= 0.0 && p <= 1.0)) return std::numeric_limits<double>::quiet_NaN();
  if (p == 0.0) return -INFINITY;
  if (p == 1.0) return INFINITY;
  // Acklam (2003): rational approximations on the central region and the two tails.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double p_low = 0.02425;
  double x;
  if (p < p_low || p > 1 - p_low) {
    const double q = std::sqrt(-2 * std::log(p < p_low ? p : 1 - p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    if (p > 1 - p_low) x = -x;
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  // One Halley step on f(x) = Φ(x) - p; above 1/2 written as (1 - p) - Q(x), Q = 1 - Φ, which
  // keeps the upper tail accurate (1 - p is exact there).
  const double e = p > 0.5 ? (1 - p) - 0.5 * std::erfc(x / std::sqrt(2.0)) : normal_cdf(x) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(0.5 * x * x);
  return x - u / (1 + 0.5 * x * u);
}

double statistical_threshold(const float* x, int64_t n, int64_t k) {
  const double c = x[0];
  double sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum, sq)
  for (int64_t j = 0; j < n; ++j) {
    const double y = double(x[j]) - c;
    sum += y;
    sq += y * y;
  }
  const double mean = sum / double(n);
  const double var = std::max(0.0, sq / double(n) - mean * mean);
  return c + mean + std::sqrt(var) * inverse_normal_cdf(1.0 - double(k) / double(n));
}

int64_t select_greater(const float* x, int64_t n, float t, int32_t* idx) {
  int64_t m = 0, j = 0;
#ifdef __AVX512F__
  const __m512 th = _mm512_set1_ps(t);
  __m512i ids = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  for (; j + 16 <= n; j += 16) {
    const __mmask16 mk = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), th, _CMP_GT_OQ);
    // Compress in a register and store a full vector: the memory form of vpcompressd is slow on
    // Zen 4. The caller's buffer has 16 slots of slack.
    _mm512_storeu_si512(idx + m, _mm512_maskz_compress_epi32(mk, ids));
    m += __builtin_popcount(mk);
    ids = _mm512_add_epi32(ids, step);
  }
#endif
  for (; j < n; ++j) {
    idx[m] = static_cast<int32_t>(j);
    m += x[j] > t;
  }
  return m;
}

namespace {

int64_t argmax_first(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j)
    if (x[j] > x[best]) best = j;
  return best;
}

}  // namespace

float float_below(double t) {
  float f = static_cast<float>(t);
  if (double(f) > t) f = std::nextafter(f, -INFINITY);
  return f;
}

namespace {

#ifdef __AVX512F__
// The first n of 8 double lanes (n clamped to [0, 8]).
__mmask8 prefix8(int64_t n) {
  return __mmask8((1u << std::clamp<int64_t>(n, 0, 8)) - 1);
}
#endif

// xᵀ·M·x for a symmetric r x r M; u: r doubles of scratch. u = M·x as a sum of M's rows, so the
// vectors run along them with no horizontal sum per entry; for r <= 32 (AVX-512) u stays in
// registers, in two sets (even and odd c): eight independent FMA chains.
double quadratic_form(const double* M, const double* x, double* u, int64_t r) {
#ifdef __AVX512F__
  if (r <= 32) {
    __mmask8 mk[4];
    __m512d a0[4], a1[4];
    for (int v = 0; v < 4; ++v) {
      mk[v] = prefix8(r - 8 * v);
      a0[v] = a1[v] = _mm512_setzero_pd();
    }
    int64_t c = 0;
    for (; c + 2 <= r; c += 2) {
      const __m512d x0 = _mm512_set1_pd(x[c]), x1 = _mm512_set1_pd(x[c + 1]);
      for (int v = 0; v < 4; ++v) {
        a0[v] = _mm512_fmadd_pd(x0, _mm512_maskz_loadu_pd(mk[v], M + c * r + 8 * v), a0[v]);
        a1[v] = _mm512_fmadd_pd(x1, _mm512_maskz_loadu_pd(mk[v], M + (c + 1) * r + 8 * v), a1[v]);
      }
    }
    if (c < r) {
      const __m512d x0 = _mm512_set1_pd(x[c]);
      for (int v = 0; v < 4; ++v)
        a0[v] = _mm512_fmadd_pd(x0, _mm512_maskz_loadu_pd(mk[v], M + c * r + 8 * v), a0[v]);
    }
    __m512d b = _mm512_setzero_pd();
    for (int v = 0; v < 4; ++v)
      b = _mm512_fmadd_pd(_mm512_add_pd(a0[v], a1[v]), _mm512_maskz_loadu_pd(mk[v], x + 8 * v), b);
    return _mm512_reduce_add_pd(b);
  }
#endif
  std::fill(u, u + r, 0.0);
  for (int64_t c = 0; c < r; ++c) {
    const double xc = x[c];
#pragma omp simd
    for (int64_t e = 0; e < r; ++e) u[e] += xc * M[c * r + e];
  }
  double b = 0;
  for (int64_t c = 0; c < r; ++c) b += x[c] * u[c];
  return b;
}

// qs[c] = double(float(q[c]·alpha)), s0 = qs·k0 and a = qs·m1 over c < r (AVX-512 for r <= 32).
void query_dots(const float* q, float alpha, const float* k0, const double* m1, int64_t r,
                double* qs, double& s0, double& a) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  if (r <= 32) {
    __m512d sv = _mm512_setzero_pd(), av = _mm512_setzero_pd();
    for (int v = 0; v < 4; ++v) {
      const __mmask8 mk = prefix8(r - 8 * v);
      const __m512d qd = _mm512_cvtps_pd(
          _mm256_mul_ps(_mm256_maskz_loadu_ps(mk, q + 8 * v), _mm256_set1_ps(alpha)));
      _mm512_mask_storeu_pd(qs + 8 * v, mk, qd);
      sv = _mm512_fmadd_pd(qd, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, k0 + 8 * v)), sv);
      av = _mm512_fmadd_pd(qd, _mm512_maskz_loadu_pd(mk, m1 + 8 * v), av);
    }
    s0 = _mm512_reduce_add_pd(sv);
    a = _mm512_reduce_add_pd(av);
    return;
  }
#endif
  s0 = a = 0;
  for (int64_t c = 0; c < r; ++c) {
    qs[c] = double(q[c] * alpha);
    s0 += qs[c] * double(k0[c]);
    a += qs[c] * m1[c];
  }
}

// M += y·yᵀ and m += y (M r x r, rows r apart). For r <= 32 (AVX-512) y stays in four registers
// and each row of M is one pass of load, FMA, store.
void rank1_update(double* M, double* m, const double* y, int64_t r) {
#ifdef __AVX512F__
  if (r <= 32) {
    __mmask8 mk[4];
    __m512d yv[4];
    for (int v = 0; v < 4; ++v) {
      mk[v] = prefix8(r - 8 * v);
      yv[v] = _mm512_maskz_loadu_pd(mk[v], y + 8 * v);
      _mm512_mask_storeu_pd(m + 8 * v, mk[v],
                            _mm512_add_pd(_mm512_maskz_loadu_pd(mk[v], m + 8 * v), yv[v]));
    }
    for (int64_t c = 0; c < r; ++c) {
      const __m512d yc = _mm512_set1_pd(y[c]);
      double* row = M + c * r;
      for (int v = 0; v < 4; ++v)
        _mm512_mask_storeu_pd(
            row + 8 * v, mk[v],
            _mm512_fmadd_pd(yc, yv[v], _mm512_maskz_loadu_pd(mk[v], row + 8 * v)));
    }
    return;
  }
#endif
  for (int64_t c = 0; c < r; ++c) {
    m[c] += y[c];
    const double yc = y[c];
#pragma omp simd
    for (int64_t e = 0; e < r; ++e) M[c * r + e] += yc * y[e];
  }
}

}  // namespace

int64_t moment_scratch_doubles(int64_t r) {
  return r * r + 4 * r;  // M2, m1, y, qs, u
}

void normal_quantiles(int64_t k, int64_t L, double* z) {
  for (int64_t n = 0; n <= L; ++n)
    z[n] = n > k ? inverse_normal_cdf(1.0 - double(k) / double(n)) : -INFINITY;
}

void moment_thresholds(const float* q, int64_t ldq, const float* key, int64_t ldk, int64_t L,
                       int64_t r, float alpha, int64_t k, bool causal, const double* z,
                       double* scratch, double* theta) {
  double *m1 = scratch, *M2 = m1 + r, *y = M2 + r * r, *qs = y + r, *u = qs + r;
  std::fill(m1, m1 + r + r * r, 0.0);
  const float* k0 = key;
  auto row = [&](int64_t i, int64_t n) {
    if (n <= k) {
      theta[i] = -INFINITY;
      return;
    }
    const float* qi = q + i * ldq;
    double s0 = 0, a = 0;
    query_dots(qi, alpha, k0, m1, r, qs, s0, a);
    const double b = quadratic_form(M2, qs, u, r);
    const double mean = a / double(n), var = std::max(0.0, b / double(n) - mean * mean);
    theta[i] = s0 + mean + std::sqrt(var) * z[n];
  };
  constexpr int64_t kAhead = 8;  // rows prefetched ahead (each row is read once: its first touch)
  for (int64_t j = 0; j < L; ++j) {
    const float* kj = key + j * ldk;
    if (j + kAhead < L) {
      prefetch_floats(kj + kAhead * ldk, r);
      if (causal) prefetch_floats(q + (j + kAhead) * ldq, r);
    }
    for (int64_t c = 0; c < r; ++c) y[c] = double(kj[c]) - double(k0[c]);
    rank1_update(M2, m1, y, r);
    if (causal) row(j, j + 1);
  }
  if (!causal)
    for (int64_t i = 0; i < L; ++i) row(i, L);
}

float compare_threshold(double theta, int64_t n, int64_t k) {
  if (n <= k) return -INFINITY;
  return std::isfinite(theta) ? float_below(theta) : INFINITY;
}

int64_t select_above_or_argmax(const float* x, int64_t n, float t, int32_t* idx) {
  if (n <= 0) return 0;
  const int64_t m = select_greater(x, n, t, idx);
  if (m > 0) return m;
  idx[0] = static_cast<int32_t>(argmax_first(x, n));
  return 1;
}

int64_t select_topk(const float* x, int64_t n, int64_t k, TopkMode mode, int32_t* idx,
                    float* scratch) {
  if (n <= 0) return 0;
  if (n <= k) {
    for (int64_t j = 0; j < n; ++j) idx[j] = static_cast<int32_t>(j);
    return n;
  }
  if (mode == TopkMode::Statistical)
    return select_above_or_argmax(x, n, compare_threshold(statistical_threshold(x, n, k), n, k),
                                  idx);
  int64_t m = 0;
  if (k > 0) {
    // τ = k-th largest value; keep every x_j > τ, then the earliest x_j == τ up to k. The search
    // runs on the candidates above the statistical threshold for 2k (about 2k of them) when at
    // least k pass it (then all of the k largest are among them), else on the whole row.
    int64_t cand = 0;
    if (2 * k < n) {
      const double t2 = statistical_threshold(x, n, 2 * k);
      if (std::isfinite(t2)) {
        const float tf = float_below(t2);
        for (int64_t j = 0; j < n; ++j) {
          scratch[cand] = x[j];
          cand += x[j] > tf;
        }
      }
    }
    if (cand < k) {
      std::copy(x, x + n, scratch);
      cand = n;
    }
    std::nth_element(scratch, scratch + (k - 1), scratch + cand, std::greater<float>());
    const float tau = scratch[k - 1];
    int64_t equal_left = k;
    for (int64_t j = 0; j < n; ++j) equal_left -= x[j] > tau;
    for (int64_t j = 0; j < n; ++j) {
      const bool take = x[j] > tau || (x[j] == tau && equal_left-- > 0);
      idx[m] = static_cast<int32_t>(j);
      m += take;
    }
  }
  if (m == 0) {
    idx[0] = static_cast<int32_t>(argmax_first(x, n));
    m = 1;
  }
  return m;
}

}  // namespace kt
