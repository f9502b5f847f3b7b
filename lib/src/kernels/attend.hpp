// Softmax attention building blocks shared by every softmax mechanism (mechanisms-softmax.md §10):
//   attend_reference  dense masked reference: materialises the Lq x Lk scores of one (b, h) slice
//   attend_tiled      FlashAttention-2 style online softmax over the tiles a BlockPattern visits
//   merge_partial     merge of two (m, l, acc) partial softmax results over disjoint key sets
// Both kernels compute, for every (b, h) and query i over the keys j the pattern allows,
//   o_i = sum_j softmax_j(scale · q_i·k_j) v_j,   lse_i = log sum_j exp(scale · q_i·k_j)
// and give o_i = 0, lse_i = -inf for a row with no allowed key (never NaN).
#pragma once
#include <cstdint>
#include <vector>

#include "kittention/workspace.hpp"

namespace kt {

// Per-head matrices in memory: element (b, h, i, c) is at
// data[b·batch_stride + h·head_stride + i·row_stride + c]; c is contiguous.
template <class T>
struct HeadsViewT {
  T* data = nullptr;
  int64_t batch_stride = 0, head_stride = 0, row_stride = 0;
  T* row(int64_t b, int64_t h, int64_t i) const {
    return data + b * batch_stride + h * head_stride + i * row_stride;
  }
  // [B, H, L, d] contiguous.
  static HeadsViewT bhld(T* p, int64_t heads, int64_t len, int64_t dim) {
    return {p, heads * len * dim, len * dim, dim};
  }
  // [B, L, H, d] contiguous (what a projection x·W produces): no transpose needed.
  static HeadsViewT blhd(T* p, int64_t heads, int64_t len, int64_t dim) {
    return {p, len * heads * dim, dim, heads * dim};
  }
};
using HeadsView = HeadsViewT<const float>;
using HeadsOut = HeadsViewT<float>;

struct AttendProblem {
  int64_t batch = 1, heads = 1, kv_heads = 1;  // query head h reads kv head h / (heads / kv_heads)
  int64_t lq = 0, lk = 0, dim = 0, vdim = 0;
  float scale = 1;
  HeadsView q, k,
      v;       // q: [.., heads, lq, dim]; k: [.., kv_heads, lk, dim]; v: [.., kv_heads, lk, vdim]
  HeadsOut o;  // [.., heads, lq, vdim]
  float* lse = nullptr;  // optional [batch, heads, lq], natural log
  int threads = 1;
  int64_t group_size() const { return heads / kv_heads; }
};

// A run of keys [j0, j1) visited for a tile of queries; partial: not every pair in the tile is
// allowed, so the kernel applies the mask inside the tile.
struct KeyBlock {
  int64_t j0, j1;
  bool partial;
};

// A run of consecutive keys [lo, hi) one query row may see; empty when lo >= hi.
struct KeyRun {
  int64_t lo = 0, hi = 0;
};

// Which (query, key) pairs a mechanism attends, per head.
class BlockPattern {
 public:
  virtual ~BlockPattern() = default;
  virtual bool allowed(int64_t h, int64_t i, int64_t j) const = 0;
  // Appends, in increasing j, blocks of at most block_k keys within [0, lk) that hold every allowed
  // pair of the queries [i0, i1) of head h. Blocks without allowed pairs should be left out.
  virtual void key_blocks(int64_t h, int64_t i0, int64_t i1, int64_t lk, int64_t block_k,
                          std::vector<KeyBlock>& out) const = 0;
  // Keys visited for the queries [i0, i1): the total width of key_blocks(). Patterns with a closed
  // form override it (cost models call it for every query tile).
  virtual int64_t keys_visited(int64_t h, int64_t i0, int64_t i1, int64_t lk,
                               int64_t block_k) const;
  // Sets s[j - j0] = -inf for each key j in [j0, j1) that query i of head h may not see.
  virtual void mask_row(int64_t h, int64_t i, int64_t j0, int64_t j1, float* s) const;
  // True when heads differ in their pattern (then GQA query heads are not stacked into one GEMM).
  virtual bool per_head() const { return false; }
  // Patterns whose allowed keys of a row are at most two runs (run[0] before run[1]) return true
  // and fill them; the fused kernel then masks a tile with vector compares instead of mask_row.
  virtual bool row_runs(int64_t, int64_t, KeyRun[2]) const { return false; }
};

// Every key (causal = false), or keys j <= i + (lk - lq) (causal, bottom-right aligned, §0.2).
class DensePattern final : public BlockPattern {
 public:
  DensePattern(bool causal, int64_t lq, int64_t lk) : causal_(causal), offset_(lk - lq) {}
  bool allowed(int64_t, int64_t i, int64_t j) const override {
    return !causal_ || j <= i + offset_;
  }
  void key_blocks(int64_t h, int64_t i0, int64_t i1, int64_t lk, int64_t block_k,
                  std::vector<KeyBlock>& out) const override;
  int64_t keys_visited(int64_t h, int64_t i0, int64_t i1, int64_t lk,
                       int64_t block_k) const override;
  void mask_row(int64_t h, int64_t i, int64_t j0, int64_t j1, float* s) const override;
  bool row_runs(int64_t, int64_t i, KeyRun run[2]) const override {
    run[0] = {0, causal_ ? i + offset_ + 1 : INT64_MAX};
    run[1] = {};
    return true;
  }

 private:
  bool causal_;
  int64_t offset_;
};

// How a tile is computed: "blas" (two cblas_sgemm calls and a row-wise softmax pass) or "fused"
// (tile.hpp, FusedTile: AVX-512 microkernels, Q packed once per tile, K/V read in place; needs
// AVX-512F/DQ at run time, otherwise "blas" is used).
enum class TileKernel { Blas, Fused };

struct TileConfig {
  int64_t block_rows = 256;  // stacked query rows per tile (query positions x heads of a group)
  int64_t block_k = 512;     // keys per tile
  TileKernel kernel = TileKernel::Fused;
  int64_t block_q(int64_t group) const;  // query positions per tile for `group` stacked heads
  TileKernel effective_kernel() const;   // kernel, or Blas when Fused is not supported here
};

bool fused_kernel_available();

// Dense masked reference: per (b, h) the full Lq x Lk score matrix (float, from ws), dot products
// and softmax sums accumulated in double. Only pattern.allowed() is used.
void attend_reference(const AttendProblem& p, const BlockPattern& pattern, Workspace& ws);

// Tiled online softmax (FlashAttention-2 loop order, mechanisms-softmax.md §7f). Work items are
// (b, kv head, query tile), spread over p.threads OpenMP threads with BLAS single-threaded inside.
// The query heads of a GQA group are stacked into one tile (one GEMM against the shared K/V
// block) unless the pattern is per-head. Each tile runs the passes of tile.hpp (S = Q·K_blockᵀ,
// mask, online softmax, A = c·A + P·V_block per key block; O = A / l) with the kernel cfg names
// (BlasTile or FusedTile). Workspace per thread: one tile's scratch, independent of L.
void attend_tiled(const AttendProblem& p, const BlockPattern& pattern, Workspace& ws,
                  const TileConfig& cfg = {});

// Pairs the tiled kernel computes (sum over tiles of rows x visited keys) for head h, and the
// exactly allowed pairs counted by brute force (tests, small sizes).
int64_t tiled_visited_pairs(const BlockPattern& pattern, int64_t h, int64_t lq, int64_t lk,
                            int64_t group, const TileConfig& cfg = {});
int64_t count_allowed_pairs(const BlockPattern& pattern, int64_t h, int64_t lq, int64_t lk);

// Analytic per-thread workspace of attend_tiled, in bytes.
// Tiles are clamped to the lengths as the kernels clamp them (lq, lk: the problem's lengths).
double tiled_workspace_bytes(int64_t dim, int64_t vdim, int64_t group, const TileConfig& cfg = {},
                             int64_t lq = INT64_MAX, int64_t lk = INT64_MAX);

// Merges partial softmax state (m2, l2, acc2) into (m, l, acc) over a disjoint key set (§0.3):
// m' = max(m, m2), l = e^{m-m'}·l + e^{m2-m'}·l2, acc = e^{m-m'}·acc + e^{m2-m'}·acc2.
void merge_partial(float& m, float& l, float* acc, float m2, float l2, const float* acc2,
                   int64_t vdim);

}  // namespace kt
