// BLAS wrappers. Every matrix product of the library goes through gemm(), which can count the FLOPs
// it issues (2·M·N·K), so tests check the analytic FLOP model against what the fast path really
// does.
#pragma once
#include <cstdint>
#include <string>

namespace kt::blas {

// Row-major C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// gemm with the rows of C split over `threads` OpenMP threads (contiguous blocks, multiples of 16
// rows), BLAS single-threaded in each; call outside OpenMP regions. The library runs one thread
// pool, OpenMP's: with OpenBLAS' pool used for the large products and OpenMP's for the kernels,
// the two pools' spin-waits competed for the cores (mha at L = 256 ran 1.7x slower on 2 threads
// than on 1).
void gemm_parallel(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float beta, float* c, int64_t ldc);

// FLOP counter (process-wide, thread-safe). Off by default.
void count_flops(bool enabled);
double counted_flops();
void reset_counted_flops();
// For kernels that do their matrix work without BLAS (FusedTile): adds to the same counter.
void add_counted_flops(double flops);

// OpenBLAS' own thread count. Inside OpenMP regions kernels run BLAS with one thread.
int threads();
void set_threads(int n);

// Sets BLAS to `n` threads for its lifetime, then restores the previous count.
class ThreadsScope {
 public:
  explicit ThreadsScope(int n) : previous_(threads()) { set_threads(n); }
  ~ThreadsScope() { set_threads(previous_); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int previous_;
};

std::string vendor();   // e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Cooperlake MAX_THREADS=64"
std::string version();  // e.g. "0.3.21"

}  // namespace kt::blas
