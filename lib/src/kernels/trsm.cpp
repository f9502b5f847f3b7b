#include "kernels/trsm.hpp"

#include "kernels/blas.hpp"
#include "kernels/tile.hpp"

namespace kt {

namespace {

// Forward substitution inside the block rows [i0, i1): x_i -= Σ_{i0 <= j < i} a_ij·x_j,
// vectorised across the right-hand sides.
void substitute_block(int64_t i0, int64_t i1, int64_t n, const float* a, int64_t lda, float* x,
                      int64_t ldx) {
  for (int64_t i = i0 + 1; i < i1; ++i) {
    float* xi = x + i * ldx;
    for (int64_t j = i0; j < i; ++j) {
      const float aij = a[i * lda + j];
      const float* xj = x + j * ldx;
#pragma omp simd
      for (int64_t col = 0; col < n; ++col) xi[col] -= aij * xj[col];
    }
  }
}

}  // namespace

void solve_unit_lower(int64_t c, int64_t n, const float* a, int64_t lda, float* x, int64_t ldx,
                      int64_t block) {
  for (int64_t i0 = 0; i0 < c; i0 += block) {
    const int64_t i1 = i0 + block < c ? i0 + block : c;
    if (i0 > 0)
      blas::gemm(false, false, i1 - i0, n, i0, -1.0f, a + i0 * lda, lda, x, ldx, 1.0f, x + i0 * ldx,
                 ldx);
    substitute_block(i0, i1, n, a, lda, x, ldx);
  }
}

void solve_unit_lower_lanes(int64_t c, int64_t n, const float* a, int64_t lda, float* x,
                            int64_t ldx, int64_t block, float* at) {
  for (int64_t i0 = 0; i0 < c; i0 += block) {
    const int64_t i1 = i0 + block < c ? i0 + block : c, rows = i1 - i0, rp = (rows + 15) / 16 * 16;
    if (i0 > 0) {  // X[I] -= A[I, <I]·X[<I]: -A[I, <I]ᵀ as lanes, then one lane product
      pack_lanes({a + i0 * lda, lda, 0, rows}, rows, i0, -1.0f, at, rp);
      lane_accumulate(at, rp, rows, i0, x, ldx, n, x + i0 * ldx, ldx);
    }
    substitute_block(i0, i1, n, a, lda, x, ldx);
  }
}

double solve_unit_lower_gemm_flops(int64_t c, int64_t n, int64_t block) {
  double f = 0;
  for (int64_t i0 = block; i0 < c; i0 += block) {
    const int64_t rows = i0 + block < c ? block : c - i0;
    f += 2.0 * double(rows) * double(n) * double(i0);
  }
  return f;
}

}  // namespace kt
