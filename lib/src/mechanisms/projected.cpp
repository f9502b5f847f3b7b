#include "mechanisms/projected.hpp"

#include <fmt/format.h>

#include <cmath>

#include "kernels/project.hpp"

namespace kt {

std::vector<ParamSpec> ProjectedAttention::params() const {
  const ParamSpec model_dim = int_param("model_dim", "D, model dimension of x and of the output",
                                        std::nullopt, 1, 1 << 16, "heads * head_dim");
  std::vector<ParamSpec> s = {
      common::batch(),    common::heads(),       common::kv_heads(kv_heads_text()),
      common::head_dim(), common::value_dim(),   model_dim,
      common::seq_len(),  common::causal(false), common::scale(),
      common::seed(),     common::threads()};
  for (auto& t : tile_params()) s.push_back(t);
  return s;
}

void ProjectedAttention::resolve(Params& p) const {
  const int64_t H = p.i("heads");
  if (!p.has("kv_heads")) p.set("kv_heads", default_kv_heads(H));
  const int64_t G = p.i("kv_heads");
  if (kv_heads_fixed() && G != default_kv_heads(H))
    throw InputError("kv_heads", fmt::format("{} uses {} key/value head(s); got {} (use gqa for "
                                             "other groupings)",
                                             name(), default_kv_heads(H), G));
  if (H % G != 0)
    throw InputError("kv_heads", fmt::format("kv_heads = {} must divide heads = {} (allowed: a "
                                             "divisor of {})",
                                             G, H, H));
  if (!p.has("value_dim")) p.set("value_dim", p.i("head_dim"));
  if (!p.has("model_dim")) p.set("model_dim", H * p.i("head_dim"));
  if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(p.i("head_dim"))));
}

std::vector<TensorSpec> ProjectedAttention::inputs(const Params& p) const {
  const int64_t B = p.i("batch"), L = p.i("seq_len"), D = p.i("model_dim"), H = p.i("heads"),
                G = p.i("kv_heads"), d = p.i("head_dim"), dv = p.i("value_dim");
  return {{"x", {B, L, D}, "layer input [B,L,D]"},
          {"w_q", {D, H * d}, "query projection [D,H·d]"},
          {"w_k", {D, G * d}, "key projection [D,G·d]"},
          {"w_v", {D, G * dv}, "value projection [D,G·dv]"},
          {"w_o", {H * dv, D}, "output projection [H·dv,D]"}};
}

std::vector<TensorSpec> ProjectedAttention::outputs(const Params& p) const {
  return {{"out", {p.i("batch"), p.i("seq_len"), p.i("model_dim")}, "layer output [B,L,D]"}};
}

void ProjectedAttention::generate_inputs(const Params& p, TensorMap& in) const {
  Mechanism::generate_inputs(p, in);  // N(0, 1) everywhere, then weights scaled to 1/sqrt(fan_in)
  for (const char* w : {"w_q", "w_k", "w_v", "w_o"}) {
    Tensor& t = in[w];
    const float s = 1.0f / std::sqrt(float(t.dim(0)));
    for (int64_t i = 0; i < t.numel(); ++i) t[i] *= s;
  }
}

CostModel ProjectedAttention::cost(const Params& p, Path path) const {
  const double B = p.i("batch"), L = p.i("seq_len"), D = p.i("model_dim"), H = p.i("heads"),
               G = p.i("kv_heads"), d = p.i("head_dim"), dv = p.i("value_dim");
  const bool causal = p.b("causal");
  CostModel c;
  const double proj = 2 * B * L * D * (H * d + G * d + G * dv) + 2 * B * L * H * dv * D;
  add_softmax_cost(c, B * H, causal ? causal_pairs(L) : L * L, L, d, dv);
  const double core = c.flops;
  c.flops += proj;
  c.flops_parts = {{"projections", proj}, {"core", core}};
  c.io_bytes = 4 * (B * L * D * 2 + D * (H * d + G * d + G * dv) + H * dv * D);
  c.kv_bytes_per_token = 4 * G * (d + dv);
  c.time_complexity = "O(B·L·D·H·d + B·H·L²·d)";
  const double buffers = 4 * B * L * (H * d + G * d + G * dv + H * dv);
  if (path == Path::Fast) {
    const TileConfig cfg = tile_config(p);
    const int64_t group = p.i("heads") / p.i("kv_heads");
    DensePattern pattern(causal, p.i("seq_len"), p.i("seq_len"));
    const double visited =
        double(tiled_visited_pairs(pattern, 0, p.i("seq_len"), p.i("seq_len"), group, cfg));
    c.issued_flops = proj + B * H * 2 * (d + dv) * visited;
    const int64_t bq = std::min(cfg.block_q(group), p.i("seq_len"));
    const int64_t items = p.i("batch") * p.i("kv_heads") * ((p.i("seq_len") + bq - 1) / bq);
    c.workspace_bytes =
        buffers + double(std::min(p.i("threads"), items)) *
                      tiled_workspace_bytes(p.i("head_dim"), p.i("value_dim"), group, cfg,
                                            p.i("seq_len"), p.i("seq_len"));
    c.space_complexity = "O(B·L·H·d + T·Br·Bc)";
    c.form = "projection GEMMs + tiled online softmax";
  } else {
    c.issued_flops = c.flops;
    c.workspace_bytes = buffers + 4 * L * L;
    c.space_complexity = "O(B·L·H·d + L²)";
    c.form = "naive projections + dense masked attention";
  }
  return c;
}

void ProjectedAttention::forward(const Params& p, const TensorMap& in, TensorMap& out,
                                 Workspace& ws, Path path) const {
  const int64_t B = p.i("batch"), L = p.i("seq_len"), D = p.i("model_dim"), H = p.i("heads"),
                G = p.i("kv_heads"), d = p.i("head_dim"), dv = p.i("value_dim");
  const int threads = static_cast<int>(p.i("threads"));
  auto proj = path == Path::Fast ? project : project_reference;
  Workspace::Scope scope(ws);
  float* q = ws.alloc_floats(B * L * H * d);     // [B,L,H,d]
  float* k = ws.alloc_floats(B * L * G * d);     // [B,L,G,d]
  float* v = ws.alloc_floats(B * L * G * dv);    // [B,L,G,dv]
  float* ctx = ws.alloc_floats(B * L * H * dv);  // [B,L,H,dv]
  const float* x = input(in, "x").data();
  // Pass 1: projections, every (batch, position) row at once.
  proj(x, input(in, "w_q").data(), q, B * L, D, H * d, threads, 0);
  proj(x, input(in, "w_k").data(), k, B * L, D, G * d, threads, 0);
  proj(x, input(in, "w_v").data(), v, B * L, D, G * dv, threads, 0);
  // Pass 2: attention core per head, reading the [B,L,heads,d] buffers with a row stride.
  AttendProblem a;
  a.batch = B;
  a.heads = H;
  a.kv_heads = G;
  a.lq = a.lk = L;
  a.dim = d;
  a.vdim = dv;
  a.scale = static_cast<float>(p.f("scale"));
  a.q = HeadsView::blhd(q, H, L, d);
  a.k = HeadsView::blhd(k, G, L, d);
  a.v = HeadsView::blhd(v, G, L, dv);
  a.o = HeadsOut::blhd(ctx, H, L, dv);
  a.threads = threads;
  DensePattern pattern(p.b("causal"), L, L);
  if (path == Path::Fast)
    attend_tiled(a, pattern, ws, tile_config(p));
  else
    attend_reference(a, pattern, ws);
  // Pass 3: output projection of the concatenated heads.
  proj(ctx, input(in, "w_o").data(), output(out, "out").data(), B * L, H * dv, D, threads, 0);
}

void ProjectedAttention::reference(const Params& p, const TensorMap& in, TensorMap& out,
                                   Workspace& ws) const {
  forward(p, in, out, ws, Path::Reference);
}
void ProjectedAttention::fast(const Params& p, const TensorMap& in, TensorMap& out,
                              Workspace& ws) const {
  forward(p, in, out, ws, Path::Fast);
}

}  // namespace kt
