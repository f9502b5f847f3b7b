// Unit-lower-triangular solve (TRSM) for small chunked systems, e.g. the UT transform of the
// delta rule (mechanisms-linear.md §2.3): X ← (I + tril(A, -1))⁻¹ X. Blocked: rows in blocks of
// `block`; block I first subtracts A[I, <I]·X[<I] with one blas::gemm (so the FLOP counter sees
// it), then forward-substitutes inside the block, vectorised across the right-hand sides.
// Total cost c(c-1)·n FLOPs, exactly (spec §0.2): GEMM part plus substitution part.
#pragma once
#include <cstdint>

namespace kt {

// a: c x c (only the strict lower triangle is read; the unit diagonal is implied), x: c x n,
// solved in place. block >= 1.
void solve_unit_lower(int64_t c, int64_t n, const float* a, int64_t lda, float* x, int64_t ldx,
                      int64_t block);

// The same solve with the block updates on the lane kernels (tile.hpp; needs
// fused_kernel_available()): A[I, <I] packed as lanes into `at` (ceil16(block) x (c - 1) floats
// at most), one lane_accumulate per block instead of an sgemm call (OpenBLAS' packing dominates
// at these sizes). Counts the same flops.
void solve_unit_lower_lanes(int64_t c, int64_t n, const float* a, int64_t lda, float* x,
                            int64_t ldx, int64_t block, float* at);

// FLOPs solve_unit_lower and solve_unit_lower_lanes issue through blas::gemm or the lane kernels
// (the rest, c(c-1)n minus this, is the in-block substitution).
double solve_unit_lower_gemm_flops(int64_t c, int64_t n, int64_t block);

}  // namespace kt
