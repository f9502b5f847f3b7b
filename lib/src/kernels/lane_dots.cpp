#include "kernels/lane_dots.hpp"

#include <immintrin.h>

#include <cmath>

#define KT_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace kt {

bool lane_dots_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return ok;
}

namespace {

// st[j][l0 .. l0 + 16·NV) for NJ keys: NV vectors of query lanes x NJ broadcast key elements.
template <int NV, int NJ>
KT_AVX512 inline void dots_block(const float* qt, int64_t rp, int64_t l0, const float* k,
                                 int64_t ldk, int64_t dim, float* st) {
  __m512 acc[NJ][NV];
  for (int j = 0; j < NJ; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_setzero_ps();
  for (int64_t c = 0; c < dim; ++c) {
    __m512 q[NV];
    for (int v = 0; v < NV; ++v) q[v] = _mm512_loadu_ps(qt + c * rp + l0 + 16 * v);
    for (int j = 0; j < NJ; ++j) {
      const __m512 kb = _mm512_set1_ps(k[j * ldk + c]);
      for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_fmadd_ps(q[v], kb, acc[j][v]);
    }
  }
  for (int j = 0; j < NJ; ++j)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(st + j * rp + l0 + 16 * v, acc[j][v]);
}

template <int NV>
KT_AVX512 void dots_lanes(const float* qt, int64_t rp, int64_t l0, const float* k, int64_t ldk,
                          int64_t n, int64_t dim, float* st) {
  int64_t j = 0;
  for (; j + 6 <= n; j += 6) dots_block<NV, 6>(qt, rp, l0, k + j * ldk, ldk, dim, st + j * rp);
  const float* kj = k + j * ldk;
  float* sj = st + j * rp;
  switch (n - j) {
    case 1:
      dots_block<NV, 1>(qt, rp, l0, kj, ldk, dim, sj);
      break;
    case 2:
      dots_block<NV, 2>(qt, rp, l0, kj, ldk, dim, sj);
      break;
    case 3:
      dots_block<NV, 3>(qt, rp, l0, kj, ldk, dim, sj);
      break;
    case 4:
      dots_block<NV, 4>(qt, rp, l0, kj, ldk, dim, sj);
      break;
    case 5:
      dots_block<NV, 5>(qt, rp, l0, kj, ldk, dim, sj);
      break;
    default:
      break;
  }
}

KT_AVX512 void lane_dots_512(const float* qt, int64_t rp, const float* k, int64_t ldk, int64_t n,
                             int64_t dim, float* st) {
  for (int64_t l0 = 0; l0 < rp; l0 += 64) switch ((rp - l0) >= 64 ? 4 : (rp - l0) / 16) {
      case 4:
        dots_lanes<4>(qt, rp, l0, k, ldk, n, dim, st);
        break;
      case 3:
        dots_lanes<3>(qt, rp, l0, k, ldk, n, dim, st);
        break;
      case 2:
        dots_lanes<2>(qt, rp, l0, k, ldk, n, dim, st);
        break;
      default:
        dots_lanes<1>(qt, rp, l0, k, ldk, n, dim, st);
        break;
    }
}

}  // namespace

void lane_dots(const float* qt, int64_t rp, const float* k, int64_t ldk, int64_t n, int64_t dim,
               float* st) {
  if (lane_dots_avx512()) return lane_dots_512(qt, rp, k, ldk, n, dim, st);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t l = 0; l < rp; ++l) {
      float acc = 0.0f;
      for (int64_t c = 0; c < dim; ++c) acc = std::fma(qt[c * rp + l], k[j * ldk + c], acc);
      st[j * rp + l] = acc;
    }
}

}  // namespace kt
