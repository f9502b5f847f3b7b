// Block patterns whose allowed keys, for each query row, are at most two runs of consecutive keys
// (a band, a causal prefix, a prefix plus a suffix, ...). One class drives attend_tiled for every
// such pattern: the tiles it visits follow from the runs of the first and last row of a query
// tile, so a pattern only states its runs. Used by `sparse` (band, residue classes, summary
// columns) and `sinkhorn` (block-local causal masks).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/attend.hpp"

namespace kt {

class IntervalPattern : public BlockPattern {
 public:
  // Fills the two runs of query i of head h. Requirements: the two runs of one row are disjoint,
  // run[0] lies before run[1], and each run's lo and hi are non-decreasing in i (so the keys of a
  // query tile are the span from the first row's lo to the last row's hi).
  virtual void runs(int64_t h, int64_t i, KeyRun run[2]) const = 0;

  bool allowed(int64_t h, int64_t i, int64_t j) const override;
  void key_blocks(int64_t h, int64_t i0, int64_t i1, int64_t lk, int64_t block_k,
                  std::vector<KeyBlock>& out) const override;
  void mask_row(int64_t h, int64_t i, int64_t j0, int64_t j1, float* s) const override;
  bool row_runs(int64_t h, int64_t i, KeyRun run[2]) const override {
    runs(h, i, run);
    return true;
  }
  // Allowed keys of one row (exact, from the runs).
  int64_t row_count(int64_t h, int64_t i) const;
  // Allowed pairs of head h over lq rows: sum of row_count, O(lq).
  int64_t pair_count(int64_t h, int64_t lq) const;
};

}  // namespace kt
