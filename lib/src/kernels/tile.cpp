// TileState (shared rows of both tile kernels) and BlasTile (tile.hpp): per block two
// cblas_sgemm calls (through blas::gemm, which counts their flops) and a row-wise softmax pass.
#include "kernels/tile.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/blas.hpp"
#include "kernels/vexp.hpp"

namespace kt {

void TileState::reset(int64_t rows) {
  rows_ = rows;
  std::fill(m_, m_ + rows, -INFINITY);
  std::fill(l_, l_ + rows, 0.0f);
  std::fill(acc_, acc_ + rows * vdim_, 0.0f);
}

void TileState::resume(const TileRows<const float>& o, const TileRows<const float>& lse) {
  for (int64_t r = 0; r < rows_; ++r) {
    const float m0 = *lse.at(r);
    m_[r] = m0;
    l_[r] = m0 == -INFINITY ? 0.0f : 1.0f;
    float* a = acc_ + r * vdim_;
    if (m0 == -INFINITY)
      std::fill(a, a + vdim_, 0.0f);
    else
      std::copy(o.at(r), o.at(r) + vdim_, a);
  }
}

void TileState::write(const TileRows<float>& o, const TileRows<float>& lse) const {
  for (int64_t r = 0; r < rows_; ++r) {
    float* dst = o.at(r);
    const float inv = l_[r] > 0 ? 1.0f / l_[r] : 0.0f;
    const float* ar = acc_ + r * vdim_;
    for (int64_t c = 0; c < vdim_; ++c) dst[c] = ar[c] * inv;
    if (lse.base) *lse.at(r) = l_[r] > 0 ? m_[r] + std::log(l_[r]) : -INFINITY;
  }
}

int64_t BlasTile::scratch_floats(int64_t max_rows, int64_t dim, int64_t vdim, int64_t bk) {
  return max_rows * (dim + bk + vdim + 2);
}

BlasTile::BlasTile(float* scratch, int64_t max_rows, int64_t dim, int64_t vdim, int64_t bk)
    : dim_(dim), bk_(bk) {
  vdim_ = vdim;
  q_ = scratch;                 // [rows, dim]   scaled queries
  s_ = q_ + max_rows * dim;     // [rows, bk]    scores, then probabilities
  acc_ = s_ + max_rows * bk;    // [rows, vdim]  un-normalised output
  m_ = acc_ + max_rows * vdim;  // [rows]
  l_ = m_ + max_rows;           // [rows]
}

void BlasTile::start(const TileRows<const float>& q, int64_t rows, float scale) {
  reset(rows);
  per_head_ = q.per_head;
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = q.at(r);
    float* dst = q_ + r * dim_;
    for (int64_t c = 0; c < dim_; ++c) dst[c] = src[c] * scale;
  }
}

void BlasTile::block(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t n,
                     const BlockPattern* mask, int64_t h0, int64_t i0, int64_t j0) {
  blas::gemm(false, true, rows_, n, dim_, 1.0f, q_, dim_, k, k_stride, 0.0f, s_, bk_);
  for (int64_t r = 0; r < rows_; ++r) {
    float* sr = s_ + r * bk_;
    if (mask) mask->mask_row(h0 + r / per_head_, i0 + r % per_head_, j0, j0 + n, sr);
    const float m_new = std::max(m_[r], row_max(sr, n));
    if (m_new == -INFINITY) {  // nothing allowed yet in this row: contribute zeros
      std::fill(sr, sr + n, 0.0f);
      continue;
    }
    const float c = exp_approx(m_[r] - m_new);  // 0 when m = -inf
    l_[r] = c * l_[r] + exp_shift_sum(sr, n, m_new);
    if (c != 1.0f) scale_row(acc_ + r * vdim_, vdim_, c);
    m_[r] = m_new;
  }
  blas::gemm(false, false, rows_, vdim_, n, 1.0f, s_, bk_, v, v_stride, 1.0f, acc_, vdim_);
}

void BlasTile::finish(const TileRows<float>& o, const TileRows<float>& lse) {
  write(o, lse);
}

}  // namespace kt
