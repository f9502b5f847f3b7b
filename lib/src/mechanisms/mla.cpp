// mla: multi-head latent attention, DeepSeek-AI 2024, "DeepSeek-V2" §2.1.2-2.1.3 and Appendix C
// (mechanisms-softmax.md §6; choices: decisions.md, mla bullet). Weights are [in, out].
//   inputs  x [B,L,D]; w_dkv [D,d_c], w_kr [D,d_r], kv_norm [d_c]; w_uk, w_uv [d_c,H·d_h];
//           w_uq [*,H·d_h], w_qr [*,H·d_r]; w_o [H·d_h,D]; with q_rank d_c' > 0 also
//           w_dq [D,d_c'], q_norm [d_c'] and * = d_c', else * = D (w_uq, w_qr read x directly).
//   output  out [B,L,D]
// with d_h = nope_dim (also the value width), d_r = rope_dim, d_c = kv_rank. Per token t, head h:
//   c^Q_t  = RMSNorm_q(x_t w_dq)      (q_rank > 0; else c^Q_t = x_t)
//   q_t,h  = [ c^Q_t w_uq_h ; RoPE_t(c^Q_t w_qr_h) ]                       width d_h + d_r
//   c_t    = RMSNorm_kv(x_t w_dkv)    k^R_t = RoPE_t(x_t w_kr)   (shared by all heads, no norm)
//   k_t,h  = [ c_t w_uk_h ; k^R_t ]   v_t,h = c_t w_uv_h       (the KV cache is [c_t ; k^R_t])
//   o_t,h  = Σ_{j allowed} softmax_j(scale · q_t,h · k_j,h) v_j,h  (causal by default)
//   out_t  = [o_t,1 ; … ; o_t,H] w_o
// Head h owns columns h·d_h .. of w_uq/w_uk/w_uv, h·d_r .. of w_qr, rows h·d_h .. of w_o.
// RMSNorm(y) = y / sqrt(mean(y²) + 1e-6) ⊙ γ (double accumulation). RoPE: kernels/rope.hpp,
// interleaved pairs (2i, 2i+1), base 10000, positions 0..L-1, no YaRN. scale = 1/sqrt(d_h + d_r).
//
// Forms (`form`), equal in exact arithmetic:
//   naive     up-project K/V per head (k_nope = c w_uk_h, v = c w_uv_h), then attend_tiled over
//             [k_nope ; k^R] (dim d_h + d_r, value dim d_h, one K/V head per query head).
//   absorbed  absorb w_uk into the query, q̂_h = [ q_nope_h w_uk_hᵀ ; q^R_h ] (dim d_c + d_r),
//             attend in the latent space MQA-style over the shared panel [c ; k^R] (value: c,
//             dim d_c; kv_heads = 1, so all H query heads are stacked against one K/V panel),
//             then up-project each head's latent context through w_uv_h, then w_o.
// Reference: the naive form with plain double-accumulated products and attend_reference.
// Projections are GEMMs over all B·L rows outside parallel regions; the per-head ones write (or
// read) a head's column slice with a row stride, so q/k are assembled without copies.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "kernels/blas.hpp"
#include "kernels/rope.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

namespace {

constexpr double kRopeBase = 10000.0;
constexpr double kNormEps = 1e-6;

// Bytes the Workspace takes for `floats` floats.
double ws_bytes(double floats) {
  return Workspace::padded_float_bytes(floats);
}

// Row-major C[m,n] = A[m,k] · op(B) with leading dimensions; B is [k,n] (or [n,k] with trans_b).
// Fast: blas::gemm_parallel over `threads` threads. Reference: plain loops, double accumulation.
void matmul(Path path, const float* a, int64_t lda, const float* b, int64_t ldb, bool trans_b,
            float* c, int64_t ldc, int64_t m, int64_t n, int64_t k, int threads) {
  if (m == 0 || n == 0) return;
  if (path == Path::Fast) {
    blas::gemm_parallel(threads, false, trans_b, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < m; ++r) {
    std::vector<double> acc(n, 0.0);
    for (int64_t i = 0; i < k; ++i) {
      const double ai = a[r * lda + i];
      if (trans_b)
        for (int64_t o = 0; o < n; ++o) acc[o] += ai * double(b[o * ldb + i]);
      else
        for (int64_t o = 0; o < n; ++o) acc[o] += ai * double(b[i * ldb + o]);
    }
    for (int64_t o = 0; o < n; ++o) c[r * ldc + o] = static_cast<float>(acc[o]);
  }
}

// y ← y / sqrt(mean(y²) + eps) ⊙ gamma for `rows` rows of `width` at stride ld.
void rms_norm(float* y, int64_t rows, int64_t width, int64_t ld, const float* gamma, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* v = y + r * ld;
    double ss = 0;
    for (int64_t c = 0; c < width; ++c) ss += double(v[c]) * double(v[c]);
    const double inv = 1.0 / std::sqrt(ss / double(width) + kNormEps);
    for (int64_t c = 0; c < width; ++c) v[c] = static_cast<float>(double(v[c]) * inv * gamma[c]);
  }
}

struct Dims {
  int64_t B, L, D, H, n, r, c, qr, N, qin;
  explicit Dims(const Params& p)
      : B(p.i("batch")),
        L(p.i("seq_len")),
        D(p.i("model_dim")),
        H(p.i("heads")),
        n(p.i("nope_dim")),
        r(p.i("rope_dim")),
        c(p.i("kv_rank")),
        qr(p.i("q_rank")),
        N(B * L),
        qin(qr > 0 ? qr : D) {}
};

class MultiHeadLatentAttention final : public Mechanism {
 public:
  std::string name() const override { return "mla"; }
  std::vector<std::string> aliases() const override { return {"latent-attention"}; }
  std::string family() const override { return "latent"; }
  std::string summary() const override {
    return "multi-head latent attention (DeepSeek-V2): low-rank KV latent + decoupled RoPE, "
           "naive or absorbed form";
  }
  PaperInfo paper() const override {
    return {"DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model",
            "DeepSeek-AI", 2024, "2405.04434"};
  }

  std::vector<ParamSpec> params() const override {
    ParamSpec head_dim = common::head_dim();
    head_dim.help = "base head size: the defaults of nope_dim, rope_dim, kv_rank, model_dim";
    ParamSpec scale = common::scale("1/sqrt(nope_dim + rope_dim)");
    const ParamSpec form =
        choice_param("form",
                     "fast path form: naive (up-project K/V per head) or absorbed (w_uk in the "
                     "query, attend in the latent space against one shared K/V panel)",
                     {"naive", "absorbed"}, "naive");
    std::vector<ParamSpec> s = {
        common::batch(),
        common::heads(),
        head_dim,
        int_param("nope_dim",
                  "d_h, content (non-rotary) query/key width per head, also the value "
                  "width",
                  std::nullopt, 1, 1 << 14, "head_dim"),
        int_param("rope_dim", "d_h^R, decoupled RoPE width per head (even; 0 = no RoPE part)",
                  std::nullopt, 0, 1 << 14, "head_dim / 2"),
        int_param("kv_rank", "d_c, KV latent width (the cache holds kv_rank + rope_dim per token)",
                  std::nullopt, 1, 1 << 16, "4 * head_dim"),
        int_param("q_rank", "d_c', query latent width (0 = no query compression)", int64_t{0}, 0,
                  1 << 16, ""),
        int_param("model_dim", "D, model dimension of x and of the output", std::nullopt, 1,
                  1 << 16, "heads * head_dim"),
        common::seq_len(),
        common::causal(true),
        scale,
        form,
        common::seed(),
        common::threads()};
    for (auto& t : tile_params()) s.push_back(t);
    return s;
  }

  void resolve(Params& p) const override {
    const int64_t d = p.i("head_dim");
    const bool rope_given = p.has("rope_dim");
    if (!p.has("nope_dim")) p.set("nope_dim", d);
    if (!rope_given) p.set("rope_dim", d / 2);
    if (!p.has("kv_rank")) p.set("kv_rank", 4 * d);
    if (!p.has("model_dim")) p.set("model_dim", p.i("heads") * d);
    const int64_t r = p.i("rope_dim");
    if (r % 2 != 0)
      throw InputError("rope_dim",
                       fmt::format("rope_dim = {}{} must be even: RoPE rotates pairs (2i, 2i+1) "
                                   "(allowed: an even integer in [0, 16384])",
                                   r, rope_given ? "" : " (head_dim / 2)"));
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(p.i("nope_dim") + p.i("rope_dim"))));
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const Dims d(p);
    std::vector<TensorSpec> s = {{"x", {d.B, d.L, d.D}, "layer input [B,L,D]"}};
    if (d.qr > 0) {
      s.push_back({"w_dq", {d.D, d.qr}, "query down-projection [D,q_rank]"});
      s.push_back({"q_norm", {d.qr}, "RMSNorm weight of the query latent [q_rank]"});
    }
    const std::string star = d.qr > 0 ? "q_rank" : "D";
    s.push_back({"w_uq", {d.qin, d.H * d.n}, "query up-projection [" + star + ",H·nope_dim]"});
    s.push_back({"w_qr", {d.qin, d.H * d.r}, "query RoPE projection [" + star + ",H·rope_dim]"});
    s.push_back({"w_dkv", {d.D, d.c}, "KV down-projection to the latent [D,kv_rank]"});
    s.push_back({"w_kr", {d.D, d.r}, "shared RoPE key projection [D,rope_dim]"});
    s.push_back({"kv_norm", {d.c}, "RMSNorm weight of the KV latent [kv_rank]"});
    s.push_back({"w_uk", {d.c, d.H * d.n}, "key up-projection [kv_rank,H·nope_dim]"});
    s.push_back({"w_uv", {d.c, d.H * d.n}, "value up-projection [kv_rank,H·nope_dim]"});
    s.push_back({"w_o", {d.H * d.n, d.D}, "output projection [H·nope_dim,D]"});
    return s;
  }

  std::vector<TensorSpec> outputs(const Params& p) const override {
    return {{"out", {p.i("batch"), p.i("seq_len"), p.i("model_dim")}, "layer output [B,L,D]"}};
  }

  void generate_inputs(const Params& p, TensorMap& in) const override {
    Mechanism::generate_inputs(p, in);  // N(0, 1) everywhere
    for (auto& [name, t] : in) {
      if (name == "x") continue;
      if (name == "q_norm" || name == "kv_norm") {  // γ ≈ 1: 1 + 0.1·N(0, 1)
        for (int64_t i = 0; i < t.numel(); ++i) t[i] = 1.0f + 0.1f * t[i];
        continue;
      }
      const float s = 1.0f / std::sqrt(float(std::max<int64_t>(1, t.dim(0))));  // 1/sqrt(fan_in)
      for (int64_t i = 0; i < t.numel(); ++i) t[i] *= s;
    }
  }

  CostModel cost(const Params& p, Path path) const override;

  // The reference has the O(L²) scores and plain triple loops: check at a length whose cost stays
  // near that of a 1024-token default layer (16 tokens at DeepSeek-V2's sizes).
  Params check_params(const Params& p) const override {
    Params q = p;
    const Dims d(p);
    const double per_token = 2.0 * (d.D * d.qr + d.qin * d.H * (d.n + d.r) + d.D * (d.c + d.r) +
                                    2 * d.c * d.H * d.n + d.H * d.n * d.D);
    const int64_t cap = std::clamp<int64_t>(int64_t(4e9 / per_token), 16, 1024);
    if (q.i("seq_len") > cap) q.set("seq_len", cap);
    resolve(q);
    return q;
  }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    naive(p, in, out, ws, Path::Reference);
  }
  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    if (p.s("form") == "absorbed")
      absorbed(p, in, out, ws);
    else
      naive(p, in, out, ws, Path::Fast);
  }

 private:
  // Shared prologue: RoPE table, the latent panel lat [B,L, kv_rank + rope_dim] = [c ; k^R] (the
  // KV cache), and c^Q (q_rank > 0) from `ws` in that order; returns the query source (x or c^Q).
  struct Prologue {
    float *cos_t = nullptr, *sin_t = nullptr, *lat = nullptr;
  };
  static Prologue prologue(const Dims& d, const TensorMap& in, Workspace& ws, Path path,
                           int threads) {
    Prologue pr;
    if (d.r > 0) {
      pr.cos_t = ws.alloc_floats(d.L * d.r / 2);
      pr.sin_t = ws.alloc_floats(d.L * d.r / 2);
      rope_table(d.L, d.r, kRopeBase, 0, pr.cos_t, pr.sin_t);
    }
    const int64_t w = d.c + d.r;
    pr.lat = ws.alloc_floats(d.N * w);
    const float* x = input(in, "x").data();
    matmul(path, x, d.D, input(in, "w_dkv").data(), d.c, false, pr.lat, w, d.N, d.c, d.D, threads);
    rms_norm(pr.lat, d.N, d.c, w, input(in, "kv_norm").data(), threads);
    if (d.r > 0) {
      matmul(path, x, d.D, input(in, "w_kr").data(), d.r, false, pr.lat + d.c, w, d.N, d.r, d.D,
             threads);
      rope_apply(pr.lat + d.c, d.B, d.L, 1, d.r, d.L * w, w, 0, pr.cos_t, pr.sin_t, threads);
    }
    return pr;
  }
  // c^Q = RMSNorm_q(x w_dq) into a new buffer, or x itself when q_rank = 0.
  static const float* query_source(const Dims& d, const TensorMap& in, Workspace& ws, Path path,
                                   int threads) {
    const float* x = input(in, "x").data();
    if (d.qr == 0) return x;
    float* cq = ws.alloc_floats(d.N * d.qr);
    matmul(path, x, d.D, input(in, "w_dq").data(), d.qr, false, cq, d.qr, d.N, d.qr, d.D, threads);
    rms_norm(cq, d.N, d.qr, d.qr, input(in, "q_norm").data(), threads);
    return cq;
  }
  // q^R_h = RoPE(src w_qr_h) written to dst + h·ld_head (row stride ld_row) for every head.
  static void query_rope(const Dims& d, const TensorMap& in, const float* src, float* dst,
                         int64_t ld_row, int64_t ld_head, const Prologue& pr, Path path,
                         int threads) {
    if (d.r == 0) return;
    const float* w_qr = input(in, "w_qr").data();
    for (int64_t h = 0; h < d.H; ++h)
      matmul(path, src, d.qin, w_qr + h * d.r, d.H * d.r, false, dst + h * ld_head, ld_row, d.N,
             d.r, d.qin, threads);
    rope_apply(dst, d.B, d.L, d.H, d.r, d.L * ld_row, ld_row, ld_head, pr.cos_t, pr.sin_t, threads);
  }

  void naive(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws, Path path) const {
    const Dims d(p);
    const int threads = static_cast<int>(p.i("threads"));
    const int64_t dk = d.n + d.r, w = d.c + d.r;
    Workspace::Scope scope(ws);
    const Prologue pr = prologue(d, in, ws, path, threads);
    float* q = ws.alloc_floats(d.N * d.H * dk);     // [B,L,H, nope + rope]
    float* k = ws.alloc_floats(d.N * d.H * dk);     // [B,L,H, nope + rope]
    float* v = ws.alloc_floats(d.N * d.H * d.n);    // [B,L,H, nope]
    float* ctx = ws.alloc_floats(d.N * d.H * d.n);  // [B,L,H, nope]
    {
      Workspace::Scope qscope(ws);
      const float* src = query_source(d, in, ws, path, threads);
      const float* w_uq = input(in, "w_uq").data();
      for (int64_t h = 0; h < d.H; ++h)
        matmul(path, src, d.qin, w_uq + h * d.n, d.H * d.n, false, q + h * dk, d.H * dk, d.N, d.n,
               d.qin, threads);
      query_rope(d, in, src, q + d.n, d.H * dk, dk, pr, path, threads);
    }
    // K/V up-projection of the latent, per head; every head's rope part is the shared k^R.
    const float* w_uk = input(in, "w_uk").data();
    for (int64_t h = 0; h < d.H; ++h)
      matmul(path, pr.lat, w, w_uk + h * d.n, d.H * d.n, false, k + h * dk, d.H * dk, d.N, d.n, d.c,
             threads);
    if (d.r > 0) {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t t = 0; t < d.N; ++t)
        for (int64_t h = 0; h < d.H; ++h)
          std::copy(pr.lat + t * w + d.c, pr.lat + t * w + w, k + (t * d.H + h) * dk + d.n);
    }
    matmul(path, pr.lat, w, input(in, "w_uv").data(), d.H * d.n, false, v, d.H * d.n, d.N,
           d.H * d.n, d.c, threads);
    AttendProblem a;
    a.batch = d.B;
    a.heads = a.kv_heads = d.H;
    a.lq = a.lk = d.L;
    a.dim = dk;
    a.vdim = d.n;
    a.scale = static_cast<float>(p.f("scale"));
    a.q = HeadsView::blhd(q, d.H, d.L, dk);
    a.k = HeadsView::blhd(k, d.H, d.L, dk);
    a.v = HeadsView::blhd(v, d.H, d.L, d.n);
    a.o = HeadsOut::blhd(ctx, d.H, d.L, d.n);
    a.threads = threads;
    DensePattern pattern(p.b("causal"), d.L, d.L);
    if (path == Path::Fast)
      attend_tiled(a, pattern, ws, tile_config(p));
    else
      attend_reference(a, pattern, ws);
    matmul(path, ctx, d.H * d.n, input(in, "w_o").data(), d.D, false, output(out, "out").data(),
           d.D, d.N, d.D, d.H * d.n, threads);
  }

  void absorbed(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const {
    const Dims d(p);
    const Path path = Path::Fast;
    const int threads = static_cast<int>(p.i("threads"));
    const int64_t w = d.c + d.r;
    Workspace::Scope scope(ws);
    const Prologue pr = prologue(d, in, ws, path, threads);
    float* ctx = ws.alloc_floats(d.N * d.H * d.n);  // [B,L,H, nope]
    float* qh = ws.alloc_floats(d.N * d.H * w);     // [B,L,H, kv_rank + rope]: q̂
    {
      Workspace::Scope qscope(ws);
      const float* src = query_source(d, in, ws, path, threads);
      float* qn = ws.alloc_floats(d.N * d.H * d.n);  // [B,L,H, nope]: q_nope
      matmul(path, src, d.qin, input(in, "w_uq").data(), d.H * d.n, false, qn, d.H * d.n, d.N,
             d.H * d.n, d.qin, threads);
      // Absorb w_uk: q̂_h[:, :kv_rank] = q_nope_h · w_uk_hᵀ (w_uk_h = columns h·nope.. of w_uk).
      const float* w_uk = input(in, "w_uk").data();
      for (int64_t h = 0; h < d.H; ++h)
        matmul(path, qn + h * d.n, d.H * d.n, w_uk + h * d.n, d.H * d.n, true, qh + h * w, d.H * w,
               d.N, d.c, d.n, threads);
      query_rope(d, in, src, qh + d.c, d.H * w, w, pr, path, threads);
    }
    float* ctx_lat = ws.alloc_floats(d.N * d.H * d.c);  // [B,L,H, kv_rank]
    AttendProblem a;
    a.batch = d.B;
    a.heads = d.H;
    a.kv_heads = 1;
    a.lq = a.lk = d.L;
    a.dim = w;
    a.vdim = d.c;
    a.scale = static_cast<float>(p.f("scale"));
    a.q = HeadsView::blhd(qh, d.H, d.L, w);
    a.k = HeadsView::blhd(pr.lat, 1, d.L, w);
    a.v = HeadsView{pr.lat, d.L * w, 0, w};  // the first kv_rank columns of the panel: c
    a.o = HeadsOut::blhd(ctx_lat, d.H, d.L, d.c);
    a.threads = threads;
    DensePattern pattern(p.b("causal"), d.L, d.L);
    attend_tiled(a, pattern, ws, tile_config(p));
    // Up-project each head's latent context: o_h = õ_h · w_uv_h.
    const float* w_uv = input(in, "w_uv").data();
    for (int64_t h = 0; h < d.H; ++h)
      matmul(path, ctx_lat + h * d.c, d.H * d.c, w_uv + h * d.n, d.H * d.n, false, ctx + h * d.n,
             d.H * d.n, d.N, d.n, d.c, threads);
    matmul(path, ctx, d.H * d.n, input(in, "w_o").data(), d.D, false, output(out, "out").data(),
           d.D, d.N, d.D, d.H * d.n, threads);
  }
};

CostModel MultiHeadLatentAttention::cost(const Params& p, Path path) const {
  const Dims d(p);
  const double B = d.B, L = d.L, D = d.D, H = d.H, n = d.n, r = d.r, c = d.c, qr = d.qr, N = d.N,
               qin = d.qin, w = c + r;
  const bool causal = p.b("causal");
  const bool absorbed = path == Path::Fast && p.s("form") == "absorbed";
  CostModel cm;
  const double q_proj = 2 * N * D * qr + 2 * N * qin * H * (n + r);
  const double kv_down = 2 * N * D * (c + r);
  const double output_proj = 2 * N * H * n * D;
  const double pairs = causal ? causal_pairs(L) : L * L;
  const double dim = absorbed ? w : n + r, vdim = absorbed ? c : n;
  add_softmax_cost(cm, B * H, pairs, L, dim, vdim);
  const double core = cm.flops;
  // RMSNorms: square + add, then two multiplies per element; one sqrt per row. RoPE: 6 flops and
  // one table entry per pair; the table costs rope/2 pow + 2·L·rope/2 cos/sin.
  cm.elementwise += 4 * N * (c + qr) + 3 * N * (H + 1) * r;
  cm.transcendentals += N * (qr > 0 ? 2 : 1) + (r > 0 ? r / 2 + L * r : 0);
  if (absorbed) {
    const double q_absorb = 2 * N * H * n * c, v_up = 2 * N * H * c * n;
    cm.flops += q_proj + kv_down + q_absorb + v_up + output_proj;
    cm.flops_parts = {{"q_projection", q_proj}, {"kv_down", kv_down}, {"q_absorb", q_absorb},
                      {"core", core},           {"v_up", v_up},       {"output", output_proj}};
  } else {
    const double kv_up = 4 * N * c * H * n;
    cm.flops += q_proj + kv_down + kv_up + output_proj;
    cm.flops_parts = {{"q_projection", q_proj},
                      {"kv_down", kv_down},
                      {"kv_up", kv_up},
                      {"core", core},
                      {"output", output_proj}};
  }
  const double proj = cm.flops - core;
  cm.io_bytes = 4 * (2 * N * D + D * qr + qr + qin * H * (n + r) + D * (c + r) + c + 2 * c * H * n +
                     H * n * D);
  cm.kv_bytes_per_token = 4 * (c + r);  // the compressed cache [c ; k^R]; MHA: 4·2·H·nope_dim
  // Workspace: exactly what the forward takes from the arena (64-byte padded allocations).
  const double table = r > 0 ? 2 * ws_bytes(L * r / 2) : 0;
  const double lat = ws_bytes(N * w), cq = qr > 0 ? ws_bytes(N * qr) : 0;
  const TileConfig cfg = tile_config(p);
  DensePattern pattern(causal, d.L, d.L);
  auto tiled_scratch = [&](int64_t group, int64_t tdim, int64_t tvdim) {
    const int64_t bq = std::min(cfg.block_q(group), d.L);
    const int64_t items = d.B * (d.H / group) * ((d.L + bq - 1) / bq);
    const double threads = double(std::min(p.i("threads"), items));
    if (cfg.effective_kernel() == TileKernel::Fused)  // one allocation of all threads' tiles
      return ws_bytes(threads * tiled_workspace_bytes(tdim, tvdim, group, cfg, d.L, d.L) / 4);
    const double rows = double(bq * group);
    const double bk = double(std::min(cfg.block_k, d.L));
    return ws_bytes(threads * rows * (tdim + bk + tvdim + 2));
  };
  if (absorbed) {
    const int64_t group = d.H;
    const double visited = double(tiled_visited_pairs(pattern, 0, d.L, d.L, group, cfg));
    cm.issued_flops = proj + B * H * 2 * (dim + vdim) * visited;
    const double base = table + lat + ws_bytes(N * H * n) + ws_bytes(N * H * w);
    cm.workspace_bytes =
        base + std::max(cq + ws_bytes(N * H * n),
                        ws_bytes(N * H * c) + tiled_scratch(group, d.c + d.r, d.c));
    cm.time_complexity =
        "O(B·L·(D·(d_c' + d_c) + H·(d_c'·(d_h + d_h^R) + d_h·d_c + d_h·D)) + "
        "B·H·L²·(d_c + d_h^R))";
    cm.space_complexity = "O(B·L·H·(d_c + d_h^R) + T·Br·Bc)";
    cm.form = "absorbed: w_uk in the query, MQA-style tiled softmax over the latent [c ; k^R]";
  } else {
    const double base = table + lat + 2 * ws_bytes(N * H * (n + r)) + 2 * ws_bytes(N * H * n);
    cm.time_complexity =
        "O(B·L·(D·(d_c' + d_c) + H·(d_c'·(d_h + d_h^R) + d_h·d_c + d_h·D)) + "
        "B·H·L²·(d_h + d_h^R))";
    if (path == Path::Fast) {
      const double visited = double(tiled_visited_pairs(pattern, 0, d.L, d.L, 1, cfg));
      cm.issued_flops = proj + B * H * 2 * (dim + vdim) * visited;
      cm.workspace_bytes = base + std::max(cq, tiled_scratch(1, d.n + d.r, d.n));
      cm.space_complexity = "O(B·L·H·(d_h + d_h^R) + T·Br·Bc)";
      cm.form = "naive: K/V up-projected per head, tiled online softmax over [k_nope ; k^R]";
    } else {
      cm.issued_flops = cm.flops;
      cm.workspace_bytes = base + std::max(cq, ws_bytes(std::max(1.0, L * L)));
      cm.space_complexity = "O(B·L·H·(d_h + d_h^R) + L²)";
      cm.form = "naive projections + dense masked attention per head";
    }
  }
  return cm;
}

}  // namespace

const Mechanism& mechanism_mla() {
  static const MultiHeadLatentAttention m;
  return m;
}

}  // namespace kt
