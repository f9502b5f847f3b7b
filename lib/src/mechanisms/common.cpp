#include "mechanisms/common.hpp"

namespace kt {

std::vector<ParamSpec> tile_params() {
  ParamSpec rows;
  rows.name = "block_rows";
  rows.type = ParamType::Int;
  rows.help = "fast path tile: stacked query rows (positions x heads of a GQA group)";
  rows.default_value = int64_t{TileConfig{}.block_rows};
  rows.min = 1;
  rows.max = 4096;
  ParamSpec keys = rows;
  keys.name = "block_k";
  keys.help = "fast path tile: keys per block";
  keys.default_value = int64_t{TileConfig{}.block_k};
  ParamSpec kernel;
  kernel.name = "kernel";
  kernel.type = ParamType::Choice;
  kernel.help =
      "fast path tile kernel: fused (AVX-512 microkernels; blas where unsupported) or "
      "blas (cblas_sgemm per tile)";
  kernel.default_value = std::string("fused");
  kernel.choices = {"fused", "blas"};
  return {rows, keys, kernel};
}

TileConfig tile_config(const Params& p) {
  TileConfig cfg;
  cfg.block_rows = p.i("block_rows");
  cfg.block_k = p.i("block_k");
  cfg.kernel = p.s("kernel") == "blas" ? TileKernel::Blas : TileKernel::Fused;
  return cfg;
}

void add_softmax_cost(CostModel& c, double slices, double pairs, double lq, double dim,
                      double vdim) {
  c.flops += slices * 2 * pairs * (dim + vdim);
  // (n_i - 1) compares + n_i subtracts + (n_i - 1) adds per row; scale folded into q (lq·d);
  // deferred normalisation lq·vdim multiplies + lq reciprocals.
  c.elementwise += slices * (3 * pairs - 2 * lq + lq * dim + lq * vdim + lq);
  c.transcendentals += slices * (pairs + lq);  // exps, plus one log per row for lse
}

}  // namespace kt
