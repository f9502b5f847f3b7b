#include "kernels/project.hpp"

#include <vector>

#include "kernels/blas.hpp"

namespace kt {

void project(const float* x, const float* w, float* y, int64_t rows, int64_t n_in, int64_t n_out,
             int threads, int64_t ldy) {
  blas::gemm_parallel(threads, false, false, rows, n_out, n_in, 1.0f, x, n_in, w, n_out, 0.0f, y,
                      ldy ? ldy : n_out);
}

void project_reference(const float* x, const float* w, float* y, int64_t rows, int64_t n_in,
                       int64_t n_out, int threads, int64_t ldy) {
  if (!ldy) ldy = n_out;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> acc(n_out, 0.0);
    for (int64_t i = 0; i < n_in; ++i) {
      const double xi = x[r * n_in + i];
      const float* wi = w + i * n_out;
      for (int64_t o = 0; o < n_out; ++o) acc[o] += xi * double(wi[o]);
    }
    for (int64_t o = 0; o < n_out; ++o) y[r * ldy + o] = static_cast<float>(acc[o]);
  }
}

}  // namespace kt
