// self: scaled dot-product attention, Vaswani et al. 2017, "Attention Is All You Need" §3.2.1.
//   inputs  q [B,H,L,d], k [B,G,L,d], v [B,G,L,dv]   (G = kv_heads, default H; query head h
//           reads K/V head h / (H/G), as PyTorch's SDPA with enable_gqa: the GQA/MQA core alone)
//   outputs out [B,H,L,dv] = softmax(scale·q·kᵀ | mask)·v,  lse [B,H,L] (natural log-sum-exp)
// Mask: none, or causal (key j visible to query i iff j <= i). A row with no visible key gives 0.
// Reference: attend_reference (the L x L scores of a slice materialised, double accumulation).
// Fast: attend_tiled (online softmax over 256 x 512 tiles, causal tiles above the diagonal
// skipped, workspace independent of L).
#include <fmt/format.h>

#include <cmath>

#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

namespace {

class SelfAttention final : public Mechanism {
 public:
  std::string name() const override { return "self"; }
  std::vector<std::string> aliases() const override { return {"sdpa", "full", "flash"}; }
  std::string family() const override { return "exact"; }
  std::string summary() const override {
    return "scaled dot-product attention on given q, k, v (tiled online softmax fast path)";
  }
  PaperInfo paper() const override {
    return {"Attention Is All You Need", "Vaswani et al.", 2017, "1706.03762"};
  }

  std::vector<ParamSpec> params() const override {
    std::vector<ParamSpec> s = {
        common::batch(),     common::heads(),   common::kv_heads("heads"), common::head_dim(),
        common::value_dim(), common::seq_len(), common::causal(false),     common::scale(),
        common::seed(),      common::threads()};
    for (auto& t : tile_params()) s.push_back(t);
    return s;
  }

  void resolve(Params& p) const override {
    if (!p.has("kv_heads")) p.set("kv_heads", p.i("heads"));
    if (p.i("heads") % p.i("kv_heads") != 0)
      throw InputError("kv_heads", fmt::format("kv_heads = {} must divide heads = {} (allowed: a "
                                               "divisor of {})",
                                               p.i("kv_heads"), p.i("heads"), p.i("heads")));
    if (!p.has("value_dim")) p.set("value_dim", p.i("head_dim"));
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(p.i("head_dim"))));
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len");
    const int64_t G = p.i("kv_heads");
    return {{"q", {B, H, L, p.i("head_dim")}, "queries [B,H,L,d]"},
            {"k", {B, G, L, p.i("head_dim")}, "keys [B,G,L,d]"},
            {"v", {B, G, L, p.i("value_dim")}, "values [B,G,L,dv]"}};
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len");
    return {{"out", {B, H, L, p.i("value_dim")}, "attention output [B,H,L,dv]"},
            {"lse", {B, H, L}, "log-sum-exp of each row's scores [B,H,L]"}};
  }

  CostModel cost(const Params& p, Path path) const override {
    const double B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), d = p.i("head_dim"),
                 dv = p.i("value_dim");
    const bool causal = p.b("causal");
    CostModel c;
    add_softmax_cost(c, B * H, causal ? causal_pairs(L) : L * L, L, d, dv);
    const double G = p.i("kv_heads");
    c.io_bytes = 4 * B * L * (H * d + G * (d + dv) + H * dv + H);
    c.kv_bytes_per_token = 4 * G * (d + dv);
    c.time_complexity = "O(B·H·L²·d)";
    if (path == Path::Fast) {
      const TileConfig cfg = tile_config(p);
      const int64_t len = p.i("seq_len"), group = p.i("heads") / p.i("kv_heads");
      DensePattern pattern(causal, len, len);
      c.issued_flops =
          B * H * 2 * (d + dv) * double(tiled_visited_pairs(pattern, 0, len, len, group, cfg));
      const int64_t bq = std::min(cfg.block_q(group), len);
      const int64_t items = p.i("batch") * p.i("kv_heads") * ((len + bq - 1) / bq);
      c.workspace_bytes = double(std::min(p.i("threads"), items)) *
                          tiled_workspace_bytes(p.i("head_dim"), p.i("value_dim"), group, cfg,
                                                p.i("seq_len"), p.i("seq_len"));
      c.space_complexity = "O(T·Br·(d + Bc))";
      c.form = "tiled online softmax";
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
    AttendProblem prob = problem(p, in, out);
    DensePattern pattern(p.b("causal"), prob.lq, prob.lk);
    attend_reference(prob, pattern, ws);
  }
  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    AttendProblem prob = problem(p, in, out);
    DensePattern pattern(p.b("causal"), prob.lq, prob.lk);
    attend_tiled(prob, pattern, ws, tile_config(p));
  }

 private:
  static AttendProblem problem(const Params& p, const TensorMap& in, TensorMap& out) {
    AttendProblem a;
    a.batch = p.i("batch");
    a.heads = p.i("heads");
    a.kv_heads = p.i("kv_heads");
    a.lq = a.lk = p.i("seq_len");
    a.dim = p.i("head_dim");
    a.vdim = p.i("value_dim");
    a.scale = static_cast<float>(p.f("scale"));
    a.q = HeadsView::bhld(input(in, "q").data(), a.heads, a.lq, a.dim);
    a.k = HeadsView::bhld(input(in, "k").data(), a.kv_heads, a.lk, a.dim);
    a.v = HeadsView::bhld(input(in, "v").data(), a.kv_heads, a.lk, a.vdim);
    a.o = HeadsOut::bhld(output(out, "out").data(), a.heads, a.lq, a.vdim);
    a.lse = output(out, "lse").data();
    a.threads = static_cast<int>(p.i("threads"));
    return a;
  }
};

}  // namespace

const Mechanism& mechanism_self() {
  static const SelfAttention m;
  return m;
}

}  // namespace kt
