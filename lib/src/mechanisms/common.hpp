// Helpers shared by mechanism files: tensor lookup and the cost terms of softmax attention.
#pragma once
#include <cmath>
#include <string>

#include "kernels/attend.hpp"
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
