// sparse: Sparse Transformer attention, Child, Gray, Radford, Sutskever 2019, "Generating Long
// Sequences with Sparse Transformers" (arXiv 1904.10509) §4.2-4.3, §5.1, §5.5.
//   inputs  q [B,H,L,d], k [B,H,L,d], v [B,H,L,dv]
//   outputs out [B,H,L,dv] = softmax over the pattern's keys (one softmax per row),
//           lse [B,H,L] (natural log-sum-exp of each row's allowed scores)
// Patterns (0-based; causal intersects every set with j <= i; decisions.md):
//   strided, stride l:  A1(i) = {j : i-l <= j <= i} (l+1 keys; non-causal |i-j| <= l)
//                       A2(i) = {j : (i-j) mod l = 0}
//   fixed, block l, summary width c:  A1(i) = {j : floor(j/l) = floor(i/l)}
//                                     A2(i) = {j : j mod l >= l-c}
//   combine = merged (every head attends A1 ∪ A2, each key once, one softmax; default) |
//             alternate (even heads A1, odd heads A2; the paper's Eq. 8 with p = 2).
// The effective stride is min(stride, L) and c is clamped to it (both reported when resolved).
// Reference: attend_reference with the set definitions above as the mask (dense masked, L x L
// scores of one slice materialised).
// Fast (block-sparse tiles on the shared tile kernels of tile.hpp, `kernel` = fused (default,
// AVX-512) | blas; never an L x L mask or score). One OpenMP region per forward; slices go
// through its stages `threads` at a time (so the second stage finds their q, k, v in cache),
// each stage a loop over work items separated by barriers, each thread with one tile kernel
// state and gather buffer (taken from the arena before the region), BLAS single-threaded inside:
//   strided A2: the paper's §5.5 remark, "attention with a stride of l is a local window after a
//     transpose": the positions i ≡ r (mod l) form a sequence of length ceil((L-r)/l). Work item
//     = (slice, class r): the class's k, v rows are gathered contiguous into thread buffers
//     (prefetched first: rows l·d apart share cache sets and defeat the hardware prefetcher),
//     q is read in place by the tile's packing, and the class is attended in 32-row tiles;
//     o and lse are written to the class's rows.
//     In merged mode only the keys at class distance >= 2 are visited (distance 0 is i itself
//     and 1 is i-l, both in A1), so the union is counted once.
//   strided A1: a band; work item = (slice, query tile), the tile visiting the keys [i0-l, i1)
//     (block_rows x block_k; partial tiles masked inside the tile).
//   fixed: [gather] the summary rows (c per block) of each slice into [nS, d]; [A2] query block I
//     attends the summaries of the other blocks in merged mode (those of block I are in A1): a
//     prefix (causal) or prefix + suffix (non-causal); [A1] block-diagonal tiles.
//   merged: A1 runs last and starts each row's online softmax from the A2 result already in
//     (o, lse) (the tile's resume(): m = lse, l = 1, acc = o, the §0.3 merge done in place; no
//     extra full-size buffer). alternate: A1 on the even heads, A2 on the odd heads.
// Tiles follow attend_tiled's rules (key_blocks of the IntervalPattern, block_q(1) rows), so
// issued_flops is tiled_visited_pairs of each stage; flops counts the exact pairs of the pattern.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/blas.hpp"
#include "kernels/interval_pattern.hpp"
#include "kernels/prefetch.hpp"
#include "kernels/tile.hpp"
#include "kernels/vexp.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

namespace {

struct Geometry {
  int64_t B, H, L, d, dv, l, c;
  bool strided, causal, merged;
  float scale;
  int threads;
  TileConfig band;             // strided A1 / fixed A1 tiles
  int64_t n_summary() const {  // positions j < L with j mod l >= l - c
    const int64_t full = L / l, rest = L % l;
    return full * c + std::max<int64_t>(0, rest - (l - c));
  }
};

Geometry geometry(const Params& p) {
  Geometry g;
  g.B = p.i("batch");
  g.H = p.i("heads");
  g.L = p.i("seq_len");
  g.d = p.i("head_dim");
  g.dv = p.i("value_dim");
  g.l = p.i("stride");
  g.c = p.i("c");
  g.strided = p.s("pattern") == "strided";
  g.causal = p.b("causal");
  g.merged = p.s("combine") == "merged";
  g.scale = static_cast<float>(p.f("scale"));
  g.threads = static_cast<int>(p.i("threads"));
  g.band = tile_config(p);
  return g;
}

// ---- The set definitions (reference mask). ----
class SparseSets final : public BlockPattern {
 public:
  explicit SparseSets(const Geometry& g) : g_(g) {}
  bool a1(int64_t i, int64_t j) const {
    if (g_.causal && j > i) return false;
    if (g_.strided) return std::abs(i - j) <= g_.l;
    return j / g_.l == i / g_.l;
  }
  bool a2(int64_t i, int64_t j) const {
    if (g_.causal && j > i) return false;
    if (g_.strided) return std::abs(i - j) % g_.l == 0;
    return j % g_.l >= g_.l - g_.c;
  }
  bool allowed(int64_t h, int64_t i, int64_t j) const override {
    if (g_.merged) return a1(i, j) || a2(i, j);
    return h % 2 == 0 ? a1(i, j) : a2(i, j);
  }
  void key_blocks(int64_t, int64_t, int64_t, int64_t lk, int64_t block_k,
                  std::vector<KeyBlock>& out) const override {
    for (int64_t j0 = 0; j0 < lk; j0 += block_k)
      out.push_back({j0, std::min(lk, j0 + block_k), true});
  }
  bool per_head() const override { return !g_.merged; }

 private:
  Geometry g_;
};

// ---- Fast-path patterns, each as per-row key runs. ----
// Strided A1: the band [i-l, i] (causal) or [i-l, i+l].
class BandPattern final : public IntervalPattern {
 public:
  BandPattern(int64_t l, int64_t len, bool causal) : l_(l), len_(len), causal_(causal) {}
  void runs(int64_t, int64_t i, KeyRun r[2]) const override {
    r[0] = {std::max<int64_t>(0, i - l_), causal_ ? i + 1 : std::min(len_, i + l_ + 1)};
    r[1] = {};
  }

 private:
  int64_t l_, len_;
  bool causal_;
};

// Strided A2 inside the residue classes (head index h = class r, class index t = position / l):
// class r holds n + 1 positions when r < rest = L mod l, else n. Keys at class distance >= gap
// (merged: gap 2) or every key (alternate: gap 0); causal keeps t' <= t.
class ClassPattern final : public IntervalPattern {
 public:
  ClassPattern(int64_t n, int64_t rest, int64_t gap, bool causal)
      : n_(n), rest_(rest), gap_(gap), causal_(causal) {}
  int64_t len(int64_t r) const { return r < rest_ ? n_ + 1 : n_; }
  void runs(int64_t r, int64_t t, KeyRun run[2]) const override {
    const int64_t n = len(r);
    run[1] = {};
    if (causal_) {
      run[0] = {0, std::min(n, t - gap_ + 1)};
    } else if (gap_ == 0) {
      run[0] = {0, n};
    } else {
      run[0] = {0, std::min(n, t - gap_ + 1)};
      run[1] = {t + gap_, n};
    }
  }
  bool per_head() const override { return true; }

 private:
  int64_t n_, rest_, gap_;
  bool causal_;
};

// Fixed A1: the query's own l-block (causal: up to the query).
class FixedBlockPattern final : public IntervalPattern {
 public:
  FixedBlockPattern(int64_t l, int64_t len, bool causal) : l_(l), len_(len), causal_(causal) {}
  void runs(int64_t, int64_t i, KeyRun r[2]) const override {
    const int64_t b0 = i / l_ * l_;
    r[0] = {b0, causal_ ? i + 1 : std::min(len_, b0 + l_)};
    r[1] = {};
  }

 private:
  int64_t l_, len_;
  bool causal_;
};

// Fixed A2 over the gathered summary rows (c per block, block I's at [I·c, I·c + c_I)).
// merged: the summaries of the other blocks (own block's are in A1); alternate: every summary
// (causal: those at positions <= i).
class SummaryPattern final : public IntervalPattern {
 public:
  SummaryPattern(const Geometry& g)
      : l_(g.l), c_(g.c), len_(g.L), ns_(g.n_summary()), causal_(g.causal), merged_(g.merged) {}
  void runs(int64_t, int64_t i, KeyRun r[2]) const override {
    const int64_t blk = i / l_, start = blk * c_;
    r[1] = {};
    if (merged_) {
      r[0] = {0, start};
      if (!causal_) {
        const int64_t own = std::clamp<int64_t>(len_ - (blk * l_ + l_ - c_), 0, c_);
        r[1] = {start + own, ns_};
      }
    } else {
      r[0] = {0, causal_ ? start + std::clamp<int64_t>(i % l_ - (l_ - c_) + 1, 0, c_) : ns_};
    }
  }

 private:
  int64_t l_, c_, len_, ns_;
  bool causal_, merged_;
};

const TileConfig kClassTiles{32, 512};     // residue classes are short (≈ L/l rows)
const TileConfig kSummaryTiles{128, 512};  // every query against a prefix of nS summaries

// Tile extents of one stage: query rows per tile (attend_tiled's block_q(1)) and keys per block.
struct Tile {
  int64_t rows, keys;
};
Tile tile_of(const TileConfig& cfg, int64_t lq, int64_t lk) {
  return {std::min(cfg.block_q(1), std::max<int64_t>(1, lq)),
          std::min(cfg.block_k, std::max<int64_t>(1, lk))};
}

// Which slices (b·H + h) a stage covers: all of them (merged) or the heads of one parity.
struct SliceSet {
  int64_t H, first, step;  // heads first, first + step, ... of every batch entry
  int64_t per_batch() const { return (H - first + step - 1) / step; }
  int64_t slice(int64_t idx) const {
    const int64_t pb = per_batch();
    return idx / pb * H + first + idx % pb * step;
  }
};

// One sequence a stage attends within: query row i at q + i·rq, keys k + j·rk, values v + j·rv,
// outputs o + i·ro and lse[i·rl] (a slice's positions, or one residue class: rows l apart).
struct RowSeq {
  const float *q, *k, *v;
  int64_t rq, rk, rv;
  float* o;
  float* lse;
  int64_t ro, rl;
};

// The query rows [i0, i1) of one sequence through a tile kernel (tile.hpp) against the key blocks
// the pattern gives (h: the pattern's head argument). resume: start from the normalised partial
// result already in (o, lse) of a disjoint key set (merged mode), else from the empty state.
template <class TileKernel>
void attend_rows(TileKernel& tile, const Geometry& g, const IntervalPattern& pat, int64_t h,
                 int64_t i0, int64_t i1, int64_t lk, int64_t bk, const RowSeq& x, bool resume,
                 std::vector<KeyBlock>& blocks) {
  const int64_t rows = i1 - i0;
  tile.start({x.q + i0 * x.rq, x.rq, 0, rows}, rows, g.scale);
  if (resume) tile.resume({x.o + i0 * x.ro, x.ro, 0, rows}, {x.lse + i0 * x.rl, x.rl, 0, rows});
  blocks.clear();
  pat.key_blocks(h, i0, i1, lk, bk, blocks);
  for (const KeyBlock& kb : blocks)
    tile.block(x.k + kb.j0 * x.rk, x.rk, x.v + kb.j0 * x.rv, x.rv, kb.j1 - kb.j0,
               kb.partial ? &pat : nullptr, h, i0, kb.j0);
  tile.finish({x.o + i0 * x.ro, x.ro, 0, rows}, {x.lse + i0 * x.rl, x.rl, 0, rows});
}

// Rows of the summary positions of slice `src` gathered into [nS, dim].
void gather_summaries(const Geometry& g, const float* src, int64_t dim, float* dst) {
  const int64_t ns = g.n_summary();
  for (int64_t t = 0; t < ns; ++t) {
    const int64_t pos = t / g.c * g.l + (g.l - g.c) + t % g.c;
    std::copy_n(src + pos * dim, dim, dst + t * dim);
  }
}

// ---- Analytic model of the fast path: pairs visited by its tiles, its scratch. ----
struct FastModel {
  double exact_pairs = 0;    // allowed pairs, all slices
  double visited_pairs = 0;  // pairs the tiles compute, all slices
  double workspace = 0;      // bytes
  Tile tile{0, 0};           // largest tile of any stage (rows, keys): sizes the kernel scratch
  int64_t summary_slices = 0;
  int64_t gather_rows = 0;  // strided: one residue class's k and v rows, gathered contiguous
  int64_t tile_floats(const Geometry& g) const {  // the tile kernel's scratch
    return g.band.effective_kernel() == TileKernel::Fused
               ? FusedTile::scratch_floats(tile.rows, g.d, g.dv, tile.keys)
               : BlasTile::scratch_floats(tile.rows, g.d, g.dv, tile.keys);
  }
  int64_t per_thread_floats(const Geometry& g) const {
    return tile_floats(g) + gather_rows * (g.d + g.dv);
  }
};

double pad64(double floats) {
  return Workspace::padded_float_bytes(floats);
}

FastModel fast_model(const Geometry& g) {
  FastModel f;
  const double a1_heads = g.merged ? g.H : (g.H + 1) / 2, a2_heads = g.merged ? g.H : g.H / 2;
  f.tile = tile_of(g.band, g.L, g.L);
  auto widen = [&](const Tile& t) {
    f.tile = {std::max(f.tile.rows, t.rows), std::max(f.tile.keys, t.keys)};
  };
  if (g.strided) {
    BandPattern bp(g.l, g.L, g.causal);
    f.exact_pairs += a1_heads * g.B * double(bp.pair_count(0, g.L));
    f.visited_pairs += a1_heads * g.B * double(tiled_visited_pairs(bp, 0, g.L, g.L, 1, g.band));
    const int64_t n = g.L / g.l, rest = g.L % g.l, nmax = n + (rest > 0);
    const ClassPattern cls(n, rest, g.merged ? 2 : 0, g.causal);
    for (int64_t r = 0; r < g.l; ++r) {
      const int64_t len = cls.len(r);
      f.exact_pairs += a2_heads * g.B * double(cls.pair_count(r, len));
      f.visited_pairs +=
          a2_heads * g.B * double(tiled_visited_pairs(cls, r, len, len, 1, kClassTiles));
    }
    if (a2_heads > 0) {
      widen(tile_of(kClassTiles, nmax, nmax));
      f.gather_rows = nmax;
    }
  } else {
    FixedBlockPattern blk(g.l, g.L, g.causal);
    SummaryPattern sum(g);
    const int64_t ns = g.n_summary();
    f.exact_pairs += a1_heads * g.B * double(blk.pair_count(0, g.L));
    f.visited_pairs += a1_heads * g.B * double(tiled_visited_pairs(blk, 0, g.L, g.L, 1, g.band));
    f.exact_pairs += a2_heads * g.B * double(sum.pair_count(0, g.L));
    f.visited_pairs +=
        a2_heads * g.B * double(tiled_visited_pairs(sum, 0, g.L, ns, 1, kSummaryTiles));
    if (a2_heads > 0 && ns > 0) {
      f.summary_slices = int64_t(a2_heads) * g.B;
      widen(tile_of(kSummaryTiles, g.L, ns));
      f.workspace +=
          pad64(double(f.summary_slices * ns * g.d)) + pad64(double(f.summary_slices * ns * g.dv));
    }
  }
  f.workspace += pad64(double(g.threads) * double(f.per_thread_floats(g)));
  return f;
}
class SparseAttention final : public Mechanism {
 public:
  std::string name() const override { return "sparse"; }
  std::vector<std::string> aliases() const override { return {"sparse_transformer"}; }
  std::string family() const override { return "sparse"; }
  std::string summary() const override {
    return "Sparse Transformer strided/fixed factorised patterns (block-sparse online softmax)";
  }
  PaperInfo paper() const override {
    return {"Generating Long Sequences with Sparse Transformers", "Child, Gray, Radford, Sutskever",
            2019, "1904.10509"};
  }

  std::vector<ParamSpec> params() const override {
    std::vector<ParamSpec> s = {common::batch(),     common::heads(),   common::head_dim(),
                                common::value_dim(), common::seq_len(), common::causal(true),
                                common::scale(),     common::seed(),    common::threads()};
    s.insert(s.end(),
             {choice_param("pattern",
                           "strided (band of l+1 keys + every l-th key) or fixed (own l-block + "
                           "c summary cells of every block)",
                           {"strided", "fixed"}, "strided"),
              int_param("stride",
                        "l: stride (strided) or block length (fixed); the effective value is "
                        "min(l, L)",
                        128, 1, std::nullopt),
              int_param("c", "summary cells per block of the fixed pattern (1 <= c <= stride)", 32,
                        1, std::nullopt),
              choice_param("combine",
                           "merged: every head attends A1 ∪ A2; alternate: even heads A1, odd "
                           "heads A2",
                           {"merged", "alternate"}, "merged")});
    for (auto t : tile_params()) {
      if (t.name == "kernel") {  // every stage's tiles
        s.push_back(t);
        continue;
      }
      t.default_value.reset();
      t.help = "A1 (band/block) tile: " + t.help;
      t.default_text = t.name == "block_rows" ? "32" : "stride + block_rows";
      s.push_back(t);
    }
    return s;
  }

  void resolve(Params& p) const override {
    if (!p.has("value_dim")) p.set("value_dim", p.i("head_dim"));
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(p.i("head_dim"))));
    const int64_t L = p.i("seq_len"), stride = p.i("stride");
    if (p.s("pattern") == "fixed" && p.i("c") > stride)
      throw InputError("c", fmt::format("c = {} exceeds stride = {}; allowed: 1 <= c <= stride",
                                        p.i("c"), stride));
    const int64_t l = std::max<int64_t>(1, std::min(stride, L));
    p.set("stride", l);
    p.set("c", std::min(p.i("c"), l));
    if (!p.has("block_rows")) p.set("block_rows", int64_t{32});
    if (!p.has("block_k")) p.set("block_k", l + p.i("block_rows"));
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len");
    return {{"q", {B, H, L, p.i("head_dim")}, "queries [B,H,L,d]"},
            {"k", {B, H, L, p.i("head_dim")}, "keys [B,H,L,d]"},
            {"v", {B, H, L, p.i("value_dim")}, "values [B,H,L,dv]"}};
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len");
    return {{"out", {B, H, L, p.i("value_dim")}, "attention output [B,H,L,dv]"},
            {"lse", {B, H, L}, "log-sum-exp of each row's allowed scores [B,H,L]"}};
  }

  CostModel cost(const Params& p, Path path) const override {
    const Geometry g = geometry(p);
    const FastModel f = fast_model(g);
    const double B = g.B, H = g.H, L = g.L, d = g.d, dv = g.dv;
    CostModel c;
    add_softmax_cost(c, 1, f.exact_pairs, B * H * L, d, dv);
    if (g.merged) {  // merge of two partials per row: 2 exps + 1 log, ~3 ops per value
      c.elementwise += B * H * L * (3 * dv + 6);
      c.transcendentals += B * H * L * 3;
    }
    c.io_bytes = 4 * B * H * L * (2 * d + 2 * dv + 1);
    c.kv_bytes_per_token = 4 * H * (d + dv);
    c.time_complexity = g.strided ? "O(B·H·L·(l + L/l)·d)" : "O(B·H·L·(l + c·L/l)·d)";
    if (path == Path::Fast) {
      c.issued_flops = 2 * (d + dv) * f.visited_pairs;
      c.workspace_bytes = f.workspace;
      c.space_complexity = g.strided ? "O(T·(Br·(Bc + dv) + (L/l)·(2d + dv)))"
                                     : "O(B·H·nS·(d + dv) + T·Br·(Bc + dv))";
      c.form = "block-sparse tiled online softmax (band + residue classes / summary columns)";
    } else {
      c.issued_flops = c.flops;
      c.workspace_bytes = 4 * L * L;
      c.space_complexity = "O(L²)";
      c.form = "dense masked (materialised scores)";
    }
    return c;
  }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    const Geometry g = geometry(p);
    AttendProblem a;
    a.batch = g.B;
    a.heads = a.kv_heads = g.H;
    a.lq = a.lk = g.L;
    a.dim = g.d;
    a.vdim = g.dv;
    a.scale = g.scale;
    a.q = HeadsView::bhld(input(in, "q").data(), g.H, g.L, g.d);
    a.k = HeadsView::bhld(input(in, "k").data(), g.H, g.L, g.d);
    a.v = HeadsView::bhld(input(in, "v").data(), g.H, g.L, g.dv);
    a.o = HeadsOut::bhld(output(out, "out").data(), g.H, g.L, g.dv);
    a.lse = output(out, "lse").data();
    a.threads = g.threads;
    attend_reference(a, SparseSets(g), ws);
  }

  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    const Geometry g = geometry(p);
    if (g.band.effective_kernel() == TileKernel::Fused)
      run<FusedTile>(g, in, out, ws);
    else
      run<BlasTile>(g, in, out, ws);
  }

 private:
  // One OpenMP region; slices `threads` at a time through the stages, each stage a loop over its
  // work items (static ascending for the strided stages, whose items cost the same; dynamic,
  // largest first, for the fixed pattern's summary tiles), barriers between, one tile kernel
  // state and class buffer per thread:
  //   strided: [A2] (slice, residue class r): the class's k, v rows (r + t·l) gathered contiguous
  //            after a prefetch, q read in place, attended in 32-row tiles, o/lse written to the
  //            class's rows; [A1] (slice, band tile, the next tile's q/o rows prefetched): merged
  //            mode resumes from the A2 result in o/lse.
  //   fixed:   [gather] (slice): summary rows of k, v; [A2] (slice, 128-row tile) against them;
  //            [A1] (slice, block tile), merged mode resuming from the A2 result.
  template <class TileKernel>
  void run(const Geometry& g, const TensorMap& in, TensorMap& out, Workspace& ws) const {
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    float *o = output(out, "out").data(), *lse = output(out, "lse").data();
    const int64_t Ld = g.L * g.d, Lv = g.L * g.dv, L = g.L;
    const FastModel f = fast_model(g);
    const SliceSet s1{g.H, 0, g.merged ? 1 : 2}, s2{g.H, g.merged ? 0 : 1, g.merged ? 1 : 2};
    const int64_t n1 = g.B * s1.per_batch(), n2 = g.B * s2.per_batch();
    const int64_t n = g.L / g.l, rest = g.L % g.l, nmax = n + (rest > 0),
                  ns = g.strided ? 0 : g.n_summary();
    const ClassPattern cls(n, rest, g.merged ? 2 : 0, g.causal);
    BandPattern band(g.l, g.L, g.causal);
    FixedBlockPattern blk(g.l, g.L, g.causal);
    SummaryPattern sum(g);
    const IntervalPattern& a1 = g.strided ? static_cast<const IntervalPattern&>(band) : blk;
    const Tile t1 = tile_of(g.band, L, L), tc = tile_of(kClassTiles, nmax, nmax),
               ts = tile_of(kSummaryTiles, L, ns);
    const int64_t tiles1 = (L + t1.rows - 1) / t1.rows, tiles_s = (L + ts.rows - 1) / ts.rows;

    Workspace::Scope scope(ws);
    float *ks = nullptr, *vs = nullptr;
    if (f.summary_slices > 0) {
      ks = ws.alloc_floats(f.summary_slices * ns * g.d);
      vs = ws.alloc_floats(f.summary_slices * ns * g.dv);
    }
    const int64_t per_thread = f.per_thread_floats(g);
    float* scratch = ws.alloc_floats(per_thread * g.threads);
    const bool a2_empty = !g.strided && ns == 0;  // fixed with no summary cell (L < l - c + 1)
    const bool resume = g.merged && !a2_empty;    // A1 merges into the A2 result in place
    const int64_t group = g.threads;
    blas::ThreadsScope blas_single(1);

#pragma omp parallel num_threads(g.threads)
    {
      FlushDenormals ftz;
      float* mine = scratch + per_thread * omp_get_thread_num();
      TileKernel tile(mine, f.tile.rows, g.d, g.dv, f.tile.keys);
      float* kc = mine + f.tile_floats(g);  // [nmax, d] and [nmax, dv]: one class's k and v
      float* vc = kc + f.gather_rows * g.d;
      std::vector<KeyBlock> blocks;
      // Slices go through the stages `group` at a time, so that the band stage finds the
      // slices' q, k, v still in the last-level cache where the class stage left them.
      for (int64_t g0 = 0; g0 < std::max(n1, n2); g0 += group) {
        const int64_t c1 = std::clamp<int64_t>(n1 - g0, 0, group),
                      c2 = std::clamp<int64_t>(n2 - g0, 0, group);
        if (g.strided) {
          // A2: residue classes. Class r of a slice: positions r + t·l, t < cls.len(r).
#pragma omp for schedule(static)
          for (int64_t item = 0; item < c2 * g.l; ++item) {
            const int64_t sl = s2.slice(g0 + item / g.l), r = item % g.l, len = cls.len(r);
            const float *qr = q + sl * Ld + r * g.d, *kr = k + sl * Ld + r * g.d,
                        *vr = v + sl * Lv + r * g.dv;
            // Rows l·d floats apart share a few cache sets (l·d·4 bytes is a multiple of the L1
            // and L2 set periods at the default sizes) and defeat the hardware prefetcher: k and v
            // are gathered contiguous (read many times), q is read in place (once, by start()).
            for (int64_t t = 0; t < len; ++t) {
              prefetch_floats(qr + t * g.l * g.d, g.d);
              prefetch_floats(kr + t * g.l * g.d, g.d);
              prefetch_floats(vr + t * g.l * g.dv, g.dv);
            }
            for (int64_t t = 0; t < len; ++t) {
              std::copy_n(kr + t * g.l * g.d, g.d, kc + t * g.d);
              std::copy_n(vr + t * g.l * g.dv, g.dv, vc + t * g.dv);
            }
            const RowSeq x{
                qr,         kc, vc, g.l * g.d, g.d, g.dv, o + sl * Lv + r * g.dv, lse + sl * L + r,
                g.l * g.dv, g.l};
            for (int64_t i0 = 0; i0 < len; i0 += tc.rows)
              attend_rows(tile, g, cls, r, i0, std::min(len, i0 + tc.rows), len, tc.keys, x, false,
                          blocks);
          }
        } else if (!a2_empty) {
#pragma omp for schedule(static)
          for (int64_t idx = g0; idx < g0 + c2; ++idx) {
            const int64_t sl = s2.slice(idx);
            gather_summaries(g, k + sl * Ld, g.d, ks + idx * ns * g.d);
            gather_summaries(g, v + sl * Lv, g.dv, vs + idx * ns * g.dv);
          }
#pragma omp for schedule(dynamic, 1)
          for (int64_t item = 0; item < c2 * tiles_s; ++item) {
            const int64_t idx = g0 + item / tiles_s, t = tiles_s - 1 - item % tiles_s,
                          sl = s2.slice(idx), i0 = t * ts.rows;
            const RowSeq x{q + sl * Ld, ks + idx * ns * g.d, vs + idx * ns * g.dv, g.d,  g.d,
                           g.dv,        o + sl * Lv,         lse + sl * L,         g.dv, 1};
            attend_rows(tile, g, sum, 0, i0, std::min(L, i0 + ts.rows), ns, ts.keys, x, false,
                        blocks);
          }
        } else if (!g.merged) {  // alternate, A2 empty: the odd heads get o = 0, lse = -inf
#pragma omp for schedule(static)
          for (int64_t idx = g0; idx < g0 + c2; ++idx) {
            const int64_t sl = s2.slice(idx);
            std::fill_n(o + sl * Lv, Lv, 0.0f);
            std::fill_n(lse + sl * L, L, -INFINITY);
          }
        }
        // A1 (band / own block); merged mode merges into the A2 result in place.
#pragma omp for schedule(static)
        for (int64_t item = 0; item < c1 * tiles1; ++item) {
          const int64_t sl = s1.slice(g0 + item / tiles1), t = item % tiles1, i0 = t * t1.rows;
          const RowSeq x{q + sl * Ld, k + sl * Ld, v + sl * Lv,  g.d,  g.d,
                         g.dv,        o + sl * Lv, lse + sl * L, g.dv, 1};
          // The next tile's q, k, v (and o, resumed from) rows: their loads are this stage's
          // misses (k and v: ~1% in alternated runs).
          const int64_t i1 = std::min(L, i0 + t1.rows), next = std::min(L, i1 + t1.rows) - i1;
          prefetch_floats(x.q + i1 * g.d, next * g.d);
          prefetch_floats(x.k + i1 * g.d, next * g.d);
          prefetch_floats(x.v + i1 * g.dv, next * g.dv);
          if (resume) prefetch_floats(x.o + i1 * g.dv, next * g.dv);
          attend_rows(tile, g, a1, 0, i0, i1, L, t1.keys, x, resume, blocks);
        }
      }
    }
  }
};

}  // namespace

const Mechanism& mechanism_sparse() {
  static const SparseAttention m;
  return m;
}

}  // namespace kt
