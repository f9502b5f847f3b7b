#include "kernels/attend.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/blas.hpp"
#include "kernels/tile.hpp"
#include "kernels/vexp.hpp"
#include "kittention/error.hpp"

namespace kt {

namespace {

void check_problem(const AttendProblem& p) {
  KT_ASSERT(p.batch >= 1 && p.heads >= 1 && p.kv_heads >= 1, "empty batch or heads");
  KT_ASSERT(p.heads % p.kv_heads == 0, "kv_heads must divide heads");
  KT_ASSERT(p.lq >= 0 && p.lk >= 0 && p.dim >= 1 && p.vdim >= 1, "bad extents");
  KT_ASSERT(p.q.data && p.k.data && p.v.data && p.o.data, "null tensor");
  KT_ASSERT(p.threads >= 1, "threads must be >= 1");
}

}  // namespace

void BlockPattern::mask_row(int64_t h, int64_t i, int64_t j0, int64_t j1, float* s) const {
  for (int64_t j = j0; j < j1; ++j)
    if (!allowed(h, i, j)) s[j - j0] = -INFINITY;
}

void DensePattern::key_blocks(int64_t, int64_t i0, int64_t i1, int64_t lk, int64_t block_k,
                              std::vector<KeyBlock>& out) const {
  // Causal: keys up to the last query's diagonal; blocks that reach past the first query's
  // diagonal are partial.
  const int64_t end = causal_ ? std::min(lk, i1 - 1 + offset_ + 1) : lk;
  for (int64_t j0 = 0; j0 < end; j0 += block_k) {
    const int64_t j1 = std::min(end, j0 + block_k);
    out.push_back({j0, j1, causal_ && j1 - 1 > i0 + offset_});
  }
}

int64_t DensePattern::keys_visited(int64_t, int64_t, int64_t i1, int64_t lk, int64_t) const {
  return causal_ ? std::clamp<int64_t>(i1 + offset_, 0, lk) : lk;
}

int64_t BlockPattern::keys_visited(int64_t h, int64_t i0, int64_t i1, int64_t lk,
                                   int64_t block_k) const {
  std::vector<KeyBlock> blocks;
  key_blocks(h, i0, i1, lk, block_k, blocks);
  int64_t n = 0;
  for (const auto& kb : blocks) n += kb.j1 - kb.j0;
  return n;
}

void DensePattern::mask_row(int64_t, int64_t i, int64_t j0, int64_t j1, float* s) const {
  if (!causal_) return;
  for (int64_t j = std::max(j0, i + offset_ + 1); j < j1; ++j) s[j - j0] = -INFINITY;
}

int64_t TileConfig::block_q(int64_t group) const {
  return std::max<int64_t>(16, block_rows / std::max<int64_t>(1, group));
}

TileKernel TileConfig::effective_kernel() const {
  return kernel == TileKernel::Fused && !fused_kernel_available() ? TileKernel::Blas : kernel;
}

double tiled_workspace_bytes(int64_t dim, int64_t vdim, int64_t group, const TileConfig& cfg,
                             int64_t lq, int64_t lk) {
  const int64_t rows = std::min(cfg.block_q(group), std::max<int64_t>(1, lq)) * group;
  const int64_t bk = std::min(cfg.block_k, std::max<int64_t>(1, lk));
  if (cfg.effective_kernel() == TileKernel::Fused)
    return 4.0 * double(FusedTile::scratch_floats(rows, dim, vdim, bk));
  return 4.0 * double(BlasTile::scratch_floats(rows, dim, vdim, bk));
}

// ---------------------------------------------------------------------------------------------
// Reference: one (b, h) slice at a time, its scores materialised; rows in parallel.
void attend_reference(const AttendProblem& p, const BlockPattern& pattern, Workspace& ws) {
  check_problem(p);
  Workspace::Scope scope(ws);
  float* scores = ws.alloc_floats(std::max<int64_t>(1, p.lq * p.lk));
  const int64_t group = p.group_size();
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h) {
      const int64_t g = h / group;
#pragma omp parallel for num_threads(p.threads) schedule(static)
      for (int64_t i = 0; i < p.lq; ++i) {
        float* s = scores + i * p.lk;
        const float* qi = p.q.row(b, h, i);
        // Pass 1: scores and row max.
        double m = -INFINITY;
        for (int64_t j = 0; j < p.lk; ++j) {
          if (!pattern.allowed(h, i, j)) {
            s[j] = -INFINITY;
            continue;
          }
          const float* kj = p.k.row(b, g, j);
          double dot = 0;
          for (int64_t c = 0; c < p.dim; ++c) dot += double(qi[c]) * double(kj[c]);
          s[j] = static_cast<float>(dot * p.scale);
          m = std::max(m, double(s[j]));
        }
        // Pass 2: exponentials, their sum and the weighted sum of values.
        float* oi = p.o.row(b, h, i);
        std::vector<double> acc(p.vdim, 0.0);
        double l = 0;
        if (m != -INFINITY)
          for (int64_t j = 0; j < p.lk; ++j) {
            if (s[j] == -INFINITY) continue;
            const double e = std::exp(double(s[j]) - m);
            l += e;
            const float* vj = p.v.row(b, g, j);
            for (int64_t c = 0; c < p.vdim; ++c) acc[c] += e * double(vj[c]);
          }
        // Pass 3: deferred normalisation; an empty row gives 0 and lse = -inf.
        for (int64_t c = 0; c < p.vdim; ++c) oi[c] = l > 0 ? static_cast<float>(acc[c] / l) : 0.0f;
        if (p.lse) p.lse[(b * p.heads + h) * p.lq + i] = l > 0 ? float(m + std::log(l)) : -INFINITY;
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Tiled online softmax: work items (b, kv head, query tile), largest (latest) tiles first (with a
// causal pattern they carry the most work); one tile kernel state per thread.
namespace {

template <class Tile>
void run_tiles(const AttendProblem& p, const BlockPattern& pattern, Workspace& ws,
               const TileConfig& cfg) {
  // Stack the query heads of a group when they share a pattern; otherwise one head per item.
  const int64_t group = pattern.per_head() ? 1 : p.group_size();
  const int64_t units = p.heads / group;  // kv heads, or query heads when not stacked
  const int64_t bq = std::min(cfg.block_q(group), p.lq);
  const int64_t bk = std::min(cfg.block_k, std::max<int64_t>(1, p.lk));
  const int64_t max_rows = bq * group;
  const int64_t tiles = (p.lq + bq - 1) / bq;
  const int64_t items = p.batch * units * tiles;
  const int nthreads = static_cast<int>(std::min<int64_t>(p.threads, items));
  const int64_t per_thread = Tile::scratch_floats(max_rows, p.dim, p.vdim, bk);
  Workspace::Scope scope(ws);
  float* scratch = ws.alloc_floats(per_thread * nthreads);
  blas::ThreadsScope blas_single(1);

#pragma omp parallel num_threads(nthreads)
  {
    FlushDenormals ftz;
    Tile tile(scratch + per_thread * omp_get_thread_num(), max_rows, p.dim, p.vdim, bk);
    std::vector<KeyBlock> blocks;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = tiles - 1 - item % tiles;
      const int64_t u = (item / tiles) % units, b = item / (tiles * units);
      const int64_t i0 = t * bq, i1 = std::min(p.lq, i0 + bq), br = i1 - i0;
      const int64_t h0 = u * group, g = h0 / p.group_size();
      // Stacked row r is query i0 + r % br of head h0 + r / br.
      tile.start({p.q.row(b, h0, i0), p.q.row_stride, p.q.head_stride, br}, br * group, p.scale);
      blocks.clear();
      pattern.key_blocks(h0, i0, i1, p.lk, bk, blocks);
      for (const KeyBlock& kb : blocks)
        tile.block(p.k.row(b, g, kb.j0), p.k.row_stride, p.v.row(b, g, kb.j0), p.v.row_stride,
                   kb.j1 - kb.j0, kb.partial ? &pattern : nullptr, h0, i0, kb.j0);
      float* lse = p.lse ? p.lse + (b * p.heads + h0) * p.lq + i0 : nullptr;
      tile.finish({p.o.row(b, h0, i0), p.o.row_stride, p.o.head_stride, br}, {lse, 1, p.lq, br});
    }
  }
}

}  // namespace

void attend_tiled(const AttendProblem& p, const BlockPattern& pattern, Workspace& ws,
                  const TileConfig& cfg) {
  check_problem(p);
  KT_ASSERT(cfg.block_rows >= 1 && cfg.block_k >= 1, "bad tile config");
  if (p.lq == 0) return;
  if (cfg.effective_kernel() == TileKernel::Fused)
    run_tiles<FusedTile>(p, pattern, ws, cfg);
  else
    run_tiles<BlasTile>(p, pattern, ws, cfg);
}

int64_t tiled_visited_pairs(const BlockPattern& pattern, int64_t h, int64_t lq, int64_t lk,
                            int64_t group, const TileConfig& cfg) {
  if (pattern.per_head()) group = 1;
  const int64_t bq = std::min(cfg.block_q(group), std::max<int64_t>(1, lq));
  const int64_t bk = std::min(cfg.block_k, std::max<int64_t>(1, lk));
  int64_t pairs = 0;
  for (int64_t i0 = 0; i0 < lq; i0 += bq) {
    const int64_t i1 = std::min(lq, i0 + bq);
    pairs += (i1 - i0) * pattern.keys_visited(h, i0, i1, lk, bk);
  }
  return pairs;
}

int64_t count_allowed_pairs(const BlockPattern& pattern, int64_t h, int64_t lq, int64_t lk) {
  int64_t n = 0;
  for (int64_t i = 0; i < lq; ++i)
    for (int64_t j = 0; j < lk; ++j) n += pattern.allowed(h, i, j);
  return n;
}

void merge_partial(float& m, float& l, float* acc, float m2, float l2, const float* acc2,
                   int64_t vdim) {
  const float mn = std::max(m, m2);
  if (mn == -INFINITY) return;  // both empty
  const float c1 = std::exp(m - mn), c2 = std::exp(m2 - mn);
  for (int64_t c = 0; c < vdim; ++c) acc[c] = c1 * acc[c] + c2 * acc2[c];
  l = c1 * l + c2 * l2;
  m = mn;
}

}  // namespace kt
