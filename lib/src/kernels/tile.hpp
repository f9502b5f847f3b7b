// Tile kernels of the online softmax (FlashAttention-2 loop, mechanisms-softmax.md §7f, §10):
// one query tile's state (running max m, sum l, un-normalised output A), fed key blocks by a
// driver: attend_tiled's (batch, kv head, query tile) loop, and sparse's band and residue-class
// stages. Two kernels, one interface (a driver is a template over the kernel):
//   start    Q of the tile packed and scaled once; m = -inf, l = 0, A = 0
//   resume   start from a normalised partial result over a disjoint key set (the §0.3 merge
//            done in place): m = lse, l = 1, A = o
//   block    pass 1 S = Q·K_blockᵀ; mask the pairs the pattern forbids (partial blocks);
//            pass 2 m' = max(m, rowmax S), c = exp(m - m'), P = exp(S - m'), l = c·l + rowsum P;
//            pass 3 A = c·A + P·V_block
//   finish   o = A / l, lse = m + log l (0 and -inf for a row that saw no key)
// K and V rows are read in place at any stride (k + j·k_stride); only Q is copied. Both kernels
// count rows x keys x 2(d + dv) flops per block (what tiled_visited_pairs models); on masked
// blocks FusedTile skips, per 16-row group, the keys none of its rows may see (in all three
// passes), so for it the count is an upper bound of the multiply-adds it runs.
//   BlasTile   two cblas_sgemm calls per block and a row-wise softmax (tile.cpp)
//   FusedTile  AVX-512 microkernels, rows of the tile as the vector lanes (padded to 32), the
//              softmax down the columns with no horizontal reductions, masks by vector compares
//              against the rows' key runs (tile_fused.cpp); needs fused_kernel_available()
#pragma once
#include <cstdint>

#include "kernels/attend.hpp"

namespace kt {

// The rows of a query tile in memory: row r at base + (r / per_head)·head_stride +
// (r % per_head)·row_stride (a tile stacks per_head consecutive positions of one or more heads).
template <class T>
struct TileRows {
  T* base = nullptr;
  int64_t row_stride = 0, head_stride = 0, per_head = 1;
  T* at(int64_t r) const {
    return base + (r / per_head) * head_stride + (r % per_head) * row_stride;
  }
};

// The interface both kernels implement (scratch from scratch_floats() per thread, rows <= max_rows,
// n <= block_k). block(): keys [j0, j0 + n); mask null when every pair of the block is allowed,
// else the pattern whose tile row r is query i0 + r % ph of head h0 + r / ph (ph = q.per_head).
// finish(): lse.base may be null; the tile's issued flops reach the BLAS flop counter.

// What both kernels keep per tile row: the un-normalised output A [rows, vdim], m and l.
class TileState {
 public:
  void resume(const TileRows<const float>& o, const TileRows<const float>& lse);

 protected:
  void reset(int64_t rows);                                                // m = -inf, l = 0, A = 0
  void write(const TileRows<float>& o, const TileRows<float>& lse) const;  // o = A / l, lse
  int64_t vdim_ = 0, rows_ = 0;
  float *acc_ = nullptr, *m_ = nullptr, *l_ = nullptr;
};

class BlasTile : public TileState {
 public:
  static int64_t scratch_floats(int64_t max_rows, int64_t dim, int64_t vdim, int64_t block_k);
  BlasTile(float* scratch, int64_t max_rows, int64_t dim, int64_t vdim, int64_t block_k);
  void start(const TileRows<const float>& q, int64_t rows, float scale);
  void block(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t n,
             const BlockPattern* mask, int64_t h0, int64_t i0, int64_t j0);
  void finish(const TileRows<float>& o, const TileRows<float>& lse);

 private:
  int64_t dim_, bk_, per_head_ = 1;
  float *q_, *s_;
};

class FusedTile : public TileState {
 public:
  static int64_t scratch_floats(int64_t max_rows, int64_t dim, int64_t vdim, int64_t block_k);
  FusedTile(float* scratch, int64_t max_rows, int64_t dim, int64_t vdim, int64_t block_k);
  void start(const TileRows<const float>& q, int64_t rows, float scale);
  void block(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t n,
             const BlockPattern* mask, int64_t h0, int64_t i0, int64_t j0);
  void finish(const TileRows<float>& o, const TileRows<float>& lse);

 private:
  int64_t dim_, bk_, rp_max_, rp_ = 0, per_head_ = 1;
  double issued_ = 0;
  float *qt_, *st_, *corr_, *mask_buf_;
  int32_t* runs_;  // [4][rp]: lo0, hi0, lo1, hi1 of each row, relative to the block
};

// Lane kernels: the microkernels of FusedTile as small matrix products whose result rows are the
// vector lanes, for operands that stay in L1 (no packing beyond pack_lanes, no per-call BLAS
// overhead). Need fused_kernel_available(); the products add their flops to the BLAS counter.
//   pack_lanes       AT[c][r] = scale·a.at(r)[c] for r < rows, zero for rows <= r < rp
//                    (rp a multiple of 16; AT is [dim, rp])
//   lane_dots        XT[j][r] = sum_c Y[j][c]·AT[c][r] for j < n, r < rp (rp a multiple of 16),
//                    each one FMA chain in increasing c from 0: bit-identical whatever the tile
//                    width or code path (the AVX-512 microkernel, or a scalar std::fma fallback
//                    chosen at run time, the one lane kernel that runs without AVX-512; spark's
//                    reference and fast paths rely on it). Counts no flops.
//   lane_scores      lane_dots that adds its flops to the counter (AVX-512 only)
//   lane_accumulate  acc[r][:vdim] = corr[r]·acc[r][:vdim] + sum_j X[j][r]·Y[j][:vdim] for
//                    r < rows (X: [n, rp]; acc rows ldacc apart; corr null: 1). lower: X is
//                    zero above the diagonal (X[j][r] = 0 for j > r), so each group of 16 rows
//                    stops at its last row's key; lane_accumulate_flops is what it counts.
void pack_lanes(const TileRows<const float>& a, int64_t rows, int64_t dim, float scale, float* at,
                int64_t rp);
void lane_dots(const float* qt, int64_t rp, const float* k, int64_t ldk, int64_t n, int64_t dim,
               float* st);
void lane_scores(const float* at, int64_t rp, const float* y, int64_t y_stride, int64_t n,
                 int64_t dim, float* xt);
void lane_accumulate(const float* x, int64_t rp, int64_t rows, int64_t n, const float* y,
                     int64_t y_stride, int64_t vdim, float* acc, int64_t ldacc,
                     const float* corr = nullptr, bool lower = false);
double lane_accumulate_flops(int64_t rows, int64_t n, int64_t vdim, bool lower);

}  // namespace kt
