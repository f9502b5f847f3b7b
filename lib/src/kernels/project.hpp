// Projections y[rows, n_out] = x[rows, n_in] · w[n_in, n_out] (weights are [in, out], row-major).
#pragma once
#include <cstdint>

namespace kt {

// BLAS, rows split over `threads` OpenMP threads (blas::gemm_parallel; call outside OpenMP
// regions). ldy defaults to n_out.
void project(const float* x, const float* w, float* y, int64_t rows, int64_t n_in, int64_t n_out,
             int threads, int64_t ldy = 0);
// Plain triple loop with double accumulation, rows in parallel (the reference).
void project_reference(const float* x, const float* w, float* y, int64_t rows, int64_t n_in,
                       int64_t n_out, int threads, int64_t ldy = 0);

}  // namespace kt
