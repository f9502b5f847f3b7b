#include "kernels/blas.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace kt::blas {

namespace {
std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_flops{0};
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (g_counting.load(std::memory_order_relaxed))
    g_flops.fetch_add(2ull * uint64_t(m) * uint64_t(n) * uint64_t(k), std::memory_order_relaxed);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void gemm_parallel(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float beta, float* c, int64_t ldc) {
  const int64_t block = ((m + threads - 1) / threads + 15) & ~int64_t(15);
  const int parts = static_cast<int>(std::max<int64_t>(1, (m + block - 1) / block));
  ThreadsScope single(1);
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part) {
    const int64_t r0 = part * block, rows = std::min(block, m - r0);
    gemm(trans_a, trans_b, rows, n, k, alpha, trans_a ? a + r0 : a + r0 * lda, lda, b, ldb, beta,
         c + r0 * ldc, ldc);
  }
}

void count_flops(bool enabled) {
  g_counting = enabled;
}
double counted_flops() {
  return static_cast<double>(g_flops.load());
}
void add_counted_flops(double flops) {
  if (g_counting.load(std::memory_order_relaxed))
    g_flops.fetch_add(static_cast<uint64_t>(flops), std::memory_order_relaxed);
}
void reset_counted_flops() {
  g_flops = 0;
}

int threads() {
  return openblas_get_num_threads();
}
void set_threads(int n) {
  openblas_set_num_threads(n);
}

std::string vendor() {
  std::string s = openblas_get_config();
  s += " core=";
  s += openblas_get_corename();
  return s;
}

std::string version() {
  std::string s = OPENBLAS_VERSION;
  const auto b = s.find_first_not_of(" OpenBLAS");
  const auto e = s.find_last_not_of(' ');
  return b == std::string::npos ? s : s.substr(b, e - b + 1);
}

}  // namespace kt::blas
