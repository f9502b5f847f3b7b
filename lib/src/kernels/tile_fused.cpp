// FusedTile (tile.hpp): the tuned AVX-512 tile kernel (kernel = "fused"). OpenBLAS packs Q, K
// and P on every call; this kernel packs only Q, once per tile (QT[c][r] = scale·q[r][c]), reads
// K and V in place, and runs the softmax down the columns of ST[j][r] (rows are the vector lanes)
// with no horizontal reductions.
// GCC 12's AVX-512 intrinsics headers raise false -Wmaybe-uninitialized warnings (their
// _mm512_undefined_ps placeholders, GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "kernels/blas.hpp"
#include "kernels/simd16.hpp"
#include "kernels/tile.hpp"
#include "kernels/vexp.hpp"

#define KT_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
// The pass drivers are kept out of line: inlined into FusedTile::block, GCC 12 ran out of vector
// registers and spilled a microkernel accumulator (a store-load chain per iteration, ~15% slower).
#define KT_PASS __attribute__((target("avx512f,avx512dq,fma"), noinline))

namespace kt {

// KITTENTION_NO_AVX512=1 in the environment turns the AVX-512 kernels off (the portable paths
// then run everywhere: CTest runs the kernel tests that way too).
bool fused_kernel_available() {
  static const bool ok = [] {
    const char* off = std::getenv("KITTENTION_NO_AVX512");
    if (off && *off && std::string(off) != "0") return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  }();
  return ok;
}

namespace {

// Pass 1 microkernel (lane_dots): ST[j][l0 .. l0 + 16·NV) for NJ keys (dots_tile, simd16.hpp).
template <int NV, int NJ>
KT_AVX512 inline void dots_block(const float* qt, int64_t rp, int64_t l0, const float* k,
                                 int64_t ldk, int64_t dim, float* st) {
  __m512 acc[NJ][NV];
  dots_tile<NV, NJ>(qt, rp, l0, k, ldk, dim, acc);
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(st + j * rp + l0 + 16 * v, acc[j][v]);
}

// All n keys for the lanes [l0, l0 + 16·NV): 6 keys per microkernel call, then the tail.
template <int NV>
KT_AVX512 void dots_lanes(const float* qt, int64_t rp, int64_t l0, const float* k, int64_t ldk,
                          int64_t n, int64_t dim, float* st) {
  using Tail = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*);
  constexpr Tail kTail[6] = {nullptr,           dots_block<NV, 1>, dots_block<NV, 2>,
                             dots_block<NV, 3>, dots_block<NV, 4>, dots_block<NV, 5>};
  int64_t j = 0;
  for (; j + 6 <= n; j += 6) dots_block<NV, 6>(qt, rp, l0, k + j * ldk, ldk, dim, st + j * rp);
  if (j < n) kTail[n - j](qt, rp, l0, k + j * ldk, ldk, dim, st + j * rp);
}

// Pass 3 microkernel: NR rows x 64 values starting at value v0 (mk: the lanes of each of the 4
// vectors inside vdim). Every small loop is unrolled so that the NR x 4 accumulators stay in
// registers (without it GCC 12 kept them on the stack: 2x slower).
template <int NR>
KT_AVX512 inline void pv_NRx64(const float* st, int64_t rp, int64_t r0, int64_t n, const float* v,
                               int64_t v_stride, int64_t v0, const __mmask16 mk[4], float* acc,
                               int64_t ldacc, const float* corr) {
  __m512 a[NR][4];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    const __m512 cr = _mm512_set1_ps(corr ? corr[r0 + r] : 1.0f);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
      a[r][k] =
          _mm512_mul_ps(cr, _mm512_maskz_loadu_ps(mk[k], acc + (r0 + r) * ldacc + v0 + 16 * k));
  }
  for (int64_t j = 0; j < n; ++j) {
    const float* vj = v + j * v_stride + v0;
    __m512 vv[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) vv[k] = _mm512_maskz_loadu_ps(mk[k], vj + 16 * k);
    const float* pj = st + j * rp + r0;
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const __m512 pb = _mm512_set1_ps(pj[r]);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) a[r][k] = _mm512_fmadd_ps(pb, vv[k], a[r][k]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
      _mm512_mask_storeu_ps(acc + (r0 + r) * ldacc + v0 + 16 * k, mk[k], a[r][k]);
}

template <int NR>
KT_AVX512 void pv_rows(const float* st, int64_t rp, int64_t r0, int64_t n, const float* v,
                       int64_t v_stride, int64_t vdim, float* acc, int64_t ldacc,
                       const float* corr) {
  for (int64_t v0 = 0; v0 < vdim; v0 += 64) {
    const int64_t w = std::min<int64_t>(64, vdim - v0);
    __mmask16 mk[4];
    for (int k = 0; k < 4; ++k) mk[k] = prefix16(w - 16 * k);
    pv_NRx64<NR>(st, rp, r0, n, v, v_stride, v0, mk, acc, ldacc, corr);
  }
}

// In-place transpose of a 16 x 16 block held as 16 row vectors (x[i][j] -> x[j][i]): 32-bit
// and 64-bit unpacks give, per 128-bit lane L, column 4L + c of each 4-row group; two rounds of
// 128-bit lane shuffles gather the four groups' lanes into one vector per column.
KT_AVX512 inline void transpose16(__m512 x[16]) {
  __m512 u[16];  // u[4m + c], lane L: column 4L + c of rows 4m..4m+3
  for (int m = 0; m < 4; ++m) {
    const __m512 a = x[4 * m], b = x[4 * m + 1], c = x[4 * m + 2], d = x[4 * m + 3];
    const __m512d lo01 = _mm512_castps_pd(_mm512_unpacklo_ps(a, b)),
                  hi01 = _mm512_castps_pd(_mm512_unpackhi_ps(a, b)),
                  lo23 = _mm512_castps_pd(_mm512_unpacklo_ps(c, d)),
                  hi23 = _mm512_castps_pd(_mm512_unpackhi_ps(c, d));
    u[4 * m + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo01, lo23));
    u[4 * m + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo01, lo23));
    u[4 * m + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi01, hi23));
    u[4 * m + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi01, hi23));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 p01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44),  // lanes 0,1 of groups 0,1
        q01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE),           // lanes 2,3 of groups 0,1
        p23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44),
                 q23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    x[c] = _mm512_shuffle_f32x4(p01, p23, 0x88);       // lane 0 of every group
    x[4 + c] = _mm512_shuffle_f32x4(p01, p23, 0xDD);   // lane 1
    x[8 + c] = _mm512_shuffle_f32x4(q01, q23, 0x88);   // lane 2
    x[12 + c] = _mm512_shuffle_f32x4(q01, q23, 0xDD);  // lane 3
  }
}

// dots_lanes<NV> by vector count (1 to 4).
using DotsLanesFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                             int64_t, float*);
constexpr DotsLanesFn kDotsLanes[5] = {nullptr, dots_lanes<1>, dots_lanes<2>, dots_lanes<3>,
                                       dots_lanes<4>};

// Pass 1 over n keys, lanes in groups of up to 64 (4 vectors).
KT_PASS void scores_block(const float* qt, int64_t rp, const float* k, int64_t k_stride, int64_t n,
                          int64_t dim, float* st) {
  for (int64_t l0 = 0; l0 < rp; l0 += 64)
    kDotsLanes[std::min<int64_t>(4, (rp - l0) / 16)](qt, rp, l0, k, k_stride, n, dim, st);
}

// pv_rows<NR> by row count.
using PvRowsFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                          float*, int64_t, const float*);
constexpr PvRowsFn kPvRows[7] = {nullptr,    pv_rows<1>, pv_rows<2>, pv_rows<3>,
                                 pv_rows<4>, pv_rows<5>, pv_rows<6>};

// The keys [lo, hi) of a block that a group of tile rows may see (P is zero outside).
struct KeySpan {
  int64_t lo, hi;
};

// Span of the rows [r0, r1) from their runs (runs: [4][rp] lo0, hi0, lo1, hi1 relative to the
// block, empty runs allowed), clamped to `within`.
KeySpan rows_span(const int32_t* runs, int64_t rp, int64_t r0, int64_t r1, KeySpan within) {
  int64_t lo = within.hi, hi = within.lo;
  for (int64_t r = r0; r < r1; ++r)
    for (int k = 0; k < 2; ++k) {
      const int64_t a = runs[2 * k * rp + r], b = runs[(2 * k + 1) * rp + r];
      if (a < b) lo = std::min(lo, a), hi = std::max(hi, b);
    }
  return {std::max(lo, within.lo), std::min(hi, within.hi)};
}

// Pass 1 of a masked block: each 16-row group's scores only over the keys its rows may see (its
// rows_span, which passes 2 and 3 stay inside). The groups' span ends cut the block into key
// intervals; each interval is scored for the adjacent groups that need it, up to 4 vectors per
// call (a band tile's two groups: one 2-vector run over the keys both see, one 1-vector run at
// each end; a causal diagonal tile: a staircase). Falls back to the whole block past kMaxGroups.
KT_PASS void scores_spans(const float* qt, int64_t rp, const float* k, int64_t k_stride, int64_t n,
                          int64_t dim, const int32_t* runs, float* st) {
  constexpr int64_t kMaxGroups = 32;
  const int64_t groups = rp / 16;
  if (groups > kMaxGroups) return scores_block(qt, rp, k, k_stride, n, dim, st);
  KeySpan span[kMaxGroups];
  int64_t cut[2 * kMaxGroups], ncut = 0;
  for (int64_t v = 0; v < groups; ++v) {
    span[v] = rows_span(runs, rp, 16 * v, 16 * v + 16, {0, n});
    if (span[v].lo < span[v].hi) cut[ncut++] = span[v].lo, cut[ncut++] = span[v].hi;
  }
  std::sort(cut, cut + ncut);
  ncut = std::unique(cut, cut + ncut) - cut;
  for (int64_t c = 0; c + 1 < ncut; ++c) {
    const int64_t j0 = cut[c], j1 = cut[c + 1];
    for (int64_t v = 0; v < groups;) {
      auto needs = [&](int64_t w) { return span[w].lo <= j0 && span[w].hi >= j1; };
      if (!needs(v)) {
        ++v;
        continue;
      }
      int64_t w = v + 1;
      while (w < groups && w - v < 4 && needs(w)) ++w;
      kDotsLanes[w - v](qt, rp, 16 * v, k + j0 * k_stride, k_stride, j1 - j0, dim, st + j0 * rp);
      v = w;
    }
  }
}

// Pass 3 for the real rows of one 16-row group [g0, g1) (span: the keys its pass 2 covered):
// A = corr·A + P·V in 6, 6, 4 row pieces, each over the keys its own rows may see.
KT_PASS void pv_group(const float* st, int64_t rp, int64_t g0, int64_t g1, KeySpan span,
                      const int32_t* runs, const float* v, int64_t v_stride, int64_t vdim,
                      float* acc, int64_t ldacc, const float* corr) {
  for (int64_t r = g0; r < g1;) {
    const int64_t left = g1 - r, nr = left <= 6 ? left : left >= 10 ? 6 : left - 4;
    const KeySpan ks = runs ? rows_span(runs, rp, r, r + nr, span) : span;
    if (ks.lo < ks.hi) {  // empty: the rows saw no key here, corr = 1, A unchanged
      const float* sj = st + ks.lo * rp;
      const float* vj = v + ks.lo * v_stride;
      const int64_t n = ks.hi - ks.lo;
      kPvRows[nr](sj, rp, r, n, vj, v_stride, vdim, acc, ldacc, corr);
    }
    r += nr;
  }
}

// Key j of a 16-row group's scores s[0..16) against the rows' two runs [lo0, hi0), [lo1, hi1):
// the scores outside them set to -inf; returns max(mx, s).
KT_AVX512 inline __m512 mask_key(float* s, int64_t j, __m512i lo0, __m512i hi0, __m512i lo1,
                                 __m512i hi1, __m512 neg_inf, __m512 mx) {
  const __m512i jv = _mm512_set1_epi32(int32_t(j));
  const __mmask16 ok = (_mm512_cmple_epi32_mask(lo0, jv) & _mm512_cmpgt_epi32_mask(hi0, jv)) |
                       (_mm512_cmple_epi32_mask(lo1, jv) & _mm512_cmpgt_epi32_mask(hi1, jv));
  const __m512 x = _mm512_mask_blend_ps(ok, neg_inf, _mm512_loadu_ps(s));
  _mm512_storeu_ps(s, x);
  return _mm512_max_ps(mx, x);
}

// Pass 2 for 16 rows [r0, r0 + 16): the online-softmax update down the columns of ST, over the
// keys the group may see (returned; the whole block when runs is null). runs: the rows' allowed
// keys [lo0, hi0) ∪ [lo1, hi1) relative to the block; the keys every row of the group sees,
// [max lo0, min hi0), skip the compares.
KT_PASS KeySpan softmax_columns(float* st, int64_t rp, int64_t r0, int64_t n, const int32_t* runs,
                                float* m, float* l, float* corr) {
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  __m512 mx = neg_inf;
  KeySpan span{0, n}, mid{0, n};  // mid: no compares needed
  if (runs) {
    span = rows_span(runs, rp, r0, r0 + 16, span);
    if (span.lo >= span.hi) {  // no row of the group sees a key of this block
      _mm512_storeu_ps(corr + r0, _mm512_set1_ps(1.0f));
      return span;
    }
    int64_t a = runs[r0], b = runs[rp + r0];
    for (int t = 1; t < 16; ++t)
      a = std::max<int64_t>(a, runs[r0 + t]), b = std::min<int64_t>(b, runs[rp + r0 + t]);
    mid = {std::max(a, span.lo), std::min(b, span.hi)};
    if (mid.lo >= mid.hi) mid = {span.hi, span.hi};
    const __m512i lo0 = _mm512_loadu_si512(runs + r0), hi0 = _mm512_loadu_si512(runs + rp + r0),
                  lo1 = _mm512_loadu_si512(runs + 2 * rp + r0),
                  hi1 = _mm512_loadu_si512(runs + 3 * rp + r0);
    // (Loops, not a lambda: a lambda does not inherit the function's target attribute.)
    for (int64_t j = span.lo; j < mid.lo; ++j)
      mx = mask_key(st + j * rp + r0, j, lo0, hi0, lo1, hi1, neg_inf, mx);
    for (int64_t j = mid.hi; j < span.hi; ++j)
      mx = mask_key(st + j * rp + r0, j, lo0, hi0, lo1, hi1, neg_inf, mx);
  }
  for (int64_t j = mid.lo; j < mid.hi; ++j)
    mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + j * rp + r0));
  const __m512 m_old = _mm512_loadu_ps(m + r0);
  const __m512 m_new = _mm512_max_ps(m_old, mx);
  const __mmask16 valid = _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_NEQ_OQ);
  const __m512 shift = _mm512_maskz_mov_ps(valid, m_new);
  const __m512 c =
      _mm512_mask_blend_ps(valid, _mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(m_old, shift)));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = span.lo; j < span.hi; ++j) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(st + j * rp + r0), shift));
    _mm512_storeu_ps(st + j * rp + r0, e);
    sum = _mm512_add_ps(sum, e);
  }
  _mm512_storeu_ps(l + r0, _mm512_fmadd_ps(c, _mm512_loadu_ps(l + r0), sum));
  _mm512_storeu_ps(m + r0, _mm512_mask_blend_ps(valid, m_old, m_new));
  _mm512_storeu_ps(corr + r0, c);
  return span;
}

int64_t rows_padded(int64_t rows) {
  return (rows + 31) / 32 * 32;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Lane kernels (tile.hpp).
KT_AVX512 void pack_lanes(const TileRows<const float>& a, int64_t rows, int64_t dim, float scale,
                          float* at, int64_t rp) {
  // AT[c][r] = scale·a[r][c] in 16 x 16 blocks; rows rows..rp-1 are zero.
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t r0 = 0; r0 < rp; r0 += 16)
    for (int64_t c0 = 0; c0 < dim; c0 += 16) {
      const int64_t cw = std::min<int64_t>(16, dim - c0);
      const __mmask16 cols = prefix16(cw);
      __m512 blk[16];
      for (int i = 0; i < 16; ++i)
        blk[i] = r0 + i < rows ? _mm512_mul_ps(sc, _mm512_maskz_loadu_ps(cols, a.at(r0 + i) + c0))
                               : _mm512_setzero_ps();
      transpose16(blk);
      for (int64_t c = 0; c < cw; ++c) _mm512_storeu_ps(at + (c0 + c) * rp + r0, blk[c]);
    }
}

void lane_dots(const float* qt, int64_t rp, const float* k, int64_t ldk, int64_t n, int64_t dim,
               float* st) {
  if (fused_kernel_available()) return scores_block(qt, rp, k, ldk, n, dim, st);
  for (int64_t j = 0; j < n; ++j)  // the same FMA chain per result, in scalar code
    for (int64_t l = 0; l < rp; ++l) {
      float acc = 0.0f;
      for (int64_t c = 0; c < dim; ++c) acc = std::fma(qt[c * rp + l], k[j * ldk + c], acc);
      st[j * rp + l] = acc;
    }
}

void lane_scores(const float* at, int64_t rp, const float* y, int64_t y_stride, int64_t n,
                 int64_t dim, float* xt) {
  scores_block(at, rp, y, y_stride, n, dim, xt);
  blas::add_counted_flops(2.0 * double(rp) * double(n) * double(dim));
}

void lane_accumulate(const float* x, int64_t rp, int64_t rows, int64_t n, const float* y,
                     int64_t y_stride, int64_t vdim, float* acc, int64_t ldacc, const float* corr,
                     bool lower) {
  double issued = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t r1 = std::min(rows, r0 + 16), keys = lower ? std::min(n, r1) : n;
    pv_group(x, rp, r0, r1, {0, keys}, nullptr, y, y_stride, vdim, acc, ldacc, corr);
    issued += 2.0 * double(r1 - r0) * double(keys) * double(vdim);
  }
  blas::add_counted_flops(issued);
}

double lane_accumulate_flops(int64_t rows, int64_t n, int64_t vdim, bool lower) {
  double issued = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t r1 = std::min(rows, r0 + 16), keys = lower ? std::min(n, r1) : n;
    issued += 2.0 * double(r1 - r0) * double(keys) * double(vdim);
  }
  return issued;
}

// ---------------------------------------------------------------------------------------------
// FusedTile.
int64_t FusedTile::scratch_floats(int64_t max_rows, int64_t dim, int64_t vdim, int64_t bk) {
  const int64_t rp = rows_padded(max_rows);
  return rp * dim + rp * bk + max_rows * vdim + 7 * rp + bk;
}

FusedTile::FusedTile(float* scratch, int64_t max_rows, int64_t dim, int64_t vdim, int64_t bk)
    : dim_(dim), bk_(bk), rp_max_(rows_padded(max_rows)) {
  vdim_ = vdim;
  qt_ = scratch;                                        // [dim, rp]
  st_ = qt_ + rp_max_ * dim;                            // [bk, rp]
  acc_ = st_ + rp_max_ * bk;                            // [rows, vdim]
  m_ = acc_ + max_rows * vdim;                          // [rp]
  l_ = m_ + rp_max_;                                    // [rp]
  corr_ = l_ + rp_max_;                                 // [rp]
  runs_ = reinterpret_cast<int32_t*>(corr_ + rp_max_);  // [4, rp]
  mask_buf_ = corr_ + 5 * rp_max_;                      // [bk]
}

KT_AVX512 void FusedTile::start(const TileRows<const float>& q, int64_t rows, float scale) {
  reset(rows);
  rp_ = rows_padded(rows);
  per_head_ = q.per_head;
  std::fill(m_ + rows, m_ + rp_, -INFINITY);
  std::fill(l_ + rows, l_ + rp_, 0.0f);
  // Padding rows of QT are zero: their scores stay finite and inert, pass 3 never reads them.
  pack_lanes(q, rows, dim_, scale, qt_, rp_);
}

KT_AVX512 void FusedTile::block(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                                int64_t n, const BlockPattern* mask, int64_t h0, int64_t i0,
                                int64_t j0) {
  const int32_t* runs = nullptr;
  if (mask) {
    KeyRun run[2];
    if (mask->row_runs(h0, i0, run)) {
      // Each row's runs relative to the block, clamped to [0, n]; padding rows see no key.
      auto rel = [&](int64_t j) { return int32_t(std::clamp<int64_t>(j - j0, 0, n)); };
      for (int64_t r = 0; r < rp_; ++r) {
        if (r < rows_) {
          mask->row_runs(h0 + r / per_head_, i0 + r % per_head_, run);
        } else {  // padding rows: no key (never read)
          run[0] = run[1] = {};
        }
        runs_[r] = rel(run[0].lo);
        runs_[rp_ + r] = rel(run[0].hi);
        runs_[2 * rp_ + r] = rel(run[1].lo);
        runs_[3 * rp_ + r] = rel(run[1].hi);
      }
      runs = runs_;
      scores_spans(qt_, rp_, k, k_stride, n, dim_, runs, st_);
    } else {  // a general pattern: its mask_row, row by row
      scores_block(qt_, rp_, k, k_stride, n, dim_, st_);
      for (int64_t r = 0; r < rows_; ++r) {
        std::fill(mask_buf_, mask_buf_ + n, 0.0f);
        mask->mask_row(h0 + r / per_head_, i0 + r % per_head_, j0, j0 + n, mask_buf_);
        for (int64_t j = 0; j < n; ++j)
          if (mask_buf_[j] == -INFINITY) st_[j * rp_ + r] = -INFINITY;
      }
    }
  }
  if (!mask) scores_block(qt_, rp_, k, k_stride, n, dim_, st_);
  // Passes 2 and 3 per 16-row group, each over the keys its rows may see.
  for (int64_t r0 = 0; r0 < rows_; r0 += 16) {
    const KeySpan span = softmax_columns(st_, rp_, r0, n, runs, m_, l_, corr_);
    pv_group(st_, rp_, r0, std::min(rows_, r0 + 16), span, runs, v, v_stride, vdim_, acc_, vdim_,
             corr_);
  }
  issued_ += 2.0 * double(rows_) * double(n) * double(dim_ + vdim_);
}

void FusedTile::finish(const TileRows<float>& o, const TileRows<float>& lse) {
  write(o, lse);
  blas::add_counted_flops(issued_);
  issued_ = 0;
}

}  // namespace kt
