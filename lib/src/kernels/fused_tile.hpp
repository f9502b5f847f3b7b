// FusedTile: the tuned AVX-512 tile kernel (attend_fused.cpp) as a building block that a driver
// feeds key blocks: attend_fused's (batch, kv head, query tile) loop, and sparse's band and
// residue-class stages. The tile's query rows are the vector lanes (padded to 32):
//   start    pack QT[c][r] = scale·q[r][c]; m = -inf, l = 0, A = 0
//   resume   start from a normalised partial result over a disjoint key set (the §0.3 merge
//            done in place): m = lse, l = 1, A = o
//   block    pass 1 ST[j][r] = sum_c K[j][c]·QT[c][r]   (32 rows x 6 keys, K[j][c] broadcast)
//            mask (vector compares against the rows' key runs, or the pattern's mask_row)
//            pass 2 online softmax down each column of ST, 16 rows per vector
//            pass 3 A[r][:] = corr[r]·A[r][:] + sum_j ST[j][r]·V[j][:]   (6 rows x 64 values)
//   finish   o = A / l, lse = m + log l (0 and -inf for a row that saw no key)
// K and V rows are read in place at any stride; only Q is packed, once per tile. Requires
// fused_kernel_available() (AVX-512F/DQ); drivers fall back to BLAS tiles otherwise.
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

class FusedTile {
 public:
  // Per-thread scratch, in floats, of a tile of at most max_rows rows and block_k keys per block.
  static int64_t scratch_floats(int64_t max_rows, int64_t dim, int64_t vdim, int64_t block_k);
  FusedTile(float* scratch, int64_t max_rows, int64_t dim, int64_t vdim, int64_t block_k);

  void start(const TileRows<const float>& q, int64_t rows, float scale);
  void resume(const TileRows<const float>& o, const TileRows<const float>& lse);
  // The keys [j0, j0 + n), n <= block_k, row j at k + j·k_stride and v + j·v_stride. mask: null
  // when every pair of the block is allowed, else the pattern whose row r is query i0 + r % ph of
  // head h0 + r / ph (ph = start's q.per_head).
  void block(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t n,
             const BlockPattern* mask, int64_t h0, int64_t i0, int64_t j0);
  // Writes the rows (lse.base may be null) and adds the tile's issued flops to the BLAS counter.
  void finish(const TileRows<float>& o, const TileRows<float>& lse);

 private:
  int64_t dim_, vdim_, bk_, rp_max_;
  int64_t rows_ = 0, rp_ = 0, per_head_ = 1;
  double issued_ = 0;
  float *qt_, *st_, *acc_, *m_, *l_, *corr_, *mask_buf_;
  int32_t* runs_;  // [4][rp]: lo0, hi0, lo1, hi1 of each row, relative to the block
};

}  // namespace kt
