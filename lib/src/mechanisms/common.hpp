// Helpers shared by mechanism files: tensor lookup and the cost terms of softmax attention.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/attend.hpp"
#include "kernels/blas.hpp"
#include "kernels/vexp.hpp"
#include "kittention/error.hpp"
#include "kittention/mechanism.hpp"

namespace kt {

inline const Tensor& input(const TensorMap& in, const std::string& name) {
  auto it = in.find(name);
  KT_ASSERT(it != in.end(), "missing input '" + name + "'");
  return it->second;
}
inline Tensor& output(TensorMap& out, const std::string& name) {
  auto it = out.find(name);
  KT_ASSERT(it != out.end(), "missing output '" + name + "'");
  return it->second;
}

// Threads a per-(b, h) loop uses: min(batch·heads, threads).
inline int slice_threads(const Params& p) {
  return static_cast<int>(std::min<int64_t>(p.i("batch") * p.i("heads"), p.i("threads")));
}

// Runs body(thread scratch, slice) for every (b, h) slice over slice_threads(p) OpenMP threads
// (one slice at a time, dynamically), `per` floats of arena scratch per thread, BLAS
// single-threaded inside, FTZ/DAZ on.
template <class Body>
void for_each_slice(const Params& p, int64_t per, Workspace& ws, Body&& body) {
  const int nthreads = slice_threads(p);
  const int64_t slices = p.i("batch") * p.i("heads");
  Workspace::Scope scope(ws);
  float* scratch = ws.alloc_floats(per * nthreads);
  blas::ThreadsScope blas_single(1);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t bh = 0; bh < slices; ++bh) {
    FlushDenormals ftz;
    body(scratch + per * omp_get_thread_num(), bh);
  }
}

// Tile sizes from the resolved `block_rows`, `block_k` parameters (see tile_params()).
TileConfig tile_config(const Params& p);
std::vector<ParamSpec> tile_params();  // block_rows, block_k, kernel: tuning knobs of attend_tiled

// Softmax attention cost terms for one (b, h) slice with `pairs` allowed (query, key) pairs over
// lq query rows (mechanisms-softmax.md §0.4), scaled by `slices`: matmul flops, elementwise ops,
// exps + logs, added into c.
void add_softmax_cost(CostModel& c, double slices, double pairs, double lq, double dim,
                      double vdim);

// Causal pair count with Lq = Lk = L: L(L+1)/2.
inline double causal_pairs(double len) {
  return len * (len + 1) / 2;
}

}  // namespace kt
