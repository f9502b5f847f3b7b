// sinkhorn: Sparse Sinkhorn attention, Tay, Bahri, Yang, Metzler, Juan 2020, "Sparse Sinkhorn
// Attention" (arXiv 2002.11296); spec mechanisms-softmax.md §4, overridden by decisions.md.
//   inputs  q [B,H,L,d], k [B,H,L,d], v [B,H,L,dv], sort-net weights ([in, out], per head)
//           sort_w1 [H,d,hidden], sort_b1 [H,hidden], sort_w2 [H,hidden,nB], sort_b2 [H,nB],
//           gumbel_noise [B,H,nB,nB] (only when gumbel = true; g = -log(-log U) from the seed)
//   outputs out [B,H,L,dv]
// nB = ceil(L / b) blocks of b = block_size tokens (b is clamped to L: the effective value is
// what the resolved parameters report). Block i holds positions [i·b, min(L, (i+1)·b)).
// Per (batch, head) slice:
//   1. descriptors u_i = sum of block i's keys (non-causal) or k_{i·b} (causal); padded positions
//      (L not divisible by b) are zero vectors, so they add nothing.
//   2. sort net R = ReLU(ReLU(U·W1 + b1)·W2 + b2), R [nB, nB]: row i = destination (query) block,
//      column j = source (key) block.
//   3. Z = R / temperature, or (R + g) / temperature with the Gumbel noise input g.
//   4. Sinkhorn in log space. Non-causal: sinkhorn_iters rounds of row then column
//      log-normalisation, S = exp(Z). Causal: one row normalisation over the strictly earlier
//      blocks j < i (S_ij = 0 for j >= i; row 0 is empty), no column normalisation (it would mix
//      in future blocks).
//   5. sorted blocks K̂_i = sum_j S_ij K_blk[j], V̂_i likewise (b x d, b x dv; padded rows are 0).
//      Sorted key t of K̂_i is masked when all of its sorting weight falls on padding:
//      sum_{j : j·b + t < L} S_ij == 0.
//   6. attention of query block i (scale·q·k, softmax with max subtraction):
//        combine = concat (default): one softmax over [K̂_i ; own block]  (2b keys)
//                  sum:              softmax over K̂_i + softmax over the own block (two outputs
//                                    added, LRA)
//                  sorted_only:      K̂_i only (the survey's formula)
//      causal: the own block is causal (keys i·b .. t for the query at t); block 0 has no sorted
//      keys and attends causally within itself (in every combine mode).
//   SortCut (sortcut_k = n_s > 0, non-causal only): every query attends the first n_s sorted
//   blocks [K̂_0; ...; K̂_{n_s-1}] (n_s·b keys) instead of K̂_i, combined with its own block as
//   `combine` says (sorted_only: the paper's Y = softmax(Q ψ(K)ᵀ[:n]) ψ(V)[:n]). Only rows
//   0..n_s-1 of S are used.
// Reference: the sort in double (plain loops, exp/log), K̂, V̂ built explicitly ("virtual keys"),
// then attend_reference (dense masked, scores of one slice [L, Ls + L] materialised) over the
// extended key set [K̂ (Ls rows); K (L rows)] with the mask of step 6; sum mode = two calls added.
// Fast (OpenMP over the B·H slices, BLAS single-threaded inside, per-thread scratch from the
// arena, nothing of size L x L): descriptors; the sort net as two GEMMs; Sinkhorn in float log
// space (nB x nB); K̂ = S·K_blocks and V̂ = S·V_blocks as GEMMs ([nB, nB] x [nB, b·d]; the partial
// last block as a rank-1 GEMM; causal: the strictly lower [nB-1, nB-1] part only; SortCut: the
// first n_s rows only); then per query block two score GEMMs (sorted keys, own block), a row
// softmax pass, two value GEMMs.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/random.hpp"
#include "kernels/blas.hpp"
#include "kernels/vexp.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

// ---- The Sinkhorn operator, exposed for the tests (tests/test_sinkhorn.cpp declares them). ----
namespace sinkhorn_detail {

// Float log-space balancing of z [n, n] in place, leaving S = exp(Z). scratch: 2·n floats.
// Non-causal: `iters` rounds of row then column log-normalisation. Causal: one row
// normalisation over j < i (entries j >= i become 0; row 0 is all 0).
void balance(float* z, int64_t n, int64_t iters, bool causal, float* scratch) {
  if (causal) {
    for (int64_t i = 0; i < n; ++i) {
      float* row = z + i * n;
      if (i > 0) {
        const float m = row_max(row, i);
        const float inv = 1.0f / exp_shift_sum(row, i, m);
        scale_row(row, i, inv);
      }
      std::fill(row + i, row + n, 0.0f);
    }
    return;
  }
  float* cm = scratch;
  float* cs = scratch + n;
  for (int64_t it = 0; it < iters; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      float* row = z + i * n;
      const float m = row_max(row, n);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) sum += exp_approx(row[j] - m);
      const float lse = m + std::log(sum);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] -= lse;
    }
    std::fill(cm, cm + n, -INFINITY);
    std::fill(cs, cs + n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = z + i * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) cm[j] = row[j] > cm[j] ? row[j] : cm[j];
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* row = z + i * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) cs[j] += exp_approx(row[j] - cm[j]);
    }
    for (int64_t j = 0; j < n; ++j) cs[j] = cm[j] + std::log(cs[j]);
    for (int64_t i = 0; i < n; ++i) {
      float* row = z + i * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] -= cs[j];
    }
  }
  for (int64_t t = 0; t < n * n; ++t) z[t] = exp_approx(z[t]);
}

// The same in double with std::exp / std::log (the reference).
void balance_reference(double* z, int64_t n, int64_t iters, bool causal) {
  auto lse = [](const double* x, int64_t cnt, int64_t stride) {
    double m = -INFINITY;
    for (int64_t t = 0; t < cnt; ++t) m = std::max(m, x[t * stride]);
    double s = 0;
    for (int64_t t = 0; t < cnt; ++t) s += std::exp(x[t * stride] - m);
    return m + std::log(s);
  };
  if (causal) {
    for (int64_t i = 0; i < n; ++i) {
      double* row = z + i * n;
      if (i > 0) {
        const double l = lse(row, i, 1);
        for (int64_t j = 0; j < i; ++j) row[j] = std::exp(row[j] - l);
      }
      for (int64_t j = i; j < n; ++j) row[j] = 0;
    }
    return;
  }
  for (int64_t it = 0; it < iters; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      const double l = lse(z + i * n, n, 1);
      for (int64_t j = 0; j < n; ++j) z[i * n + j] -= l;
    }
    for (int64_t j = 0; j < n; ++j) {
      const double l = lse(z + j, n, n);
      for (int64_t i = 0; i < n; ++i) z[i * n + j] -= l;
    }
  }
  for (int64_t t = 0; t < n * n; ++t) z[t] = std::exp(z[t]);
}

}  // namespace sinkhorn_detail

namespace {

using sinkhorn_detail::balance;
using sinkhorn_detail::balance_reference;

enum class Combine { Concat, Sum, SortedOnly };

struct Geometry {
  int64_t B, H, L, d, dv, b, nB, hid, iters, ns;  // ns: SortCut blocks (0 = off)
  bool causal, gumbel;
  Combine combine;
  float scale, tau;
  int threads;

  int64_t rows(int64_t i) const { return std::min(b, L - i * b); }  // positions of block i
  int64_t last() const { return L - (nB - 1) * b; }         // r: valid positions of the last block
  int64_t sorted_rows() const { return ns > 0 ? ns : nB; }  // rows of S (sorted blocks) used
  int64_t sorted_keys() const { return ns > 0 ? ns * b : b; }  // sorted keys per query block
  bool use_sorted(int64_t i) const { return !(causal && i == 0); }
  bool use_local(int64_t i) const { return combine != Combine::SortedOnly || (causal && i == 0); }
};

Geometry geometry(const Params& p) {
  Geometry g;
  g.B = p.i("batch");
  g.H = p.i("heads");
  g.L = p.i("seq_len");
  g.d = p.i("head_dim");
  g.dv = p.i("value_dim");
  g.b = p.i("block_size");
  g.nB = (g.L + g.b - 1) / g.b;
  g.hid = p.i("sortnet_hidden");
  g.iters = p.i("sinkhorn_iters");
  g.ns = p.i("sortcut_k");
  g.causal = p.b("causal");
  g.gumbel = p.b("gumbel");
  const std::string& c = p.s("combine");
  g.combine = c == "sum"           ? Combine::Sum
              : c == "sorted_only" ? Combine::SortedOnly
                                   : Combine::Concat;
  g.scale = static_cast<float>(p.f("scale"));
  g.tau = static_cast<float>(p.f("temperature"));
  g.threads = static_cast<int>(p.i("threads"));
  return g;
}

struct Weights {
  const float *w1, *b1, *w2, *b2;  // of head h
};
Weights weights(const Geometry& g, const TensorMap& in, int64_t h) {
  return {input(in, "sort_w1").data() + h * g.d * g.hid, input(in, "sort_b1").data() + h * g.hid,
          input(in, "sort_w2").data() + h * g.hid * g.nB, input(in, "sort_b2").data() + h * g.nB};
}

// ---- Reference: the sort in double, then dense masked attention over [K̂; K]. ----
// S [nB, nB] of one slice (K: the slice's keys [L, d]; gum: its noise [nB, nB] or null).
void sort_matrix_reference(const Geometry& g, const float* K, const Weights& w, const float* gum,
                           double* S, double* scratch) {
  double* U = scratch;          // [nB, d]
  double* Hd = U + g.nB * g.d;  // [nB, hid]
  for (int64_t i = 0; i < g.nB; ++i)
    for (int64_t c = 0; c < g.d; ++c) {
      double s = 0;
      if (g.causal)
        s = K[i * g.b * g.d + c];
      else
        for (int64_t t = 0; t < g.rows(i); ++t) s += K[(i * g.b + t) * g.d + c];
      U[i * g.d + c] = s;
    }
  for (int64_t i = 0; i < g.nB; ++i)
    for (int64_t c = 0; c < g.hid; ++c) {
      double s = w.b1[c];
      for (int64_t e = 0; e < g.d; ++e) s += U[i * g.d + e] * w.w1[e * g.hid + c];
      Hd[i * g.hid + c] = std::max(0.0, s);
    }
  for (int64_t i = 0; i < g.nB; ++i)
    for (int64_t j = 0; j < g.nB; ++j) {
      double s = w.b2[j];
      for (int64_t e = 0; e < g.hid; ++e) s += Hd[i * g.hid + e] * w.w2[e * g.nB + j];
      s = std::max(0.0, s);
      if (gum) s += gum[i * g.nB + j];
      S[i * g.nB + j] = s / double(g.tau);
    }
  balance_reference(S, g.nB, g.iters, g.causal);
}

// Mask of step 6 over the extended keys [K̂ (Ls rows); K (L rows)] of one slice.
class SinkhornMask final : public BlockPattern {
 public:
  SinkhornMask(const Geometry& g, const unsigned char* masked, bool sorted, bool local)
      : g_(g), masked_(masked), sorted_(sorted), local_(local), ls_(g.sorted_rows() * g.b) {}
  bool allowed(int64_t, int64_t i, int64_t j) const override {
    const int64_t bi = i / g_.b;
    if (j < ls_) {
      if (!sorted_ || !g_.use_sorted(bi) || masked_[j]) return false;
      return g_.ns > 0 || j / g_.b == bi;
    }
    const int64_t pos = j - ls_;
    if (!local_ || !g_.use_local(bi)) return false;
    return pos / g_.b == bi && (!g_.causal || pos <= i);
  }
  void key_blocks(int64_t, int64_t, int64_t, int64_t lk, int64_t block_k,
                  std::vector<KeyBlock>& out) const override {
    for (int64_t j0 = 0; j0 < lk; j0 += block_k)
      out.push_back({j0, std::min(lk, j0 + block_k), true});
  }

 private:
  Geometry g_;
  const unsigned char* masked_;
  bool sorted_, local_;
  int64_t ls_;
};

// ---- Fast path: per-thread scratch layout (floats), each part rounded to 16 floats. ----
int64_t round16(int64_t n) {
  return (n + 15) / 16 * 16;
}
struct Scratch {
  int64_t u, hd, z, vec, khat, vhat, sc;
  int64_t total() const { return u + hd + z + vec + khat + vhat + sc; }
};
Scratch scratch_of(const Geometry& g) {
  Scratch s;
  s.u = round16(g.nB * g.d);
  s.hd = round16(g.nB * g.hid);
  s.z = round16(g.nB * g.nB);
  s.vec = round16(3 * g.nB);  // column max, column sum, real-key weight of each sorted row
  s.khat = round16(g.sorted_rows() * g.b * g.d);
  s.vhat = round16(g.sorted_rows() * g.b * g.dv);
  s.sc = round16(g.b * (g.sorted_keys() + g.b));
  return s;
}
int64_t fast_threads(const Geometry& g) {
  return std::max<int64_t>(1, std::min<int64_t>(g.threads, g.B * g.H));
}

// Softmax of x[0..n) in place, normalised (all masked: zeros).
void softmax_row(float* x, int64_t n) {
  if (n == 0) return;
  const float m = row_max(x, n);
  if (m == -INFINITY) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  scale_row(x, n, 1.0f / exp_shift_sum(x, n, m));
}

// Pairs per slice: exact (allowed, assuming no sorted key is masked) and issued (GEMM tiles).
struct PairCounts {
  double exact = 0, issued = 0;
};
PairCounts pair_counts(const Geometry& g) {
  PairCounts c;
  for (int64_t i = 0; i < g.nB; ++i) {
    const double bi = double(g.rows(i));
    if (g.use_sorted(i)) {
      c.exact += bi * double(g.sorted_keys());
      c.issued += bi * double(g.sorted_keys());
    }
    if (g.use_local(i)) {
      c.exact += g.causal ? bi * (bi + 1) / 2 : bi * bi;
      c.issued += bi * bi;
    }
  }
  return c;
}

class SinkhornAttention final : public Mechanism {
 public:
  std::string name() const override { return "sinkhorn"; }
  std::vector<std::string> aliases() const override { return {"sparse_sinkhorn"}; }
  std::string family() const override { return "sparse"; }
  std::string summary() const override {
    return "Sparse Sinkhorn attention: learned soft block sort + block-local attention";
  }
  PaperInfo paper() const override {
    return {"Sparse Sinkhorn Attention", "Tay, Bahri, Yang, Metzler, Juan", 2020, "2002.11296"};
  }

  std::vector<ParamSpec> params() const override {
    std::vector<ParamSpec> s = {common::batch(),     common::heads(),   common::head_dim(),
                                common::value_dim(), common::seq_len(), common::causal(false),
                                common::scale(),     common::seed(),    common::threads()};
    s.insert(
        s.end(),
        {int_param("block_size",
                   "b: tokens per block (clamped to L; L need not be a multiple: the last "
                   "block is padded with masked keys)",
                   64, 1, std::nullopt),
         int_param("sinkhorn_iters", "rounds of row then column log-normalisation (non-causal)", 7,
                   1, 100000),
         float_param("temperature", "Gumbel-Sinkhorn temperature τ > 0: Z = (R [+ g]) / τ", 0.75),
         bool_param("gumbel",
                    "add Gumbel noise (the input gumbel_noise, generated from the seed) to "
                    "the logits",
                    false),
         int_param("sortcut_k",
                   "SortCut: every query attends the first n_s sorted blocks (0 = off; "
                   "non-causal only; 1 <= n_s <= ceil(L/block_size))",
                   0, 0, std::nullopt),
         int_param("sortnet_hidden", "hidden width of the two-layer ReLU sort net", std::nullopt, 1,
                   std::nullopt, "head_dim"),
         choice_param("combine",
                      "concat: one softmax over [sorted block; own block]; sum: two "
                      "softmaxes added; sorted_only: the sorted block only",
                      {"concat", "sum", "sorted_only"}, "concat")});
    return s;
  }

  void resolve(Params& p) const override {
    if (!p.has("value_dim")) p.set("value_dim", p.i("head_dim"));
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(p.i("head_dim"))));
    if (!p.has("sortnet_hidden")) p.set("sortnet_hidden", p.i("head_dim"));
    const double tau = p.f("temperature");
    if (!(tau > 0) || !std::isfinite(tau))
      throw InputError(
          "temperature",
          fmt::format("temperature = {} is not allowed; allowed: a finite number > 0", tau));
    const int64_t L = p.i("seq_len");
    const int64_t b = std::max<int64_t>(1, std::min(p.i("block_size"), L));
    p.set("block_size", b);
    const int64_t nB = (L + b - 1) / b, ns = p.i("sortcut_k");
    if (ns > 0 && p.b("causal"))
      throw InputError("sortcut_k", fmt::format("sortcut_k = {} with causal = true; SortCut is "
                                                "defined for the non-causal variant only "
                                                "(allowed: 0 when causal)",
                                                ns));
    if (ns > nB)
      throw InputError("sortcut_k",
                       fmt::format("sortcut_k = {} exceeds the number of blocks ceil(L/block_size) "
                                   "= {}; allowed: 0 (off) or 1..{}",
                                   ns, nB, nB));
  }

  Params check_params(const Params& p) const override {
    Params q = p;
    if (q.i("seq_len") > 1024) {
      q.set("seq_len", int64_t{1024});
      const int64_t b = std::min<int64_t>(q.i("block_size"), 1024);
      q.set("sortcut_k", std::min(q.i("sortcut_k"), (1024 + b - 1) / b));
    }
    resolve(q);
    return q;
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const Geometry g = geometry(p);
    std::vector<TensorSpec> s = {
        {"q", {g.B, g.H, g.L, g.d}, "queries [B,H,L,d]"},
        {"k", {g.B, g.H, g.L, g.d}, "keys [B,H,L,d]"},
        {"v", {g.B, g.H, g.L, g.dv}, "values [B,H,L,dv]"},
        {"sort_w1", {g.H, g.d, g.hid}, "sort net layer 1 weights [H,d,hidden] ([in, out])"},
        {"sort_b1", {g.H, g.hid}, "sort net layer 1 bias [H,hidden]"},
        {"sort_w2", {g.H, g.hid, g.nB}, "sort net layer 2 weights [H,hidden,nB] ([in, out])"},
        {"sort_b2", {g.H, g.nB}, "sort net layer 2 bias [H,nB]"}};
    if (g.gumbel)
      s.push_back({"gumbel_noise",
                   {g.B, g.H, g.nB, g.nB},
                   "Gumbel noise g = -log(-log U) added to the sort logits [B,H,nB,nB]"});
    return s;
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    const Geometry g = geometry(p);
    return {{"out", {g.B, g.H, g.L, g.dv}, "attention output [B,H,L,dv]"}};
  }

  void generate_inputs(const Params& p, TensorMap& in) const override {
    Mechanism::generate_inputs(p, in);  // N(0, 1) everywhere, then the adjustments below
    const Geometry g = geometry(p);
    auto scale = [&](const char* name, double fan_in) {
      Tensor& t = in[name];
      const float s = static_cast<float>(1.0 / std::sqrt(fan_in));
      for (int64_t i = 0; i < t.numel(); ++i) t[i] *= s;
    };
    scale("sort_w1", double(g.d));
    scale("sort_b1", double(g.d));
    scale("sort_w2", double(g.hid));
    scale("sort_b2", double(g.hid));
    if (g.gumbel) {
      Tensor& t = in["gumbel_noise"];
      fill_uniform(t, static_cast<uint64_t>(p.i("seed")), "gumbel_noise", 0.0, 1.0);
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double u = std::clamp(double(t[i]), 1e-6, 1.0 - 1e-6);
        t[i] = static_cast<float>(-std::log(-std::log(u)));
      }
    }
  }

  CostModel cost(const Params& p, Path path) const override {
    const Geometry g = geometry(p);
    const double B = g.B, H = g.H, L = g.L, d = g.d, dv = g.dv, b = g.b, nB = g.nB, hid = g.hid,
                 S = B * H;
    CostModel c;
    const PairCounts pc = pair_counts(g);
    // Matmul flops per slice.
    const double sortnet = 2 * nB * d * hid + 2 * nB * hid * nB;
    double reorder_exact, reorder_issued;
    if (g.causal) {
      reorder_exact = b * (d + dv) * nB * (nB - 1);  // 2·b·(d+dv) per (i, j < i)
      reorder_issued = 2 * (nB - 1) * (nB - 1) * b * (d + dv);
    } else {
      reorder_exact = reorder_issued = 2 * double(g.sorted_rows()) * L * (d + dv);
    }
    const double attn_exact = 2 * pc.exact * (d + dv), attn_issued = 2 * pc.issued * (d + dv);
    c.flops = S * (sortnet + reorder_exact + attn_exact);
    c.flops_parts = {{"sort net", S * sortnet},
                     {"sorting (S·K, S·V)", S * reorder_exact},
                     {"attention", S * attn_exact}};
    // Elementwise: descriptors, sort-net bias + ReLU, logit scaling (+ noise), Sinkhorn passes
    // (per pass ≈ 4 ops per entry: max, subtract, add, subtract), softmax (3 per pair + the
    // normalising multiply), real-key weights of the sorted rows.
    double sink_ops, sink_tr;
    if (g.causal) {
      const double tri = nB * (nB - 1) / 2;
      sink_ops = 4 * tri;
      sink_tr = tri;
    } else {
      sink_ops = 8 * double(g.iters) * nB * nB;
      sink_tr = double(g.iters) * (2 * nB * nB + 2 * nB) + nB * nB;
    }
    c.elementwise = S * ((g.causal ? 0 : L * d) + 2 * nB * (hid + nB) +
                         nB * nB * (g.gumbel ? 2 : 1) + sink_ops + 4 * pc.exact + nB * nB);
    c.transcendentals = S * (sink_tr + pc.exact);
    c.io_bytes = 4 * (S * L * (2 * d + 2 * dv) + H * (d * hid + hid + hid * nB + nB) +
                      (g.gumbel ? S * nB * nB : 0));
    c.kv_bytes_per_token = 4 * H * (d + dv);
    c.time_complexity = g.ns > 0 ? "O(B·H·(L·n_s·b·d + nB·d·hidden + n_iter·nB²))"
                                 : "O(B·H·(L·b·d + nB·L·d + n_iter·nB²))";
    if (path == Path::Fast) {
      c.issued_flops = S * (sortnet + reorder_issued + attn_issued);
      c.workspace_bytes = 4 * double(fast_threads(g) * scratch_of(g).total());
      c.space_complexity = "O(T·(L·(d + dv) + nB² + b²))";
      c.form = g.ns > 0 ? "sort net + log-space Sinkhorn + SortCut attention (GEMMs)"
                        : "sort net + log-space Sinkhorn + sorted block-local attention (GEMMs)";
    } else {
      const double ls = double(g.sorted_rows()) * b;
      c.issued_flops = S * (sortnet + reorder_exact + 2 * L * (ls + L) * (d + dv));
      c.workspace_bytes = 8 * (nB * nB + nB * (d + hid)) + 4 * (ls + L) * (d + dv) + ls +
                          4 * L * (ls + L) + (g.combine == Combine::Sum ? 4 * L * dv : 0);
      c.space_complexity = "O(L·(L + nB·b))";
      c.form = "dense masked over [sorted keys; keys] (materialised scores)";
    }
    return c;
  }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    const Geometry g = geometry(p);
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    const float* gum = g.gumbel ? input(in, "gumbel_noise").data() : nullptr;
    float* o = output(out, "out").data();
    const int64_t SR = g.sorted_rows(), ls = SR * g.b, lk = ls + g.L;
    for (int64_t s = 0; s < g.B * g.H; ++s) {
      Workspace::Scope scope(ws);
      const float* K = k + s * g.L * g.d;
      const float* V = v + s * g.L * g.dv;
      double* S = ws.alloc<double>(g.nB * g.nB);
      double* scr = ws.alloc<double>(g.nB * (g.d + g.hid));
      sort_matrix_reference(g, K, weights(g, in, s % g.H), gum ? gum + s * g.nB * g.nB : nullptr, S,
                            scr);
      // Extended keys/values: sorted blocks (double accumulation), then the slice's own.
      float* kx = ws.alloc_floats(lk * g.d);
      float* vx = ws.alloc_floats(lk * g.dv);
      auto* masked = ws.alloc<unsigned char>(ls);
      for (int64_t sb = 0; sb < SR; ++sb)
        for (int64_t t = 0; t < g.b; ++t) {
          double w = 0;
          for (int64_t j = 0; j < g.nB; ++j)
            if (j * g.b + t < g.L) w += S[sb * g.nB + j];
          masked[sb * g.b + t] = w == 0;
          for (int64_t c = 0; c < g.d; ++c) {
            double a = 0;
            for (int64_t j = 0; j < g.nB; ++j)
              if (j * g.b + t < g.L) a += S[sb * g.nB + j] * K[(j * g.b + t) * g.d + c];
            kx[(sb * g.b + t) * g.d + c] = float(a);
          }
          for (int64_t c = 0; c < g.dv; ++c) {
            double a = 0;
            for (int64_t j = 0; j < g.nB; ++j)
              if (j * g.b + t < g.L) a += S[sb * g.nB + j] * V[(j * g.b + t) * g.dv + c];
            vx[(sb * g.b + t) * g.dv + c] = float(a);
          }
        }
      std::copy_n(K, g.L * g.d, kx + ls * g.d);
      std::copy_n(V, g.L * g.dv, vx + ls * g.dv);
      AttendProblem a;
      a.batch = a.heads = a.kv_heads = 1;
      a.lq = g.L;
      a.lk = lk;
      a.dim = g.d;
      a.vdim = g.dv;
      a.scale = g.scale;
      a.threads = g.threads;
      a.q = HeadsView::bhld(q + s * g.L * g.d, 1, g.L, g.d);
      a.k = HeadsView::bhld(kx, 1, lk, g.d);
      a.v = HeadsView::bhld(vx, 1, lk, g.dv);
      a.o = HeadsOut::bhld(o + s * g.L * g.dv, 1, g.L, g.dv);
      if (g.combine != Combine::Sum) {
        attend_reference(a, SinkhornMask(g, masked, true, true), ws);
      } else {
        attend_reference(a, SinkhornMask(g, masked, true, false), ws);
        float* o2 = ws.alloc_floats(g.L * g.dv);
        a.o = HeadsOut::bhld(o2, 1, g.L, g.dv);
        attend_reference(a, SinkhornMask(g, masked, false, true), ws);
        for (int64_t t = 0; t < g.L * g.dv; ++t) o[s * g.L * g.dv + t] += o2[t];
      }
    }
  }

  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    const Geometry g = geometry(p);
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    const float* gum = g.gumbel ? input(in, "gumbel_noise").data() : nullptr;
    float* o = output(out, "out").data();
    const Scratch sz = scratch_of(g);
    const int64_t T = fast_threads(g), per = sz.total();
    Workspace::Scope scope(ws);
    float* scratch = ws.alloc_floats(T * per);
    blas::ThreadsScope blas_single(1);
    const int64_t nB = g.nB, b = g.b, d = g.d, dv = g.dv, L = g.L, r = g.last(),
                  SR = g.sorted_rows(), nsk = g.sorted_keys();

#pragma omp parallel num_threads(static_cast <int>(T))
    {
      FlushDenormals ftz;
      float* base = scratch + per * omp_get_thread_num();
      float* U = base;
      float* Hd = U + sz.u;
      float* Z = Hd + sz.hd;
      float* vec = Z + sz.z;  // [0, 2nB): Sinkhorn scratch; [2nB, 3nB): real-key weights
      float* wreal = vec + 2 * nB;
      float* Kh = vec + sz.vec;
      float* Vh = Kh + sz.khat;
      float* Sc = Vh + sz.vhat;

#pragma omp for schedule(dynamic, 1)
      for (int64_t s = 0; s < g.B * g.H; ++s) {
        const float* Q = q + s * L * d;
        const float* K = k + s * L * d;
        const float* V = v + s * L * dv;
        float* O = o + s * L * dv;
        const Weights w = weights(g, in, s % g.H);
        // 1. Block descriptors.
        for (int64_t i = 0; i < nB; ++i) {
          float* u = U + i * d;
          if (g.causal) {
            std::copy_n(K + i * b * d, d, u);
            continue;
          }
          std::fill_n(u, d, 0.0f);
          for (int64_t t = 0; t < g.rows(i); ++t) {
            const float* kr = K + (i * b + t) * d;
#pragma omp simd
            for (int64_t c = 0; c < d; ++c) u[c] += kr[c];
          }
        }
        // 2. Sort net, 3. logits.
        blas::gemm(false, false, nB, g.hid, d, 1.0f, U, d, w.w1, g.hid, 0.0f, Hd, g.hid);
        for (int64_t i = 0; i < nB; ++i) {
          float* h = Hd + i * g.hid;
#pragma omp simd
          for (int64_t c = 0; c < g.hid; ++c) h[c] = std::max(0.0f, h[c] + w.b1[c]);
        }
        blas::gemm(false, false, nB, nB, g.hid, 1.0f, Hd, g.hid, w.w2, nB, 0.0f, Z, nB);
        const float* G = gum ? gum + s * nB * nB : nullptr;
        for (int64_t i = 0; i < nB; ++i) {
          float* z = Z + i * nB;
          for (int64_t j = 0; j < nB; ++j) {
            float x = std::max(0.0f, z[j] + w.b2[j]);
            if (G) x += G[i * nB + j];
            z[j] = x / g.tau;
          }
        }
        // 4. Sinkhorn: Z becomes S.
        balance(Z, nB, g.iters, g.causal, vec);
        // Weight of each sorted row on the real keys of a padded position (t >= r).
        for (int64_t sb = 0; sb < SR; ++sb) {
          float a = 0;
          for (int64_t j = 0; j + 1 < nB; ++j) a += Z[sb * nB + j];
          wreal[sb] = a;
        }
        // 5. Sorted blocks.
        if (g.causal) {
          if (nB >= 2) {  // rows 1..nB-1, sources 0..nB-2 (all full blocks)
            blas::gemm(false, false, nB - 1, b * d, nB - 1, 1.0f, Z + nB, nB, K, b * d, 0.0f,
                       Kh + b * d, b * d);
            blas::gemm(false, false, nB - 1, b * dv, nB - 1, 1.0f, Z + nB, nB, V, b * dv, 0.0f,
                       Vh + b * dv, b * dv);
          }
        } else {
          const int64_t full = r == b ? nB : nB - 1;
          if (full > 0) {
            blas::gemm(false, false, SR, b * d, full, 1.0f, Z, nB, K, b * d, 0.0f, Kh, b * d);
            blas::gemm(false, false, SR, b * dv, full, 1.0f, Z, nB, V, b * dv, 0.0f, Vh, b * dv);
          } else {
            std::fill_n(Kh, SR * b * d, 0.0f);
            std::fill_n(Vh, SR * b * dv, 0.0f);
          }
          if (r < b) {  // partial last block: rank-1 update of the first r rows of each block
            const int64_t j = nB - 1;
            blas::gemm(false, false, SR, r * d, 1, 1.0f, Z + j, nB, K + j * b * d, r * d, 1.0f, Kh,
                       b * d);
            blas::gemm(false, false, SR, r * dv, 1, 1.0f, Z + j, nB, V + j * b * dv, r * dv, 1.0f,
                       Vh, b * dv);
          }
        }
        // 6. Attention per query block.
        for (int64_t i = 0; i < nB; ++i) {
          const int64_t bi = g.rows(i), i0 = i * b;
          const bool us = g.use_sorted(i), ul = g.use_local(i);
          const int64_t off = us ? nsk : 0, ld = off + (ul ? bi : 0);
          const float* ks = g.ns > 0 ? Kh : Kh + i * b * d;
          const float* vs = g.ns > 0 ? Vh : Vh + i * b * dv;
          const int64_t sb0 = g.ns > 0 ? 0 : i;  // first sorted block in the score row
          if (us) blas::gemm(false, true, bi, nsk, d, g.scale, Q + i0 * d, d, ks, d, 0.0f, Sc, ld);
          if (ul)
            blas::gemm(false, true, bi, bi, d, g.scale, Q + i0 * d, d, K + i0 * d, d, 0.0f,
                       Sc + off, ld);
          for (int64_t t = 0; t < bi; ++t) {
            float* row = Sc + t * ld;
            if (us && r < b)
              for (int64_t m = 0; m < nsk / b; ++m)
                if (wreal[sb0 + m] == 0.0f)
                  std::fill(row + m * b + r, row + (m + 1) * b, -INFINITY);
            if (ul && g.causal) std::fill(row + off + t + 1, row + off + bi, -INFINITY);
            if (g.combine == Combine::Sum && us && ul) {
              softmax_row(row, nsk);
              softmax_row(row + off, bi);
            } else {
              softmax_row(row, ld);
            }
          }
          if (us)
            blas::gemm(false, false, bi, dv, nsk, 1.0f, Sc, ld, vs, dv, 0.0f, O + i0 * dv, dv);
          if (ul)
            blas::gemm(false, false, bi, dv, bi, 1.0f, Sc + off, ld, V + i0 * dv, dv,
                       us ? 1.0f : 0.0f, O + i0 * dv, dv);
        }
      }
    }
  }
};

}  // namespace

const Mechanism& mechanism_sinkhorn() {
  static const SinkhornAttention m;
  return m;
}

}  // namespace kt
