#include "mechanisms/common.hpp"

namespace kt {

std::vector<ParamSpec> tile_params() {
  const TileConfig defaults;
  return {int_param("block_rows",
                    "fast path tile: stacked query rows (positions x heads of a GQA group)",
                    defaults.block_rows, 1, 4096),
          int_param("block_k", "fast path tile: keys per block", defaults.block_k, 1, 4096),
          choice_param("kernel",
                       "fast path tile kernel: fused (AVX-512 microkernels; blas where "
                       "unsupported) or blas (cblas_sgemm per tile)",
                       {"fused", "blas"}, "fused")};
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
