// attend_fused: the tuned tile kernel of attend_tiled (kernel = "fused"), AVX-512, no BLAS.
// Same work items, pattern handling and results as the BLAS-tiled kernel; what differs is how a
// tile is computed. Rows of the tile (stacked query rows, padded to 32) are the vector lanes:
//   pack   QT[c][r] = scale·q[r][c]            (once per tile; K and V are read in place)
//   pass 1 ST[j][r] = sum_c K[j][c]·QT[c][r]   (microkernel 32 rows x 6 keys, K[j][c] broadcast)
//   pass 2 online softmax down each column of ST, 16 rows per vector: max, exp, sum, correction
//   pass 3 A[r][:] = corr[r]·A[r][:] + sum_j ST[j][r]·V[j][:]   (microkernel 6 rows x 64 values)
// OpenBLAS packs Q, K and P on every call; this kernel packs only Q once per tile, and the softmax
// runs vertically with no horizontal reductions.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/attend.hpp"
#include "kernels/blas.hpp"
#include "kernels/vexp.hpp"

#define KT_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace kt {

bool fused_kernel_available() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return ok;
}

namespace {

// exp_approx (vexp.hpp) on 16 lanes: same reduction, polynomial and cut-offs.
KT_AVX512 inline __m512 exp16(__m512 x) {
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

// Pass 1 microkernel: ST[j][r0..r0+32) for NJ keys, over dim c.
template <int NJ>
KT_AVX512 inline void scores_32xNJ(const float* qt, int64_t rp, const float* const* krow,
                                   int64_t dim, float* st, int64_t r0) {
  __m512 acc[NJ][2];
  for (int j = 0; j < NJ; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  for (int64_t c = 0; c < dim; ++c) {
    const __m512 q0 = _mm512_loadu_ps(qt + c * rp + r0),
                 q1 = _mm512_loadu_ps(qt + c * rp + r0 + 16);
    for (int j = 0; j < NJ; ++j) {
      const __m512 kb = _mm512_set1_ps(krow[j][c]);
      acc[j][0] = _mm512_fmadd_ps(q0, kb, acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(q1, kb, acc[j][1]);
    }
  }
  for (int j = 0; j < NJ; ++j) {
    _mm512_storeu_ps(st + j * rp + r0, acc[j][0]);
    _mm512_storeu_ps(st + j * rp + r0 + 16, acc[j][1]);
  }
}

// Pass 3 microkernel: NR rows x 64 values starting at value v0 (mask for a partial last vector).
template <int NR>
KT_AVX512 inline void pv_NRx64(const float* st, int64_t rp, int64_t r0, int64_t n, const float* v,
                               int64_t v_stride, int64_t v0, int nvec, __mmask16 tail, float* acc,
                               int64_t vdim, const float* corr) {
  __m512 a[NR][4];
  for (int r = 0; r < NR; ++r) {
    const __m512 cr = _mm512_set1_ps(corr[r0 + r]);
    for (int k = 0; k < 4; ++k) {
      const __mmask16 m = k < nvec - 1 ? __mmask16(0xffff) : k == nvec - 1 ? tail : __mmask16(0);
      a[r][k] = _mm512_mul_ps(cr, _mm512_maskz_loadu_ps(m, acc + (r0 + r) * vdim + v0 + 16 * k));
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const float* vj = v + j * v_stride + v0;
    __m512 vv[4];
    for (int k = 0; k < 4; ++k) {
      const __mmask16 m = k < nvec - 1 ? __mmask16(0xffff) : k == nvec - 1 ? tail : __mmask16(0);
      vv[k] = _mm512_maskz_loadu_ps(m, vj + 16 * k);
    }
    const float* pj = st + j * rp + r0;
    for (int r = 0; r < NR; ++r) {
      const __m512 pb = _mm512_set1_ps(pj[r]);
      for (int k = 0; k < 4; ++k) a[r][k] = _mm512_fmadd_ps(pb, vv[k], a[r][k]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int k = 0; k < 4; ++k) {
      const __mmask16 m = k < nvec - 1 ? __mmask16(0xffff) : k == nvec - 1 ? tail : __mmask16(0);
      _mm512_mask_storeu_ps(acc + (r0 + r) * vdim + v0 + 16 * k, m, a[r][k]);
    }
}

template <int NR>
KT_AVX512 void pv_rows(const float* st, int64_t rp, int64_t r0, int64_t n, const float* v,
                       int64_t v_stride, int64_t vdim, float* acc, const float* corr) {
  for (int64_t v0 = 0; v0 < vdim; v0 += 64) {
    const int64_t w = std::min<int64_t>(64, vdim - v0);
    const int nvec = int((w + 15) / 16);
    const int rem = int(w - 16 * (nvec - 1));
    const __mmask16 tail = __mmask16((1u << rem) - 1);
    pv_NRx64<NR>(st, rp, r0, n, v, v_stride, v0, nvec, tail, acc, vdim, corr);
  }
}

KT_AVX512 void fused_tile_block(const float* qt, int64_t rows, int64_t rp, const float* k,
                                int64_t k_stride, const float* v, int64_t v_stride, int64_t n,
                                int64_t dim, int64_t vdim, float* st, float* acc, float* m,
                                float* l, float* corr, const BlockPattern& pattern, bool partial,
                                int64_t h0, int64_t br, int64_t i0, int64_t j0,
                                float* mask_row_buf) {
  // Pass 1: scores, 6 keys at a time.
  const float* krow[6];
  int64_t j = 0;
  for (; j + 6 <= n; j += 6) {
    for (int t = 0; t < 6; ++t) krow[t] = k + (j + t) * k_stride;
    for (int64_t r0 = 0; r0 < rp; r0 += 32) scores_32xNJ<6>(qt, rp, krow, dim, st + j * rp, r0);
  }
  if (j < n) {
    const int left = int(n - j);
    for (int t = 0; t < left; ++t) krow[t] = k + (j + t) * k_stride;
    for (int64_t r0 = 0; r0 < rp; r0 += 32) switch (left) {
        case 1:
          scores_32xNJ<1>(qt, rp, krow, dim, st + j * rp, r0);
          break;
        case 2:
          scores_32xNJ<2>(qt, rp, krow, dim, st + j * rp, r0);
          break;
        case 3:
          scores_32xNJ<3>(qt, rp, krow, dim, st + j * rp, r0);
          break;
        case 4:
          scores_32xNJ<4>(qt, rp, krow, dim, st + j * rp, r0);
          break;
        default:
          scores_32xNJ<5>(qt, rp, krow, dim, st + j * rp, r0);
          break;
      }
  }
  // Mask partially covered blocks (and the padding rows, which must stay finite and inert).
  if (partial)
    for (int64_t r = 0; r < rows; ++r) {
      std::fill(mask_row_buf, mask_row_buf + n, 0.0f);
      pattern.mask_row(h0 + r / br, i0 + r % br, j0, j0 + n, mask_row_buf);
      for (int64_t jj = 0; jj < n; ++jj)
        if (mask_row_buf[jj] == -INFINITY) st[jj * rp + r] = -INFINITY;
    }
  // Pass 2: online softmax down the columns, 16 rows per vector.
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  for (int64_t r0 = 0; r0 < rp; r0 += 16) {
    __m512 mx = neg_inf;
    for (int64_t jj = 0; jj < n; ++jj) mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + jj * rp + r0));
    const __m512 m_old = _mm512_loadu_ps(m + r0);
    const __m512 m_new = _mm512_max_ps(m_old, mx);
    const __mmask16 valid = _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_NEQ_OQ);
    const __m512 shift = _mm512_maskz_mov_ps(valid, m_new);
    const __m512 c =
        _mm512_mask_blend_ps(valid, _mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(m_old, shift)));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t jj = 0; jj < n; ++jj) {
      const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(st + jj * rp + r0), shift));
      _mm512_storeu_ps(st + jj * rp + r0, e);
      sum = _mm512_add_ps(sum, e);
    }
    _mm512_storeu_ps(l + r0, _mm512_fmadd_ps(c, _mm512_loadu_ps(l + r0), sum));
    _mm512_storeu_ps(m + r0, _mm512_mask_blend_ps(valid, m_old, m_new));
    _mm512_storeu_ps(corr + r0, c);
  }
  // Pass 3: A = corr·A + P·V, 6 rows at a time (only the real rows).
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6) pv_rows<6>(st, rp, r, n, v, v_stride, vdim, acc, corr);
  switch (rows - r) {
    case 1:
      pv_rows<1>(st, rp, r, n, v, v_stride, vdim, acc, corr);
      break;
    case 2:
      pv_rows<2>(st, rp, r, n, v, v_stride, vdim, acc, corr);
      break;
    case 3:
      pv_rows<3>(st, rp, r, n, v, v_stride, vdim, acc, corr);
      break;
    case 4:
      pv_rows<4>(st, rp, r, n, v, v_stride, vdim, acc, corr);
      break;
    case 5:
      pv_rows<5>(st, rp, r, n, v, v_stride, vdim, acc, corr);
      break;
    default:
      break;
  }
}

}  // namespace

int64_t fused_rows_padded(int64_t rows) {
  return (rows + 31) / 32 * 32;
}

double fused_workspace_floats(int64_t max_rows, int64_t dim, int64_t vdim, int64_t bk) {
  const int64_t rp = fused_rows_padded(max_rows);
  return double(rp * dim + rp * bk + max_rows * vdim + 3 * rp + bk);
}

void attend_fused(const AttendProblem& p, const BlockPattern& pattern, Workspace& ws,
                  const TileConfig& cfg) {
  const int64_t group = pattern.per_head() ? 1 : p.group_size();
  const int64_t units = p.heads / group;
  const int64_t bq = std::min(cfg.block_q(group), p.lq);
  const int64_t bk = std::min(cfg.block_k, std::max<int64_t>(1, p.lk));
  const int64_t max_rows = bq * group, rp_max = fused_rows_padded(max_rows);
  const int64_t tiles = (p.lq + bq - 1) / bq;
  const int64_t items = p.batch * units * tiles;
  const int nthreads = static_cast<int>(std::min<int64_t>(p.threads, items));
  const int64_t per_thread = int64_t(fused_workspace_floats(max_rows, p.dim, p.vdim, bk));
  Workspace::Scope scope(ws);
  float* scratch = ws.alloc_floats(per_thread * nthreads);

#pragma omp parallel num_threads(nthreads)
  {
    FlushDenormals ftz;
    float* qt = scratch + per_thread * omp_get_thread_num();  // [dim, rp]
    float* st = qt + rp_max * p.dim;                          // [bk, rp]
    float* acc = st + rp_max * bk;                            // [rows, vdim]
    float* m = acc + max_rows * p.vdim;                       // [rp]
    float* l = m + rp_max;                                    // [rp]
    float* corr = l + rp_max;                                 // [rp]
    float* mask_buf = corr + rp_max;                          // [bk]
    std::vector<KeyBlock> blocks;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = tiles - 1 - item % tiles;
      const int64_t u = (item / tiles) % units, b = item / (tiles * units);
      const int64_t i0 = t * bq, i1 = std::min(p.lq, i0 + bq), br = i1 - i0;
      const int64_t rows = br * group, rp = fused_rows_padded(rows), h0 = u * group,
                    g = h0 / p.group_size();
      // Pack: QT[c][r] = scale·q[r][c]; padding rows are zero (their scores stay 0, never used).
      for (int64_t r = 0; r < rp; ++r) {
        if (r < rows) {
          const float* src = p.q.row(b, h0 + r / br, i0 + r % br);
          for (int64_t c = 0; c < p.dim; ++c) qt[c * rp + r] = src[c] * p.scale;
        } else {
          for (int64_t c = 0; c < p.dim; ++c) qt[c * rp + r] = 0.0f;
        }
        m[r] = -INFINITY;
        l[r] = 0;
      }
      std::fill(acc, acc + rows * p.vdim, 0.0f);
      blocks.clear();
      pattern.key_blocks(h0, i0, i1, p.lk, bk, blocks);
      double issued = 0;
      for (const KeyBlock& kb : blocks) {
        const int64_t n = kb.j1 - kb.j0;
        fused_tile_block(qt, rows, rp, p.k.row(b, g, kb.j0), p.k.row_stride, p.v.row(b, g, kb.j0),
                         p.v.row_stride, n, p.dim, p.vdim, st, acc, m, l, corr, pattern, kb.partial,
                         h0, br, i0, kb.j0, mask_buf);
        issued += 2.0 * double(rows) * double(n) * double(p.dim + p.vdim);
      }
      blas::add_counted_flops(issued);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t h = h0 + r / br, i = i0 + r % br;
        float* dst = p.o.row(b, h, i);
        const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
        const float* ar = acc + r * p.vdim;
        for (int64_t c = 0; c < p.vdim; ++c) dst[c] = ar[c] * inv;
        if (p.lse)
          p.lse[(b * p.heads + h) * p.lq + i] = l[r] > 0 ? m[r] + std::log(l[r]) : -INFINITY;
      }
    }
  }
}

}  // namespace kt
