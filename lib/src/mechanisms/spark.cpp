// spark: Spark attention with statistical top-k, You et al. 2025, "Spark Transformer: Reactivating
// Sparsity in FFN and Attention" (arXiv 2506.06644) §2-§3; spec: mechanisms-softmax.md §5.
//   inputs  q [B,H,L,d], k [B,G,L,d], v [B,G,L,dv]   (query head h reads K/V head h / (H/G))
//   output  out [B,H,L,dv]
// Each head vector splits into a predictor part [0, r) and a rest [r, d). For query i over its
// visible keys N_i (causal: j <= i), n_i = |N_i|:
//   s_j = α·q[:r]·k_j[:r]                         predictor, every visible key
//   S_i = N_i                                     if n_i <= k (early positions: no threshold)
//       = { j : s_j > μ + σ·Φ⁻¹(1 - k/n_i) }      topk_mode = statistical (population σ over N_i)
//       = the k largest s_j, ties to smaller j     topk_mode = exact
//       = { argmax_j s_j } (first)                if the threshold keeps nothing (constant rows)
//   o_i = Σ_{j∈S_i} softmax_{S_i}(s)_j · softplus(α·q[r:]·k_j[r:]) · v_j
// The weights are ≥ 0 and do not sum to 1 (the gate is not normalised).
// Choices (decisions.md): α1 = α2 = scale (default 1/sqrt(head_dim)); population σ; argmax guard;
// causal by default; with GQA each query head makes its own selection; Φ⁻¹ in double (Acklam +
// one Halley step, kernels/topk.hpp). RoPE is the caller's (q, k arrive rotated).
// Passes:
//   (0) θ (statistical mode), once, shared by both paths: θ_i = μ_i + σ_i·Φ⁻¹(1 - k/n_i) from the
//       keys' moments (kernels/topk.hpp moment_thresholds): per (b, h) the keys are walked in
//       order with running sums m1 = Σ y_j, M2 = Σ y_j y_jᵀ of y_j = k_j[:r] - k_0[:r] in double
//       (causal: prefix sums; else totals), and μ_i - s_0 = qs·m1/n_i, E[(s - s_0)²] =
//       qsᵀ·M2·qs/n_i with qs = the float α·q_i[:r] the scores use. The same statistic as a scan
//       of the scores (population σ, centred on key 0), in O(L·r²) per slice instead of O(L²·r);
//       θ = -inf for n_i <= k. θ [B,H,L] doubles; Φ⁻¹(1 - k/n) tabulated once for n <= L.
//   Per (b, h, tile of block_rows queries); the reference and the per-row path in subtiles of
//   <= 64 rows (the rows are vector lanes, padded to 16):
//   (1) predictor scores by one routine, lane_dots of kernels/tile.hpp (AVX-512 microkernel,
//       64 lanes x 6 keys, or a scalar std::fma fallback: one FMA chain per score), so the
//       reference and the fast path see bit-identical float scores; the compare s > θ_f with
//       θ_f = the largest float <= θ is exactly double(s) > θ, so both take the same decisions
//       (decisions.md: a key within float rounding of θ may go either way; the tests' float64
//       oracle skips such rows).
//   (2) selection, (3) softmax of the kept scores x softplus gate x values over the kept keys.
// Reference: (1) for the subtile's visible keys into rows x jmax floats, (2) per row by a double
// compare with θ or a full sort (exact), argmax guard, (3) in double with libm.
// Fast, statistical mode on an AVX-512 CPU (fused, per subtile of <= 128 rows, in blocks of
// kKeyLanes = 256 keys; the keys' predictor parts packed once per forward as lanes, kt
// [B,G,L/256,r,256]; nothing per thread grows with L):
//   scores+select  per 6 rows x 64 keys the score tile of lane_dots' microkernel (dots_tile,
//           simd16.hpp) with keys as lanes and the rows' α·q[:r] as the broadcasts (fma(a, b, c)
//           = fma(b, a, c): the same bits as the reference's scores), compared in registers with
//           θ_f and the causal limit; the kept keys and scores compressed into per-row regions
//           (the scores never stored), then joined into the block's pair list (rows in order);
//           online softmax per row: m raised to the block's kept max, acc and z rescaled.
//   gate    16 pairs at a time, their product vectors in registers and one transposed sum.
//   values  per row, 16 pairs at a time in registers (kernels/simd16.hpp): e = exp(s - m),
//           w = e·softplus(α·x), z += Σ e, acc += Σ w·v_j (two FMA chains); the next batch's
//           weights computed before the current batch's values (software pipelining).
//   Rows that keep nothing: argmax guard (that row's scores recomputed alone, 16 lanes).
//   Measured (B = 1, H = 8, d = 64, L = 8192, causal, k = 256, 2 threads; docs/mechanisms/
//   spark.md): 103-105 ms on a quiet machine (self causal 209-210 ms), against 173-205 ms for
//   the previous key-streamed design (per key a mask of the rows keeping it, accumulators in
//   memory); scores+select ~50% of the time, weights and values ~25%, gate ~14%, the join and
//   bookkeeping ~6%, θ ~4%.
// Fast, exact mode (or no AVX-512): [K[:, r:] ; V] packed one row per key; per subtile the scores
// of (1), then per row the selection
// (exact: nth_element on the candidates above the statistical threshold for 2k) and a vectorised
// gather over the kept keys (kernels/gather.hpp), prefetched a block of 16 keys ahead.
// Work O(L²·r) for (1), O(L·k·d) for (3), O(L·r²) for (0); no L x L buffer anywhere (a thread
// of the per-row path holds at most 64 x L floats of scores).
#include <fmt/format.h>
// GCC 12's AVX-512 intrinsics headers raise false -Wmaybe-uninitialized warnings (their
// _mm512_undefined_ps placeholders, GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/blas.hpp"
#include "kernels/gather.hpp"
#include "kernels/simd16.hpp"
#include "kernels/tile.hpp"
#include "kernels/topk.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

#define KT_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace kt {

namespace {

constexpr int64_t kSubRows =
    64;  // query rows (lanes) per subtile of the reference and per-row path
constexpr int64_t kFusedRows = 128;  // query rows per subtile of the fused path
constexpr int64_t kKeyBlock = 32;    // keys per scored block (selection)
constexpr int64_t kKeyLanes = 256;   // keys per block of the fused path (its score tile's lanes)
constexpr int64_t kRegion = kKeyLanes + 16;  // a row's kept pairs of one key block (+ 16 slack)

int64_t pad16(int64_t n) {
  return (n + 15) / 16 * 16;
}

struct SparkDims {
  int64_t B, H, G, L, d, dv, r, k, br;
  bool causal;
  float scale;
  TopkMode mode;
  int threads;
  explicit SparkDims(const Params& p)
      : B(p.i("batch")),
        H(p.i("heads")),
        G(p.i("kv_heads")),
        L(p.i("seq_len")),
        d(p.i("head_dim")),
        dv(p.i("value_dim")),
        r(p.i("r")),
        k(p.i("k")),
        br(std::min(p.i("block_rows"), p.i("seq_len"))),
        causal(p.b("causal")),
        scale(static_cast<float>(p.f("scale"))),
        mode(p.s("topk_mode") == "exact" ? TopkMode::Exact : TopkMode::Statistical),
        threads(static_cast<int>(p.i("threads"))) {}
  int64_t tiles() const { return (L + br - 1) / br; }
  int64_t items() const { return B * H * tiles(); }
  int64_t nthreads() const { return std::min<int64_t>(threads, items()); }
  int64_t theta_threads() const { return std::min<int64_t>(threads, B * H); }
  int64_t visible(int64_t i) const { return causal ? i + 1 : L; }
  int64_t jmax(int64_t i1) const { return causal ? i1 : L; }  // keys a block of rows < i1 sees
  bool statistical() const { return mode == TopkMode::Statistical; }
  // The fast path's fused kernel: statistical mode on a CPU with AVX-512 (else per-row path).
  bool fused() const { return statistical() && fused_kernel_available(); }
  int64_t rp_max() const { return std::min(kSubRows, pad16(br)); }  // lanes of a subtile
  int64_t fused_rows() const { return std::min(kFusedRows, br); }   // rows of a fused subtile
  // Each per-thread segment is padded to 16 floats (64 bytes).
  static int64_t pad(int64_t n) { return pad16(n); }
  // Per-row layout (reference; fast path in exact mode or without AVX-512): scaled predictor
  // queries qt [r, rp], the subtile's scores S [jmax, rp], one row copied out, index list (+16),
  // weights (2 x L floats: doubles in the reference, w and gate inputs in the fast path), exact
  // scratch.
  int64_t rows_floats() const {
    const int64_t rp = rp_max();
    return pad(r * rp) + pad(rp * L) + pad(L) + pad(L + 16) + 3 * pad(L);
  }
  // Fused layout (R = fused_rows()): scaled predictor queries qs [R, r]; each row's kept keys
  // and scores of one key block, kRegion apart [R, kRegion] x 2; the block's pairs in one list
  // (at most R·kKeyLanes, + 16 slack): key, score, gate dot, row; per-row starts (R + 1) and
  // counts (R); accumulators [R, dv]; per row m, z and θ; the
  // argmax guard's queries [r, 16] and scores [kKeyBlock, 16].
  int64_t fused_floats() const {
    const int64_t R = fused_rows(), P = R * kKeyLanes + 16;
    return pad(R * r) + 2 * pad(R * kRegion) + 4 * pad(P) + pad(R + 1) + pad(R) + pad(R * dv) +
           3 * pad(R) + pad(r * 16) + pad(kKeyBlock * 16);
  }
  // The fused path's keys as lanes: per (b, g) and block of kKeyLanes keys, K[:, :r]ᵀ [r,
  // kKeyLanes] (the last block zero-padded).
  int64_t key_blocks() const { return (L + kKeyLanes - 1) / kKeyLanes; }
  int64_t key_lanes_floats() const { return B * G * key_blocks() * r * kKeyLanes; }
  int64_t per_thread(Path path) const {
    return path == Path::Fast && fused() ? fused_floats() : rows_floats();
  }
  // Calls f(i0, i1) for the subtiles (<= rows rows: kSubRows, or kFusedRows on the fused path) of
  // the tile [t0, t1).
  template <class F>
  void subtiles(int64_t t0, int64_t t1, F&& f, int64_t rows = kSubRows) const {
    for (int64_t i0 = t0; i0 < t1; i0 += rows) f(i0, std::min(t1, i0 + rows));
  }
  // Predictor (row, key) pairs the score kernel issues per slice: the fused path's rows x the
  // subtile's visible keys in whole groups of 64; otherwise padded lanes (16) x visible keys per
  // subtile.
  double issued_pairs(Path path) const {
    const bool blocks = path == Path::Fast && fused();
    double pairs = 0;
    for (int64_t t0 = 0; t0 < L; t0 += br)
      subtiles(
          t0, std::min(L, t0 + br),
          [&](int64_t i0, int64_t i1) {
            const int64_t keys = blocks ? (jmax(i1) + 63) / 64 * 64 : jmax(i1);
            pairs += double(blocks ? i1 - i0 : pad16(i1 - i0)) * double(keys);
          },
          blocks ? kFusedRows : kSubRows);
    return pairs;
  }
};

// Packs [K[:, r:] ; V] of every (b, g) into kv [B,G,L,(d - r) + dv], one contiguous row per key
// for the per-row gathers (the fused path and the scores read K and V in place).
void pack_gate_values(const SparkDims& s, const float* k, const float* v, float* kv) {
  const int64_t rows = s.B * s.G * s.L, w = s.d - s.r + s.dv;
#pragma omp parallel for num_threads(s.threads) schedule(static)
  for (int64_t j = 0; j < rows; ++j) {
    std::copy(k + j * s.d + s.r, k + (j + 1) * s.d, kv + j * w);
    std::copy(v + j * s.dv, v + (j + 1) * s.dv, kv + j * w + (s.d - s.r));
  }
}

// K[:, :r] of every (b, g) as lanes for the fused path: kt [B,G,key_blocks, r, kKeyLanes].
void pack_key_lanes(const SparkDims& s, const float* k, float* kt) {
  const int64_t nb = s.key_blocks();
#pragma omp parallel for num_threads(s.threads) schedule(static)
  for (int64_t item = 0; item < s.B * s.G * nb; ++item) {
    const int64_t bg = item / nb, j0 = item % nb * kKeyLanes;
    pack_lanes({k + (bg * s.L + j0) * s.d, s.d, 0, kKeyLanes}, std::min(kKeyLanes, s.L - j0), s.r,
               1.0f, kt + item * s.r * kKeyLanes, kKeyLanes);
  }
}

// θ of every query row (statistical mode), [B,H,L] doubles, from the keys' moments (topk.hpp):
// computed once, read by both paths, so they take identical keep/drop decisions.
void thresholds(const SparkDims& s, const float* q, const float* k, double* z, double* scratch,
                double* theta) {
  const int64_t per = moment_scratch_doubles(s.r);
  normal_quantiles(s.k, s.L, z);
#pragma omp parallel for num_threads(static_cast <int>(s.theta_threads())) schedule(dynamic, 1)
  for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
    const int64_t b = bh / s.H, g = (bh % s.H) / (s.H / s.G);
    moment_thresholds(q + bh * s.L * s.d, s.d, k + (b * s.G + g) * s.L * s.d, s.d, s.L, s.r,
                      s.scale, s.k, s.causal, z, scratch + omp_get_thread_num() * per,
                      theta + bh * s.L);
  }
}

// qt[c·rp + l] = α·q_l[c] for the rows l < rows (row stride d), c < r; padding lanes zero.
void pack_queries(const SparkDims& s, const float* qrows, int64_t rows, int64_t rp, float* qt) {
  for (int64_t c = 0; c < s.r; ++c)
    for (int64_t l = 0; l < rp; ++l) qt[c * rp + l] = l < rows ? qrows[l * s.d + c] * s.scale : 0;
}

// Predictor scores of a subtile (rows i0.. of one head) against keys [0, n): S[j·rp + l], by the
// shared score kernel (bit-identical in both paths and in the guard's single-row recompute).
void subtile_scores(const SparkDims& s, const float* qt, int64_t rp, const float* kb, int64_t j0,
                    int64_t n, float* S) {
  lane_dots(qt, rp, kb + j0 * s.d, s.d, n, s.r, S);
}

// First argmax of row l of a subtile's scores over its n visible keys, recomputing them one
// key block at a time for that row alone (16 lanes: qt1 [r, 16], st [kKeyBlock, 16]).
int64_t guard_argmax(const SparkDims& s, const float* qrow, const float* kb, int64_t n, float* qt1,
                     float* st) {
  pack_queries(s, qrow, 1, 16, qt1);
  int64_t best = 0;
  float best_s = 0;
  for (int64_t j0 = 0; j0 < n; j0 += kKeyBlock) {
    const int64_t nb = std::min(kKeyBlock, n - j0);
    subtile_scores(s, qt1, 16, kb, j0, nb, st);
    for (int64_t jj = 0; jj < nb; ++jj)
      if (j0 + jj == 0 || st[jj * 16] > best_s) best = j0 + jj, best_s = st[jj * 16];
  }
  return best;
}

struct FusedScratch {
  float *qs, *rs, *ps, *px, *acc, *m, *z, *th, *qt1, *st1;
  int32_t *rj, *pj, *pr, *pstart, *cnt;
  FusedScratch(const SparkDims& s, float* f) {
    const int64_t R = s.fused_rows(), P = R * kKeyLanes + 16;
    auto take = [&f](int64_t n) {
      float* p = f;
      f += SparkDims::pad(n);
      return p;
    };
    qs = take(R * s.r);
    rj = reinterpret_cast<int32_t*>(take(R * kRegion));
    rs = take(R * kRegion);
    pj = reinterpret_cast<int32_t*>(take(P));
    ps = take(P);
    px = take(P);
    pr = reinterpret_cast<int32_t*>(take(P));
    pstart = reinterpret_cast<int32_t*>(take(R + 1));
    cnt = reinterpret_cast<int32_t*>(take(R));
    acc = take(R * s.dv);
    m = take(R);
    z = take(R);
    th = take(R);
    qt1 = take(s.r * 16);
    st1 = take(kKeyBlock * 16);
  }
};

// The lane-wise products of a[0..n) and b[0..n), summed over 16-lane steps (masked tail).
KT_AVX512 inline __m512 dot_lanes(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), acc);
  if (c < n) {
    const __mmask16 m = prefix16(n - c);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), acc);
  }
  return acc;
}

// a[0..n)·b[0..n), one horizontal sum.
KT_AVX512 inline float dot512(const float* a, const float* b, int64_t n) {
  return _mm512_reduce_add_ps(dot_lanes(a, b, n));
}

// Gate dots x[e] = q2_{pr[e]}·k2_{pj[e]} (rows of q and k at stride d, their dims [r, d)) of the
// pairs [0, n), 16 at a time: the 16 product vectors in registers, summed by one transposed
// reduction. DG = d - r when known at compile time (its vectors unrolled), else 0 (a loop over
// dg). The pair arrays hold valid indices up to the next multiple of 16.
template <int DG>
KT_AVX512 __attribute__((noinline)) void gate_dots(const float* q, const float* k, int64_t d,
                                                   int64_t r, int64_t dg, const int32_t* pr,
                                                   const int32_t* pj, int32_t n, float* x) {
  for (int32_t e0 = 0; e0 < n; e0 += 16) {
    __m512 p[16];
#pragma GCC unroll 16
    for (int l = 0; l < 16; ++l) {
      const float* q2 = q + int64_t(pr[e0 + l]) * d + r;
      const float* k2 = k + int64_t(pj[e0 + l]) * d + r;
      __m512 acc;
      if constexpr (DG == 32) {
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(q2 + 16), _mm512_loadu_ps(k2 + 16),
                              _mm512_mul_ps(_mm512_loadu_ps(q2), _mm512_loadu_ps(k2)));
      } else {
        acc = dot_lanes(q2, k2, dg);
      }
      p[4 * (l % 4) + l / 4] = acc;  // the slot transpose_sum16 sums into lane l
    }
    _mm512_storeu_ps(x + e0, transpose_sum16(p));
  }
}

// The rows [t0, t0 + NJ) of a key block's fused score + selection against the 64 keys at lane l0
// (ktb: the block's K[:, :r] as kKeyLanes lanes; qs: α·q[:r] rows, r apart): the score tile of
// dots_tile (lane_dots' microkernel, so the same bits as the reference's scores) is compared in
// registers with each row's θ_f and its visible keys (vis0 + t causal, else vis0); the kept keys
// and scores are compressed in registers and stored as full vectors (the memory form is slow on
// Zen 4) at cnt[t] in the row's region (rj, rs: kRegion apart).
template <int NJ>
KT_AVX512 inline void select_tile(const float* ktb, int64_t l0, int64_t j0, const float* qs,
                                  int64_t r, int64_t t0, int64_t vis0, bool causal, const float* th,
                                  int32_t* cnt, int32_t* rj, float* rs) {
  __m512 acc[NJ][4];
  dots_tile<4, NJ>(ktb, kKeyLanes, l0, qs + t0 * r, r, r, acc);
  const int64_t key0 = j0 + l0;
  const __m512i keys =
      _mm512_add_epi32(_mm512_set1_epi32(int32_t(key0)),
                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j) {
    const int64_t t = t0 + j, lim = (causal ? vis0 + t : vis0) - key0;
    if (lim <= 0) continue;
    const __m512 thv = _mm512_set1_ps(th[t]);
    int32_t c = cnt[t];
    float* ps = rs + t * kRegion;
    int32_t* pj = rj + t * kRegion;
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      __mmask16 ok = _mm512_cmp_ps_mask(acc[j][v], thv, _CMP_GT_OQ);
      if (lim < 64) ok &= prefix16(lim - 16 * v);
      _mm512_storeu_ps(ps + c, _mm512_maskz_compress_ps(ok, acc[j][v]));
      _mm512_storeu_si512(pj + c, _mm512_maskz_compress_epi32(
                                      ok, _mm512_add_epi32(keys, _mm512_set1_epi32(16 * v))));
      c += __builtin_popcount(ok);
    }
    cnt[t] = c;
  }
}

// A key block's scores and selection for the rows [0, rows) against its first nk keys
// (select_tile per 6 rows x 64 keys, the last group whole): cnt[t] kept pairs of row t in its
// region; the scores never go to memory.
KT_AVX512 __attribute__((noinline)) void scores_select(const float* ktb, int64_t j0, int64_t nk,
                                                       const float* qs, int64_t r, int64_t rows,
                                                       int64_t vis0, bool causal, const float* th,
                                                       int32_t* cnt, int32_t* rj, float* rs) {
  std::fill(cnt, cnt + rows, 0);
  using Tile = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t,
                        bool, const float*, int32_t*, int32_t*, float*);
  constexpr Tile kTile[7] = {nullptr,        select_tile<1>, select_tile<2>, select_tile<3>,
                             select_tile<4>, select_tile<5>, select_tile<6>};
  for (int64_t t0 = 0; t0 < rows; t0 += 6) {
    const Tile tile = kTile[std::min<int64_t>(6, rows - t0)];
    for (int64_t l0 = 0; l0 < nk; l0 += 64)
      tile(ktb, l0, j0, qs, r, t0, vis0, causal, th, cnt, rj, rs);
  }
}

// x[k] += w·v[16k..16k + 16) for k < NV (the last vector masked by tail).
template <int NV>
KT_AVX512 inline void value_step(float w, const float* v, __mmask16 tail, __m512* x) {
  const __m512 wl = _mm512_set1_ps(w);
#pragma GCC unroll 4
  for (int k = 0; k < NV; ++k)
    x[k] = _mm512_fmadd_ps(
        wl, _mm512_maskz_loadu_ps(k < NV - 1 ? __mmask16(0xffff) : tail, v + 16 * k), x[k]);
}

// acc[c0 + 0..16·NV) += Σ_l w[l]·v_{pj[l]}[c0 + ..] over l < n (the last vector masked by tail),
// the accumulators in registers, two sets (even and odd pairs: two FMA chains).
template <int NV>
KT_AVX512 inline void accumulate_values(const float* vb, int64_t dv, int64_t c0, __mmask16 tail,
                                        const int32_t* pj, const float* w, int n, float* acc) {
  auto mask = [tail](int k) { return k < NV - 1 ? __mmask16(0xffff) : tail; };
  __m512 a[NV], b[NV];
#pragma GCC unroll 4
  for (int k = 0; k < NV; ++k) {
    a[k] = _mm512_maskz_loadu_ps(mask(k), acc + c0 + 16 * k);
    b[k] = _mm512_setzero_ps();
  }
  // (A function, not a lambda: a lambda does not inherit the target attribute.)
  int l = 0;
  for (; l + 2 <= n; l += 2) {
    value_step<NV>(w[l], vb + int64_t(pj[l]) * dv + c0, tail, a);
    value_step<NV>(w[l + 1], vb + int64_t(pj[l + 1]) * dv + c0, tail, b);
  }
  if (l < n) value_step<NV>(w[l], vb + int64_t(pj[l]) * dv + c0, tail, a);
#pragma GCC unroll 4
  for (int k = 0; k < NV; ++k)
    _mm512_mask_storeu_ps(acc + c0 + 16 * k, mask(k), _mm512_add_ps(a[k], b[k]));
}

// acc[0..dv) += Σ_l w[l]·v_{pj[l]} over l < n, in 64-value slices (dv = 64: one).
KT_AVX512 inline void accumulate_row(const float* vb, int64_t dv, const int32_t* pj, const float* w,
                                     int n, float* acc) {
  if (dv == 64) return accumulate_values<4>(vb, 64, 0, 0xffff, pj, w, n, acc);
  for (int64_t c0 = 0; c0 < dv; c0 += 64) {
    const int64_t cw = std::min<int64_t>(64, dv - c0);
    const int nvec = int((cw + 15) / 16);
    const __mmask16 tail = prefix16(cw - 16 * (nvec - 1));
    switch (nvec) {
      case 4:
        accumulate_values<4>(vb, dv, c0, tail, pj, w, n, acc);
        break;
      case 3:
        accumulate_values<3>(vb, dv, c0, tail, pj, w, n, acc);
        break;
      case 2:
        accumulate_values<2>(vb, dv, c0, tail, pj, w, n, acc);
        break;
      default:
        accumulate_values<1>(vb, dv, c0, tail, pj, w, n, acc);
        break;
    }
  }
}

// The softmax numerators and weights of the pairs [e, e + n) of one row (n <= 16; scores ps, gate
// dots px, the row's max m): e = exp(s - m), w = e·softplus(α·x) stored in w (0 past n); returns
// Σ e.
KT_AVX512 inline float batch_weights(const float* ps, const float* px, float m, __m512 alpha,
                                     int32_t e, int n, float* w) {
  const __mmask16 valid = prefix16(n);
  const __m512 ex = _mm512_maskz_mov_ps(
      valid, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid, ps + e), _mm512_set1_ps(m))));
  _mm512_store_ps(
      w, _mm512_mul_ps(ex, softplus16(_mm512_mul_ps(alpha, _mm512_maskz_loadu_ps(valid, px + e)))));
  return _mm512_reduce_add_ps(ex);
}

// The weights and values of a key block's pairs (rows in order, row t's at [pstart[t],
// pstart[t + 1])), in batches of at most 16 pairs of one row: z_t += Σ e, acc_t += Σ w·v_j. The
// next batch's weights are computed before the current batch's values (software pipelining:
// their exp/log chains overlap the value FMAs).
KT_AVX512 __attribute__((noinline)) void block_values(const float* vb, int64_t dv,
                                                      const int32_t* pstart, int64_t rows,
                                                      const int32_t* pj, const float* ps,
                                                      const float* px, const float* m, float alpha,
                                                      float* z, float* acc) {
  const int32_t p = pstart[rows];
  if (p == 0) return;
  alignas(64) float w[2][16];
  const __m512 av = _mm512_set1_ps(alpha);
  auto row_of = [pstart](int32_t e, int64_t t) {  // the row holding pair e, from row t on
    while (pstart[t + 1] <= e) ++t;
    return t;
  };
  int64_t t = row_of(0, 0);
  int32_t e = 0;
  int n = std::min(16, pstart[t + 1] - e), buf = 0;
  float zs = batch_weights(ps, px, m[t], av, e, n, w[buf]);
  for (;;) {
    const int32_t e2 = e + n;
    int64_t t2 = t;
    int n2 = 0;
    float zs2 = 0;
    if (e2 < p) {
      t2 = row_of(e2, t);
      n2 = std::min(16, pstart[t2 + 1] - e2);
      zs2 = batch_weights(ps, px, m[t2], av, e2, n2, w[buf ^ 1]);
    }
    accumulate_row(vb, dv, pj + e, w[buf], n, acc + t * dv);
    z[t] += zs;
    if (e2 >= p) break;
    e = e2;
    t = t2;
    n = n2;
    zs = zs2;
    buf ^= 1;
  }
}

// The fused fast path for one subtile: rows [i0, i0 + rows) of one head (query rows qr, stride
// d; θ th_rows), its keys' predictor parts as lanes kt (kKeyLanes keys per block, [r, kKeyLanes]
// each), output rows o (stride dv). Returns the predictor flops it issued. Per key block:
//   scores+select  scores_select: the block's keys (lanes) x the rows' α·q[:r] in registers,
//           6 rows x 64 keys at a time, each compared with the row's θ_f and visible limit and
//           the kept keys and scores compressed into the row's region; then the regions joined
//           into one pair list (rows in order) and each row's running max m raised to the
//           block's kept max (acc and z rescaled by exp(m_old - m_new)).
//   gate    the gate dots of every pair, 16 reduced together by a transposed sum.
//   values  per row, 16 pairs at a time: e = exp(s - m), w = e·softplus(α·x), z += Σ e and, acc
//           in registers, acc += Σ w·v_j.
// After the last block o = acc / z; rows that kept nothing take the argmax guard (that row's
// scores recomputed alone, 16 lanes).
KT_AVX512 double fused_subtile(const SparkDims& s, const float* qr, const double* th_rows,
                               const float* kt, const float* kb, const float* vb, int64_t i0,
                               int64_t rows, const FusedScratch& w, float* o) {
  const int64_t jmax = s.jmax(i0 + rows), dg = s.d - s.r, dv = s.dv;
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t c = 0; c < s.r; ++c) w.qs[t * s.r + c] = qr[t * s.d + c] * s.scale;
    w.th[t] = compare_threshold(th_rows[t], s.visible(i0 + t), s.k);
    w.m[t] = -INFINITY;
    w.z[t] = 0;
  }
  std::fill(w.acc, w.acc + rows * dv, 0.0f);
  double issued = 0;
  for (int64_t j0 = 0; j0 < jmax; j0 += kKeyLanes) {
    const int64_t nk = std::min(kKeyLanes, jmax - j0);  // keys of the block any row sees
    scores_select(kt + (j0 / kKeyLanes) * s.r * kKeyLanes, j0, nk, w.qs, s.r, rows,
                  s.causal ? i0 + 1 : s.L, s.causal, w.th, w.cnt, w.rj, w.rs);
    issued += 2.0 * double(s.r) * double((nk + 63) / 64 * 64) * double(rows);
    // The rows' pairs into one list (rows in order) and each row's block max (its kept scores);
    // online softmax: the row's max raised to it, acc and z rescaled.
    int32_t p = 0;
    for (int64_t t = 0; t < rows; ++t) {
      w.pstart[t] = p;
      const int32_t n = w.cnt[t];
      if (n == 0) continue;
      const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
      __m512 mx = neg_inf;
      for (int32_t e = 0; e < n; e += 16) {
        const __m512 sv = _mm512_mask_loadu_ps(neg_inf, prefix16(n - e), w.rs + t * kRegion + e);
        mx = _mm512_max_ps(mx, sv);
        _mm512_storeu_si512(w.pj + p + e, _mm512_loadu_si512(w.rj + t * kRegion + e));
        _mm512_storeu_ps(w.ps + p + e, sv);
        _mm512_storeu_si512(w.pr + p + e, _mm512_set1_epi32(int32_t(t)));
      }
      const float mnew = std::max(w.m[t], _mm512_reduce_max_ps(mx));
      if (mnew > w.m[t]) {  // rescale what the row has summed so far
        const float corr = w.m[t] == -INFINITY ? 0.0f : exp_approx(w.m[t] - mnew);
        w.z[t] *= corr;
        for (int64_t c = 0; c < dv; ++c) w.acc[t * dv + c] *= corr;
        w.m[t] = mnew;
      }
      p += n;
    }
    w.pstart[rows] = p;
    if (p == 0) continue;
    // Pad the pairs to a multiple of 16 with a valid (row 0, key j0) pair for gate_dots.
    _mm512_storeu_si512(w.pj + p, _mm512_set1_epi32(int32_t(j0)));
    _mm512_storeu_si512(w.pr + p, _mm512_setzero_si512());
    if (dg == 32)
      gate_dots<32>(qr, kb, s.d, s.r, dg, w.pr, w.pj, p, w.px);
    else
      gate_dots<0>(qr, kb, s.d, s.r, dg, w.pr, w.pj, p, w.px);
    block_values(vb, dv, w.pstart, rows, w.pj, w.ps, w.px, w.m, s.scale, w.z, w.acc);
  }
  for (int64_t t = 0; t < rows; ++t) {
    float* ot = o + t * dv;
    if (w.m[t] > -INFINITY) {  // the row kept some key
      const float inv = 1.0f / w.z[t];
      for (int64_t c = 0; c < dv; ++c) ot[c] = w.acc[t * dv + c] * inv;
      continue;
    }
    // Nothing above θ: keep the first argmax alone (softmax weight 1).
    const int64_t n = s.visible(i0 + t);
    const int64_t a = guard_argmax(s, qr + t * s.d, kb, n, w.qt1, w.st1);
    issued += 2.0 * double(s.r) * 16.0 * double(n);
    const float g = softplus_approx(s.scale * dot512(qr + t * s.d + s.r, kb + a * s.d + s.r, dg));
    for (int64_t c = 0; c < dv; ++c) ot[c] = g * vb[a * dv + c];
  }
  return issued;
}

// Runs body(thread scratch, b, h, t0, t1) over every (b, h, query tile), largest (latest) causal
// tiles first.
template <class Body>
void for_each_tile(const SparkDims& s, float* scratch, int64_t per_thread, Body&& body) {
  const int64_t tiles = s.tiles(), items = s.items();
#pragma omp parallel num_threads(static_cast <int>(s.nthreads()))
  {
    FlushDenormals ftz;
    float* mine = scratch + per_thread * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = tiles - 1 - item % tiles, bh = item / tiles;
      const int64_t t0 = t * s.br, t1 = std::min(s.L, t0 + s.br);
      body(mine, bh / s.H, bh % s.H, t0, t1);
    }
  }
}

class SparkAttention final : public Mechanism {
 public:
  std::string name() const override { return "spark"; }
  std::string family() const override { return "sparse"; }
  std::string summary() const override {
    return "Spark attention: r-dim predictor, statistical top-k, softmax x softplus gate on kept "
           "keys";
  }
  PaperInfo paper() const override {
    return {"Spark Transformer: Reactivating Sparsity in FFN and Attention", "You et al.", 2025,
            "2506.06644"};
  }

  std::vector<ParamSpec> params() const override {
    const ParamSpec k = int_param(
        "k", "target number of kept keys per query (rows with n <= k keep every visible key)", 256,
        1, 1 << 24);
    const ParamSpec r = int_param(
        "r", "predictor width: the first r dims of q and k; the rest (d - r) feed the gate",
        std::nullopt, 1, 1 << 14, "head_dim / 2");
    const ParamSpec mode = choice_param(
        "topk_mode", "statistical: keep s > mean + std·Φ⁻¹(1 - k/n); exact: the k largest",
        {"statistical", "exact"}, "statistical");
    const ParamSpec rows =
        int_param("block_rows",
                  "query rows per work item (fused path: scored together, up to 128; reference and "
                  "per-row path: in subtiles of 64, 64 x L floats of scores per thread)",
                  128, 1, 4096);
    return {common::batch(),
            common::heads(),
            common::kv_heads("heads"),
            common::head_dim(),
            common::value_dim(),
            common::seq_len(),
            common::causal(true),
            common::scale("1/sqrt(head_dim), for both the predictor and the gate"),
            common::seed(),
            common::threads(),
            k,
            r,
            mode,
            rows};
  }

  void resolve(Params& p) const override {
    const int64_t H = p.i("heads"), d = p.i("head_dim");
    if (!p.has("kv_heads")) p.set("kv_heads", H);
    const int64_t G = p.i("kv_heads");
    if (H % G != 0)
      throw InputError("kv_heads", fmt::format("kv_heads = {} must divide heads = {} (allowed: a "
                                               "divisor of {})",
                                               G, H, H));
    if (!p.has("r")) {
      if (d < 2)
        throw InputError("head_dim",
                         fmt::format("spark splits head_dim into a predictor and a "
                                     "gate part; head_dim = {} is too small (need >= 2)",
                                     d));
      p.set("r", d / 2);
    }
    const int64_t r = p.i("r");
    if (r <= 0 || r >= d)
      throw InputError("r", fmt::format("r = {} must satisfy 0 < r < head_dim = {} (allowed: 1.."
                                        "{})",
                                        r, d, d - 1));
    if (!p.has("value_dim")) p.set("value_dim", d);
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(d)));
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), G = p.i("kv_heads"), L = p.i("seq_len");
    return {{"q", {B, H, L, p.i("head_dim")}, "queries [B,H,L,d] (first r dims: predictor)"},
            {"k", {B, G, L, p.i("head_dim")}, "keys [B,G,L,d] (first r dims: predictor)"},
            {"v", {B, G, L, p.i("value_dim")}, "values [B,G,L,dv]"}};
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    return {{"out",
             {p.i("batch"), p.i("heads"), p.i("seq_len"), p.i("value_dim")},
             "attention output [B,H,L,dv]"}};
  }

  CostModel cost(const Params& p, Path path) const override {
    const SparkDims s(p);
    const double L = s.L, k = s.k, d = s.d, dv = s.dv, r = s.r, slices = double(s.B * s.H);
    // Per (b, h) slice: N visible pairs (predictor), M kept pairs (gate + values; statistical
    // mode keeps about min(k, n) per row, exact mode exactly that), R_big rows that need a
    // threshold (n > k).
    double N, M, Rbig;
    if (s.causal) {
      const double kc = std::min(k, L);
      N = L * (L + 1) / 2;
      M = kc * (kc + 1) / 2 + (L - kc) * k;
      Rbig = std::max(0.0, L - k);
    } else {
      N = L * L;
      M = L * std::min(k, L);
      Rbig = L > k ? L : 0;
    }
    CostModel c;
    const double pred = slices * 2 * r * N, gate = slices * 2 * (d - r) * M,
                 values = slices * 2 * dv * M;
    c.flops = pred + gate + values;
    c.flops_parts = {{"predictor", pred}, {"gate", gate}, {"values", values}};
    // Predictor scores as issued: padded lanes (16) x visible keys per subtile of <= 64 rows
    // (the causal tile's upper triangle included); the gate and value sums are not counted
    // (sparse, per kept pair). The argmax guard's single-row recompute (16 lanes x n keys, only
    // for a row that keeps nothing: never with non-degenerate scores) is counted when it runs.
    const double issued_pairs = s.issued_pairs(path);
    c.issued_flops = slices * 2 * r * issued_pairs;
    // Scale folded into the predictor queries (L·r); statistics from the key moments (statistical
    // mode: per key a rank-1 update of the r x r second moment, per thresholded row a quadratic
    // form, 2·r² each); one compare per issued (lane, key); softmax 3M - 2L; gate scale and
    // product 2M; deferred normalisation L·dv + L.
    const double stats = s.statistical() ? 2 * r * r * (L + Rbig) : 0;
    c.elementwise = slices * (L * r + stats + issued_pairs + 3 * M - 2 * L + 2 * M + L * dv + L);
    // exp per kept key (softmax), softplus = exp + log1p per kept key, sqrt + Φ⁻¹ per
    // thresholded row.
    c.transcendentals = slices * (3 * M + 2 * Rbig);
    c.io_bytes = 4 * (slices * L * (d + dv) + double(s.B * s.G) * L * (d + dv));
    c.kv_bytes_per_token = 4 * double(s.G) * (d + dv);
    c.time_complexity = "O(B·H·(L²·r + L·k·d + L·r²))";
    c.space_complexity = path == Path::Fast && s.fused() ? "O(T·64·(256 + dv) + B·G·L·r + B·H·L)"
                                                         : "O(T·64·L + B·G·L·(d + dv) + B·H·L)";
    // Allocations, in order: per-thread scratch, [K2;V] (per-row fast path), θ, the quantile
    // table Φ⁻¹(1 - k/n) and the moment scratch (statistical).
    double bytes = Workspace::padded_float_bytes(double(s.nthreads() * s.per_thread(path)));
    if (path == Path::Fast && !s.fused())
      bytes += Workspace::padded_float_bytes(double(s.B * s.G * s.L * (s.d - s.r + s.dv)));
    if (path == Path::Fast && s.fused())
      bytes += Workspace::padded_float_bytes(double(s.key_lanes_floats()));
    if (s.statistical())
      bytes += double(Workspace::padded_bytes(size_t(8 * s.B * s.H * s.L))) +
               double(Workspace::padded_bytes(size_t(8 * (s.L + 1)))) +
               double(Workspace::padded_bytes(
                   size_t(8 * s.theta_threads() * moment_scratch_doubles(s.r))));
    c.workspace_bytes = bytes;
    if (path == Path::Fast)
      c.form = s.fused() ? "θ from key moments + fused AVX-512 score/compare per 64-row tile + "
                           "key-streamed gate and values"
                         : "θ from key moments (statistical) + lane-dot scores per 64-row tile + "
                           "per-row selection and gather over kept keys";
    else
      c.form =
          "θ from key moments (statistical) + lane-dot scores per 64-row tile + "
          "sort/double-precision selection and sums";
    return c;
  }

  // Allocations shared by both paths (the order cost() assumes): per-thread scratch, [K2;V]
  // (per-row fast path) or the keys as lanes (fused path), θ (statistical, computed here).
  struct Buffers {
    float *scratch, *kv = nullptr, *kt = nullptr;
    double* theta = nullptr;
  };
  static Buffers prepare(const SparkDims& s, Path path, const TensorMap& in, Workspace& ws) {
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    Buffers bf;
    bf.scratch = ws.alloc_floats(s.nthreads() * s.per_thread(path));
    if (path == Path::Fast && !s.fused()) {
      bf.kv = ws.alloc_floats(s.B * s.G * s.L * (s.d - s.r + s.dv));
      pack_gate_values(s, k, v, bf.kv);
    }
    if (path == Path::Fast && s.fused()) {
      bf.kt = ws.alloc_floats(s.key_lanes_floats());
      pack_key_lanes(s, k, bf.kt);
    }
    if (s.statistical()) {
      bf.theta = ws.alloc<double>(s.B * s.H * s.L);
      double* z = ws.alloc<double>(s.L + 1);
      double* mscratch = ws.alloc<double>(s.theta_threads() * moment_scratch_doubles(s.r));
      thresholds(s, q, k, z, mscratch, bf.theta);
    }
    return bf;
  }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    const SparkDims s(p);
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    float* o = output(out, "out").data();
    Workspace::Scope scope(ws);
    const Buffers bf = prepare(s, Path::Reference, in, ws);
    const int64_t per = s.per_thread(Path::Reference);
    for_each_tile(
        s, bf.scratch, per, [&](float* mine, int64_t b, int64_t h, int64_t t0, int64_t t1) {
          const int64_t rpm = s.rp_max();
          float* qt = mine;
          float* S = qt + s.pad(s.r * rpm);
          int32_t* idx = reinterpret_cast<int32_t*>(S + s.pad(rpm * s.L) + s.pad(s.L));
          double* w = reinterpret_cast<double*>(idx + s.pad(s.L + 16));  // 2·pad(L) floats
          const int64_t g = h / (s.H / s.G);
          const float* kb = k + (b * s.G + g) * s.L * s.d;
          const float* vb = v + (b * s.G + g) * s.L * s.dv;
          s.subtiles(t0, t1, [&](int64_t i0, int64_t i1) {
            const int64_t rp = pad16(i1 - i0);
            pack_queries(s, q + ((b * s.H + h) * s.L + i0) * s.d, i1 - i0, rp, qt);
            subtile_scores(s, qt, rp, kb, 0, s.jmax(i1), S);
            for (int64_t i = i0; i < i1; ++i) {
              auto si = [&](int64_t j) { return S[j * rp + (i - i0)]; };
              const float* qi = q + ((b * s.H + h) * s.L + i) * s.d;
              const int64_t n = s.visible(i);
              // Selection.
              int64_t m = 0;
              if (n <= s.k) {
                for (int64_t j = 0; j < n; ++j) idx[m++] = int32_t(j);
              } else if (s.statistical()) {
                const double theta = bf.theta[(b * s.H + h) * s.L + i];
                if (std::isfinite(theta))
                  for (int64_t j = 0; j < n; ++j)
                    if (double(si(j)) > theta) idx[m++] = int32_t(j);
              } else {
                for (int64_t j = 0; j < n; ++j) idx[j] = int32_t(j);
                std::sort(idx, idx + n, [&](int32_t a, int32_t c) {
                  return si(a) > si(c) || (si(a) == si(c) && a < c);
                });
                m = s.k;
                std::sort(idx, idx + m);
              }
              if (m == 0) {  // nothing above the threshold: keep the first argmax
                int64_t best = 0;
                for (int64_t j = 1; j < n; ++j)
                  if (si(j) > si(best)) best = j;
                idx[m++] = int32_t(best);
              }
              // Softmax over the kept predictor scores, times the softplus gate, in double.
              double mx = -INFINITY, z = 0;
              for (int64_t t = 0; t < m; ++t) mx = std::max(mx, double(si(idx[t])));
              for (int64_t t = 0; t < m; ++t) {
                const float* kj = kb + int64_t(idx[t]) * s.d;
                double x = 0;
                for (int64_t c = s.r; c < s.d; ++c) x += double(qi[c]) * double(kj[c]);
                x *= s.scale;
                const double e = std::exp(double(si(idx[t])) - mx);
                z += e;
                w[t] = e * (std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))));
              }
              float* oi = o + ((b * s.H + h) * s.L + i) * s.dv;
              for (int64_t c = 0; c < s.dv; ++c) {
                double acc = 0;
                for (int64_t t = 0; t < m; ++t)
                  acc += w[t] * double(vb[int64_t(idx[t]) * s.dv + c]);
                oi[c] = static_cast<float>(acc / z);
              }
            }
          });
        });
  }

  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    const SparkDims s(p);
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    float* o = output(out, "out").data();
    Workspace::Scope scope(ws);
    const Buffers bf = prepare(s, Path::Fast, in, ws);
    const int64_t per = s.per_thread(Path::Fast), w2 = s.d - s.r + s.dv;
    const bool fused = s.fused();
    for_each_tile(
        s, bf.scratch, per, [&](float* mine, int64_t b, int64_t h, int64_t t0, int64_t t1) {
          const int64_t g = h / (s.H / s.G), bh = b * s.H + h;
          const float* kb = k + (b * s.G + g) * s.L * s.d;
          const float* vb = v + (b * s.G + g) * s.L * s.dv;
          double issued = 0;
          if (fused) {
            const FusedScratch fs(s, mine);
            s.subtiles(
                t0, t1,
                [&](int64_t i0, int64_t i1) {
                  issued += fused_subtile(s, q + (bh * s.L + i0) * s.d, bf.theta + bh * s.L + i0,
                                          bf.kt + (b * s.G + g) * s.key_blocks() * s.r * kKeyLanes,
                                          kb, vb, i0, i1 - i0, fs, o + (bh * s.L + i0) * s.dv);
                },
                kFusedRows);
            blas::add_counted_flops(issued);
            return;
          }
          // Per-row path (exact mode, or no AVX-512): subtile scores, then per row a selection and
          // a vectorised gather over the kept keys (kernels/gather.hpp), prefetched a block ahead.
          const float* kvb = bf.kv + (b * s.G + g) * s.L * w2;
          const int64_t rpm = s.rp_max();
          float* qt = mine;
          float* S = qt + s.pad(s.r * rpm);
          float* row = S + s.pad(rpm * s.L);
          int32_t* idx = reinterpret_cast<int32_t*>(row + s.pad(s.L));
          float* w = reinterpret_cast<float*>(idx + s.pad(s.L + 16));
          float* x = w + s.pad(s.L);
          float* sel_scratch = x + s.pad(s.L);  // exact mode only
          const GatherPrefetch pf{kvb, w2, w2};
          s.subtiles(t0, t1, [&](int64_t i0, int64_t i1) {
            const int64_t rp = pad16(i1 - i0), jmax = s.jmax(i1);
            pack_queries(s, q + (bh * s.L + i0) * s.d, i1 - i0, rp, qt);
            subtile_scores(s, qt, rp, kb, 0, jmax, S);
            issued += 2.0 * double(s.r) * double(rp) * double(jmax);
            for (int64_t i = i0; i < i1; ++i) {
              const int64_t n = s.visible(i);
              for (int64_t j = 0; j < n; ++j) row[j] = S[j * rp + (i - i0)];
              const float* qi = q + (bh * s.L + i) * s.d;
              const int64_t m =
                  s.statistical()
                      ? select_above_or_argmax(
                            row, n, compare_threshold(bf.theta[bh * s.L + i], n, s.k), idx)
                      : select_topk(row, n, s.k, s.mode, idx, sel_scratch);
              for (int64_t t = 0; t < m; ++t) w[t] = row[idx[t]];
              // Gate of a block of kept keys: w_t *= softplus(α·q[r:]·k_j[r:]).
              auto gate = [&](float* wt, const int32_t* it, int64_t nb) {
                gather_dots(qi + s.r, kvb, w2, it, nb, s.d - s.r, s.scale, x);
#pragma omp simd
                for (int64_t t = 0; t < nb; ++t) wt[t] *= softplus_approx(x[t]);
              };
              attend_gather_row(w, idx, m, kvb + (s.d - s.r), w2, s.dv, o + (bh * s.L + i) * s.dv,
                                gate, pf);
            }
          });
          blas::add_counted_flops(issued);
        });
  }
};

}  // namespace

const Mechanism& mechanism_spark() {
  static const SparkAttention m;
  return m;
}

}  // namespace kt
