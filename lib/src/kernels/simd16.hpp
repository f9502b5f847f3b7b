// 16-lane AVX-512 versions of vexp.hpp's exp_approx and gather.hpp's softplus_approx, for kernels
// that keep their values in registers (the same reductions, polynomials and cut-offs as the
// scalar forms, which GCC vectorises in plain loops). Callers need fused_kernel_available().
#pragma once
// GCC 12's AVX-512 intrinsics headers raise false -Wmaybe-uninitialized (and, in target-attributed
// functions of a build without -march=native, -Wuninitialized) warnings: their
// _mm512_undefined_ps placeholders, GCC bug 105593, fixed in GCC 13.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>
#include <initializer_list>

#define KT_SIMD16 __attribute__((target("avx512f,avx512dq,fma")))

namespace kt {

// The first n of 16 lanes (n clamped to [0, 16]).
inline __mmask16 prefix16(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// exp(x): Cody-Waite reduction x = n·ln2 + r, degree-7 Taylor polynomial, 2^n in the exponent
// bits; x < -87 (or -inf) gives 0, x > 88 saturates at exp(88).
KT_SIMD16 inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.0f), hi = _mm512_set1_ps(88.0f);
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __m512 res = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), res);  // x < -87 (or -inf) -> 0
}

// log(1 + y) for y in [0, 1]: 2·atanh(t), t = y / (2 + y), odd series to t^13 (as log1p_unit).
KT_SIMD16 inline __m512 log1p_unit16(__m512 y) {
  const __m512 t = _mm512_div_ps(y, _mm512_add_ps(_mm512_set1_ps(2.0f), y));
  const __m512 t2 = _mm512_mul_ps(t, t);
  __m512 p = _mm512_set1_ps(1.0f / 13);
  for (const float c : {1.0f / 11, 1.0f / 9, 1.0f / 7, 1.0f / 5, 1.0f / 3, 1.0f})
    p = _mm512_fmadd_ps(p, t2, _mm512_set1_ps(c));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), t), p);
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)).
KT_SIMD16 inline __m512 softplus16(__m512 x) {
  const __m512 a = _mm512_abs_ps(x);
  return _mm512_add_ps(_mm512_max_ps(x, _mm512_setzero_ps()),
                       log1p_unit16(exp16(_mm512_sub_ps(_mm512_setzero_ps(), a))));
}

// Sums of 16 vectors: lane l of the result is Σ p[4·(l % 4) + l / 4] (a transposed reduction in
// four levels of 128-bit-block and in-block shuffles, 45 instructions for 16 sums).
KT_SIMD16 inline __m512 transpose_sum16(__m512* p) {
  for (int i = 0; i < 8; ++i)
    p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xee));
  for (int i = 0; i < 4; ++i)
    p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xdd));
  for (int i = 0; i < 2; ++i)
    p[i] = _mm512_add_ps(_mm512_shuffle_ps(p[2 * i], p[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(p[2 * i], p[2 * i + 1], 0xee));
  return _mm512_add_ps(_mm512_shuffle_ps(p[0], p[1], 0x88), _mm512_shuffle_ps(p[0], p[1], 0xdd));
}

// The lane kernels' dot microkernel (tile.hpp lane_dots, FusedTile pass 1, spark's fused scores):
// acc[j][v] = Σ_c qt[c·rp + l0 + 16v]·k[j·ldk + c] over c < dim for NJ broadcast rows j and NV
// vectors of lanes, one FMA chain per result in increasing c, so every caller gets the same bits.
// Every small loop unrolled: the NJ x NV accumulators stay in registers.
template <int NV, int NJ>
KT_SIMD16 inline __attribute__((always_inline)) void dots_tile(const float* qt, int64_t rp,
                                                               int64_t l0, const float* k,
                                                               int64_t ldk, int64_t dim,
                                                               __m512 (&acc)[NJ][NV]) {
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_setzero_ps();
  for (int64_t c = 0; c < dim; ++c) {
    __m512 q[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) q[v] = _mm512_loadu_ps(qt + c * rp + l0 + 16 * v);
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) {
      const __m512 kb = _mm512_set1_ps(k[j * ldk + c]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_fmadd_ps(q[v], kb, acc[j][v]);
    }
  }
}

}  // namespace kt
