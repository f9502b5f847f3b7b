// linear: linear attention, Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive
// Transformers with Linear Attention" (arXiv 2006.16236), spec mechanisms-linear.md §1.
//   inputs  q [B,H,L,dk], k [B,H,L,dk], v [B,H,L,dv]; with initial_state = true (causal only) also
//           initial_state [B,H,dk,dv] (S0) and initial_normalizer [B,H,dk] (z0)
//   outputs out [B,H,L,dv]; causal also final_state [B,H,dk,dv] (S_L), final_normalizer [B,H,dk]
//   (z_L). With normalize = false there is no z: no initial_normalizer and no final_normalizer.
//   o_i = φ(q_i)ᵀ S_i / (φ(q_i)ᵀ z_i + eps), S_i = S0 + Σ_j φ(k_j) v_jᵀ, z_i = z0 + Σ_j φ(k_j)
//   over j <= i (causal) or all j (non-causal); normalize = false gives o_i = φ(q_i)ᵀ S_i.
// Feature map φ (`feature_map`): elu (default, elu(x)+1 = x > 0 ? x + 1 : exp(x), always > 0),
// relu, identity. q is multiplied by `scale` (default 1.0, decisions.md) before φ; k is not.
// Reference: the quadratic form in float64, one row at a time: a_ij = φ(q_i)·φ(k_j) for the
//   visible j, o_i = (φ(q_i)ᵀS0 + Σ a_ij v_j) / (φ(q_i)ᵀz0 + Σ a_ij + eps).
// Fast (OpenMP over (b, h), BLAS single-threaded inside):
//   non-causal: KV = φ(K)ᵀ[V | 1] once (one pass over row blocks), then φ(Q)[KV | z].
//   causal, form = chunked (default): per chunk of `chunk_size` rows, A = tril(φ(Q)φ(K)ᵀ),
//     [num | den] = φ(Q)[S | z] + A[V | 1], o = num / (den + eps), [S | z] += φ(K)ᵀ[V | 1].
//     kernel = fused (default): the four products on the lane kernels of tile.hpp (operands in
//     L1, rows as vector lanes, no packing), the normaliser summed beside them (chunked_fused);
//     kernel = blas: four cblas_sgemm calls per chunk, the normaliser riding along as an extra
//     value column of ones. L = 8192, H = 8, d = 64, one thread: 20.0 vs 33.1 ms.
//   causal, form = recurrent: the RNN view, S += φ(k_t)v_tᵀ, z += φ(k_t), o_t = Sᵀφ(q_t) /
//   (zᵀφ(q_t)
//     + eps), one token at a time with vectorised loops (the decoding form).
// Choices where the paper is silent: eps = 1e-6 added to the denominator (fast-transformers);
// a zero denominator (possible only with relu/identity and eps = 0) gives 0; `form` is ignored
// when non-causal (there is one form); identity with normalize = true can divide by values near
// zero and is then ill-conditioned (fla pairs identity with normalize = false).
// Cost: CostModel::flops is the spec's F (§0.2: contractions plus elementwise +,-,*,/), its
// elementwise part is also reported in `elementwise` and in flops_parts; issued_flops is what
// the path sends through blas::gemm (the ones column makes it exceed F's matmul part slightly).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/random.hpp"
#include "kernels/blas.hpp"
#include "kernels/prefetch.hpp"
#include "kernels/tile.hpp"
#include "kernels/vexp.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

namespace {

enum class FeatureMap { Elu, Relu, Identity };

FeatureMap feature_map_of(const Params& p) {
  const std::string& f = p.s("feature_map");
  return f == "elu" ? FeatureMap::Elu : f == "relu" ? FeatureMap::Relu : FeatureMap::Identity;
}

// y = φ(s·x) over n values (vectorised; exp of min(x, 0) so the unused branch cannot overflow).
inline void apply_feature_map(const float* x, float* y, int64_t n, float s, FeatureMap f) {
  switch (f) {
    case FeatureMap::Elu:
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const float a = x[i] * s;
        const float e = exp_approx(a < 0.0f ? a : 0.0f);
        y[i] = a > 0.0f ? a + 1.0f : e;
      }
      break;
    case FeatureMap::Relu:
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const float a = x[i] * s;
        y[i] = a > 0.0f ? a : 0.0f;
      }
      break;
    case FeatureMap::Identity:
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
      break;
  }
}

inline double feature_map_ref(double x, FeatureMap f) {
  switch (f) {
    case FeatureMap::Elu:
      return x > 0 ? x + 1 : std::exp(x);
    case FeatureMap::Relu:
      return x > 0 ? x : 0;
    case FeatureMap::Identity:
      break;
  }
  return x;
}

// Rows per block of the non-causal passes (bounds their workspace independently of L).
constexpr int64_t kRowBlock = 256;

struct Dims {
  int64_t B, H, L, dk, dv, C;
  bool causal, normalize, init;
  float scale, eps;
  FeatureMap phi;
  bool fused;  // chunked form on the lane kernels (kernel = fused and AVX-512 present)
};

Dims dims_of(const Params& p) {
  return {p.i("batch"),
          p.i("heads"),
          p.i("seq_len"),
          p.i("head_dim"),
          p.i("value_dim"),
          p.i("chunk_size"),
          p.b("causal"),
          p.b("normalize"),
          p.b("initial_state"),
          static_cast<float>(p.f("scale")),
          static_cast<float>(p.f("eps")),
          feature_map_of(p),
          p.s("kernel") == "fused" && fused_kernel_available()};
}

class LinearAttention final : public Mechanism {
 public:
  std::string name() const override { return "linear"; }
  std::vector<std::string> aliases() const override {
    return {"linear_attention", "katharopoulos"};
  }
  std::string family() const override { return "linear"; }
  std::string summary() const override {
    return "linear attention with feature map elu(x)+1 (chunked GEMM and recurrent causal forms)";
  }
  PaperInfo paper() const override {
    return {"Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
            "Katharopoulos et al.", 2020, "2006.16236"};
  }

  std::vector<ParamSpec> params() const override {
    const ParamSpec eps =
        float_param("eps", "added to the denominator when normalize is on", 1e-6, 0);
    const ParamSpec normalize = bool_param(
        "normalize", "divide by φ(q)ᵀz + eps (paper); false gives unnormalised linear attention",
        true);
    const ParamSpec chunk =
        int_param("chunk_size", "rows per chunk of the causal chunked form", 64, 1, 1 << 16);
    const ParamSpec init = bool_param(
        "initial_state", "causal only: take inputs initial_state (S0) and initial_normalizer (z0)",
        false);
    return {common::batch(),
            common::heads(),
            common::head_dim(),
            common::value_dim(),
            common::seq_len(),
            common::causal(false),
            common::scale("1.0 (applied to q before the feature map)"),
            common::seed(),
            common::threads(),
            choice_param("feature_map", "feature map φ", {"elu", "relu", "identity"}, "elu"),
            eps,
            normalize,
            chunk,
            choice_param("form", "causal fast-path form (ignored when non-causal)",
                         {"chunked", "recurrent"}, "chunked"),
            choice_param("kernel",
                         "chunked form's products: fused (AVX-512 lane kernels; blas where "
                         "unsupported) or blas (cblas_sgemm, normaliser as a ones column)",
                         {"fused", "blas"}, "fused"),
            init};
  }

  void resolve(Params& p) const override {
    if (!p.has("value_dim")) p.set("value_dim", p.i("head_dim"));
    if (!p.has("scale")) p.set("scale", 1.0);
    if (p.b("initial_state") && !p.b("causal"))
      throw InputError("initial_state",
                       "initial_state = true needs causal = true (a non-causal run has no "
                       "recurrent state); got causal = false");
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), dk = p.i("head_dim"),
                  dv = p.i("value_dim");
    std::vector<TensorSpec> s = {{"q", {B, H, L, dk}, "queries [B,H,L,dk]"},
                                 {"k", {B, H, L, dk}, "keys [B,H,L,dk]"},
                                 {"v", {B, H, L, dv}, "values [B,H,L,dv]"}};
    if (p.b("initial_state")) {
      s.push_back(
          {"initial_state", {B, H, dk, dv}, "S0, state before the first token [B,H,dk,dv]"});
      if (p.b("normalize"))
        s.push_back(
            {"initial_normalizer", {B, H, dk}, "z0, normaliser before the first token [B,H,dk]"});
    }
    return s;
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), dk = p.i("head_dim"),
                  dv = p.i("value_dim");
    std::vector<TensorSpec> s = {{"out", {B, H, L, dv}, "attention output [B,H,L,dv]"}};
    if (p.b("causal")) {
      s.push_back({"final_state", {B, H, dk, dv}, "S after the last token [B,H,dk,dv]"});
      if (p.b("normalize"))
        s.push_back({"final_normalizer", {B, H, dk}, "z after the last token [B,H,dk]"});
    }
    return s;
  }

  // q, k, v ~ N(0, 1); z0 ~ U(1, 2) (positive, like a sum of φ(k)); S0 ~ N(0, 1).
  void generate_inputs(const Params& p, TensorMap& in) const override {
    for (const auto& spec : inputs(p)) {
      Tensor t(spec.shape);
      if (spec.name == "initial_normalizer")
        fill_uniform(t, static_cast<uint64_t>(p.i("seed")), spec.name, 1.0, 2.0);
      else
        fill_normal(t, static_cast<uint64_t>(p.i("seed")), spec.name);
      in[spec.name] = std::move(t);
    }
  }

  // Spec §1 "FLOPs per (b,h)", summed over slices; exact for ragged last chunks.
  CostModel cost(const Params& p, Path path) const override {
    const Dims d = dims_of(p);
    const double BH = double(d.B) * d.H, L = d.L, dk = d.dk, dv = d.dv;
    const bool norm = d.normalize;
    const double qscale = d.scale != 1.0f ? L * dk : 0;  // q scaling, only when scale != 1
    CostModel c;
    double mm = 0, ew = 0, issued = 0;    // per slice
    const double n = norm ? dv + 1 : dv;  // value columns the GEMMs carry (ones column)
    if (path == Path::Reference) {
      // Quadratic form over the visible pairs, plus (causal) the final state.
      const double pairs = d.causal ? causal_pairs(L) : L * L;
      mm = 2 * pairs * (dk + dv);
      ew = qscale + (norm ? pairs + L * (dv + 1) : 0);
      if (d.init) {
        mm += 2 * L * dk * dv + (norm ? 2 * L * dk : 0);
        ew += L * dv + (norm ? L : 0);
      }
      if (d.causal) {
        mm += 2 * L * dk * dv;
        ew += norm ? L * dk : 0;
      }
      issued = mm;
      c.form = d.causal ? "quadratic masked (float64, row by row)" : "quadratic (float64)";
      c.workspace_bytes =
          double(std::min<int64_t>(d.B * d.H, p.i("threads"))) * 8 * (2.0 * d.L * d.dk + d.dv);
      c.space_complexity = "O(T·L·d)";
      c.time_complexity = "O(B·H·L²·(dk + dv))";
    } else if (!d.causal) {
      // KV = φ(K)ᵀV, z = Σφ(k), num = φ(Q)KV, den = φ(Q)z + eps, o = num / den.
      mm = 4 * L * dk * dv + (norm ? 2 * L * dk : 0);
      ew = qscale + (norm ? L * dk + L + L * dv : 0);
      issued = 4 * L * dk * n;
      c.form = "non-causal (φ(K)ᵀV once)";
      const int64_t rb = std::min(kRowBlock, d.L);
      c.workspace_bytes = double(slice_threads(p)) * 4 * (rb * (d.dk + 2 * n) + d.dk * n);
      c.space_complexity = "O(T·(Lb·(dk + dv) + dk·dv))";
      c.time_complexity = "O(B·H·L·dk·dv)";
    } else if (p.s("form") == "recurrent") {
      // Per token: S += φ(k)vᵀ (2·dk·dv), z += φ(k) (dk), num = Sᵀφ(q) (2·dk·dv),
      // den = zᵀφ(q) + eps (2·dk + 1), o = num / den (dv).
      mm = 4 * L * dk * dv + (norm ? 2 * L * dk : 0);
      ew = qscale + (norm ? L * dk + L + L * dv : 0);
      issued = 0;  // no GEMM: vectorised rank-1 updates and matrix-vector products
      c.form = "causal recurrent (token by token)";
      c.workspace_bytes = double(slice_threads(p)) * 4 * (d.dk * n + 2 * d.dk + n);
      c.space_complexity = "O(T·dk·dv)";
      c.time_complexity = "O(B·H·L·dk·dv)";
    } else {
      // Per chunk of c rows: A = φ(Q)φ(K)ᵀ (2c²dk, dense), AV (2c²dv), A1 (c²), φ(Q)S (2c·dk·dv),
      // φ(Q)z (2c·dk), adds num (c·dv), den + eps (2c), divide (c·dv), S += φ(K)ᵀV (2c·dk·dv),
      // z += Σφ(k) (c·dk).
      const int64_t C = d.C, full = d.L / C, last = d.L % C;
      // Issued: blas, four GEMMs with the ones column (n = dv + 1 value columns); fused, the
      // lane kernels: scores over the chunk's lanes padded to a multiple of 32, three products
      // with dv columns, A·V skipping the keys above each 16-row group's last row (A is lower
      // triangular); the normaliser is summed beside them, not counted as issued.
      auto chunk = [&](double cc, double& m, double& e, double& is) {
        m += 2 * cc * cc * (dk + dv) + 4 * cc * dk * dv + (norm ? 2 * cc * dk : 0);
        e += (d.scale != 1.0f ? cc * dk : 0) + cc * dv +
             (norm ? cc * cc + 2 * cc + cc * dv + cc * dk : 0);
        is += d.fused ? 2 * double(fused_lanes(int64_t(cc))) * cc * dk +
                            lane_accumulate_flops(int64_t(cc), int64_t(cc), d.dv, true) +
                            4 * cc * dk * dv
                      : 2 * cc * cc * dk + 2 * cc * cc * n + 4 * cc * dk * n;
      };
      double m1 = 0, e1 = 0, i1 = 0, m2 = 0, e2 = 0, i2 = 0;
      chunk(double(std::min(C, d.L)), m1, e1, i1);
      if (last) chunk(double(last), m2, e2, i2);
      if (d.L >= C) {
        mm = full * m1 + m2;
        ew = full * e1 + e2;
        issued = full * i1 + i2;
      } else {
        mm = m1, ew = e1, issued = i1;
      }
      c.form = fmt::format("causal chunked (chunk_size {}, dense masked {})", C,
                           d.fused ? "lane-kernel products" : "GEMMs");
      const int64_t cc = std::min(C, d.L);
      c.workspace_bytes = double(slice_threads(p)) * 4 *
                          (d.fused ? double(fused_floats(d))
                                   : double(2 * cc * d.dk + cc * cc + 2 * cc * n + d.dk * n));
      c.space_complexity = "O(T·(C² + C·(dk + dv) + dk·dv))";
      c.time_complexity = "O(B·H·L·(C·(dk + dv) + dk·dv))";
    }
    c.flops = BH * (mm + ew);
    c.elementwise = BH * ew;
    c.issued_flops = BH * issued;
    c.flops_parts = {{"matmul", BH * mm}, {"elementwise", BH * ew}};
    c.transcendentals = d.phi == FeatureMap::Elu ? BH * 2 * L * dk : 0;
    c.io_bytes =
        4 * BH *
        (L * (2 * dk + 2 * dv) + (d.init ? dk * dv + dk : 0) + (d.causal ? dk * dv + dk : 0));
    c.kv_bytes_per_token = 0;  // constant-size state: 4·H·dk·(dv + 1) bytes per sequence
    return c;
  }

  // fp32 forms agree with the float64 reference to ~1e-6 normwise; the issue and spec §0.3 ask
  // for <= 1e-4 between forms, which is the budget (identity with normalize = true can exceed
  // it: its denominators can cancel to near zero).
  double tolerance(const Params&) const override { return 1e-4; }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    const Dims d = dims_of(p);
    const float* q = input(in, "q").data();
    const float* k = input(in, "k").data();
    const float* v = input(in, "v").data();
    const float* s0 = d.init ? input(in, "initial_state").data() : nullptr;
    const float* z0 = d.init && d.normalize ? input(in, "initial_normalizer").data() : nullptr;
    float* o = output(out, "out").data();
    float* sl = d.causal ? output(out, "final_state").data() : nullptr;
    float* zl = d.causal && d.normalize ? output(out, "final_normalizer").data() : nullptr;
    const int64_t slices = d.B * d.H;
    const int nthreads = static_cast<int>(std::min<int64_t>(slices, p.i("threads")));
    Workspace::Scope scope(ws);
    const int64_t per = 2 * d.L * d.dk + d.dv;
    double* scratch = ws.alloc<double>(per * nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
    for (int64_t bh = 0; bh < slices; ++bh) {
      double* pq = scratch + per * omp_get_thread_num();
      double* pk = pq + d.L * d.dk;
      double* num = pk + d.L * d.dk;
      const float* qs = q + bh * d.L * d.dk;
      const float* ks = k + bh * d.L * d.dk;
      const float* vs = v + bh * d.L * d.dv;
      for (int64_t i = 0; i < d.L * d.dk; ++i) {
        pq[i] = feature_map_ref(double(qs[i]) * double(d.scale), d.phi);
        pk[i] = feature_map_ref(double(ks[i]), d.phi);
      }
      for (int64_t i = 0; i < d.L; ++i) {
        const int64_t jn = d.causal ? i + 1 : d.L;
        double den = 0;
        std::fill(num, num + d.dv, 0.0);
        if (d.init) {
          const float* S = s0 + bh * d.dk * d.dv;
          for (int64_t x = 0; x < d.dk; ++x) {
            if (z0) den += pq[i * d.dk + x] * z0[bh * d.dk + x];
            for (int64_t y = 0; y < d.dv; ++y) num[y] += pq[i * d.dk + x] * S[x * d.dv + y];
          }
        }
        for (int64_t j = 0; j < jn; ++j) {
          double s = 0;
          for (int64_t x = 0; x < d.dk; ++x) s += pq[i * d.dk + x] * pk[j * d.dk + x];
          den += s;
          for (int64_t y = 0; y < d.dv; ++y) num[y] += s * vs[j * d.dv + y];
        }
        den += d.eps;
        for (int64_t y = 0; y < d.dv; ++y)
          o[(bh * d.L + i) * d.dv + y] = float(!d.normalize ? num[y]
                                               : den != 0   ? num[y] / den
                                                            : 0.0);
      }
      if (d.causal) {
        for (int64_t x = 0; x < d.dk; ++x) {
          if (zl) {
            double z = z0 ? z0[bh * d.dk + x] : 0.0;
            for (int64_t j = 0; j < d.L; ++j) z += pk[j * d.dk + x];
            zl[bh * d.dk + x] = float(z);
          }
          for (int64_t y = 0; y < d.dv; ++y) {
            double s = d.init ? s0[(bh * d.dk + x) * d.dv + y] : 0.0;
            for (int64_t j = 0; j < d.L; ++j) s += pk[j * d.dk + x] * vs[j * d.dv + y];
            sl[(bh * d.dk + x) * d.dv + y] = float(s);
          }
        }
      }
    }
  }

  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    const Dims d = dims_of(p);
    if (!d.causal)
      noncausal(p, d, in, out, ws);
    else if (p.s("form") == "recurrent")
      recurrent(p, d, in, out, ws);
    else if (d.fused)
      chunked_fused(p, d, in, out, ws);
    else
      chunked(p, d, in, out, ws);
  }

 private:
  // The q, k, v inputs and the out output of a forward.
  struct Qkvo {
    const float *q, *k, *v;
    float* o;
  };
  static Qkvo qkvo(const TensorMap& in, TensorMap& out) {
    return {input(in, "q").data(), input(in, "k").data(), input(in, "v").data(),
            output(out, "out").data()};
  }

  // o = num / (den + eps) row by row (num has n = dv + 1 columns, the last one den), or a copy.
  static void finish_rows(const Dims& d, const float* num, int64_t rows, int64_t ldn, float* o) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* nr = num + r * ldn;
      float* orow = o + r * d.dv;
      if (d.normalize) {
        const float den = nr[d.dv] + d.eps;
        const float inv = den != 0.0f ? 1.0f / den : 0.0f;
#pragma omp simd
        for (int64_t y = 0; y < d.dv; ++y) orow[y] = nr[y] * inv;
      } else {
        std::copy(nr, nr + d.dv, orow);
      }
    }
  }

  // Copies rows of v into dst (ld n), with a trailing column of ones when normalising.
  static void load_values(const Dims& d, const float* v, int64_t rows, float* dst, int64_t n) {
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(v + r * d.dv, v + (r + 1) * d.dv, dst + r * n);
      if (d.normalize) dst[r * n + d.dv] = 1.0f;
    }
  }

  void noncausal(const Params& p, const Dims& d, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const {
    const auto [q, k, v, o] = qkvo(in, out);
    const int64_t n = d.normalize ? d.dv + 1 : d.dv, rb = std::min(kRowBlock, d.L);
    const int64_t per = rb * d.dk + 2 * rb * n + d.dk * n;
    for_each_slice(p, per, ws, [&](float* mine, int64_t bh) {
      float* phi = mine;            // [rb, dk]
      float* vb = phi + rb * d.dk;  // [rb, n]
      float* num = vb + rb * n;     // [rb, n]
      float* kv = num + rb * n;     // [dk, n] = [KV | z]
      const float* qs = q + bh * d.L * d.dk;
      const float* ks = k + bh * d.L * d.dk;
      const float* vs = v + bh * d.L * d.dv;
      for (int64_t i0 = 0; i0 < d.L; i0 += rb) {
        const int64_t rows = std::min(rb, d.L - i0);
        apply_feature_map(ks + i0 * d.dk, phi, rows * d.dk, 1.0f, d.phi);
        load_values(d, vs + i0 * d.dv, rows, vb, n);
        blas::gemm(true, false, d.dk, n, rows, 1.0f, phi, d.dk, vb, n, i0 == 0 ? 0.0f : 1.0f, kv,
                   n);
      }
      for (int64_t i0 = 0; i0 < d.L; i0 += rb) {
        const int64_t rows = std::min(rb, d.L - i0);
        apply_feature_map(qs + i0 * d.dk, phi, rows * d.dk, d.scale, d.phi);
        blas::gemm(false, false, rows, n, d.dk, 1.0f, phi, d.dk, kv, n, 0.0f, num, n);
        finish_rows(d, num, rows, n, o + (bh * d.L + i0) * d.dv);
      }
    });
  }

  void chunked(const Params& p, const Dims& d, const TensorMap& in, TensorMap& out,
               Workspace& ws) const {
    const auto [q, k, v, o] = qkvo(in, out);
    const int64_t n = d.normalize ? d.dv + 1 : d.dv, C = std::min(d.C, d.L);
    const int64_t per = 2 * C * d.dk + C * C + 2 * C * n + d.dk * n;
    for_each_slice(p, per, ws, [&](float* mine, int64_t bh) {
      float* pq = mine;           // [C, dk] φ(scale·q)
      float* pk = pq + C * d.dk;  // [C, dk] φ(k)
      float* a = pk + C * d.dk;   // [C, C]  tril(φ(Q)φ(K)ᵀ)
      float* vb = a + C * C;      // [C, n]  [V | 1]
      float* num = vb + C * n;    // [C, n]  [num | den]
      float* s = num + C * n;     // [dk, n] [S | z]
      load_state(d, in, bh, s, n, s + d.dv, n);
      const float* qs = q + bh * d.L * d.dk;
      const float* ks = k + bh * d.L * d.dk;
      const float* vs = v + bh * d.L * d.dv;
      for (int64_t t0 = 0; t0 < d.L; t0 += C) {
        const int64_t c = std::min(C, d.L - t0);
        apply_feature_map(qs + t0 * d.dk, pq, c * d.dk, d.scale, d.phi);
        apply_feature_map(ks + t0 * d.dk, pk, c * d.dk, 1.0f, d.phi);
        load_values(d, vs + t0 * d.dv, c, vb, n);
        blas::gemm(false, true, c, c, d.dk, 1.0f, pq, d.dk, pk, d.dk, 0.0f, a, C);
        for (int64_t r = 0; r < c; ++r) std::fill(a + r * C + r + 1, a + r * C + c, 0.0f);
        blas::gemm(false, false, c, n, d.dk, 1.0f, pq, d.dk, s, n, 0.0f, num, n);
        blas::gemm(false, false, c, n, c, 1.0f, a, C, vb, n, 1.0f, num, n);
        finish_rows(d, num, c, n, o + (bh * d.L + t0) * d.dv);
        blas::gemm(true, false, d.dk, n, c, 1.0f, pk, d.dk, vb, n, 1.0f, s, n);
      }
      store_state(d, out, bh, s, n, s + d.dv, n);
    });
  }

  // Causal chunked form on the lane kernels (tile.hpp): per chunk of c rows, the rows are the
  // vector lanes (padded to rp, a multiple of 32):
  //   QT = φ(scale·Q)ᵀ [dk, rp] (pack_lanes); AT[t'][t] = φ(k_t')·φ(q_t) (lane_scores over
  //   φ(K)), zeroed for t' > t; num = Σ_t' AT[t'][t]·v_t' + Σ_x QT[x][t]·S[x] (lane_accumulate
  //   twice, the first only over the keys at or before each group's rows); den_t = Σ_t' AT[t'][t]
  //   + Σ_x QT[x][t]·z_x (column sums down the lanes);
  //   o = num / (den + eps); S += φ(K)ᵀV (lane_accumulate, φ(K) as the lanes' source), z += Σφ(k).
  // The normaliser is summed beside the products, not carried as a ones column of V (a 65th
  // value column would cost the lane kernels a whole extra pass).
  void chunked_fused(const Params& p, const Dims& d, const TensorMap& in, TensorMap& out,
                     Workspace& ws) const {
    const auto [q, k, v, o] = qkvo(in, out);
    const int64_t C = std::min(d.C, d.L), rp = fused_lanes(C);
    const int64_t per = fused_floats(d);
    for_each_slice(p, per, ws, [&](float* mine, int64_t bh) {
      float* pq = mine;            // [C, dk]  φ(scale·q)
      float* qt = pq + C * d.dk;   // [dk, rp] its transpose
      float* pk = qt + d.dk * rp;  // [C, dk]  φ(k)
      float* at = pk + C * d.dk;   // [C, rp]  AT[t'][t]
      float* num = at + C * rp;    // [C, dv]
      float* S = num + C * d.dv;   // [dk, dv]
      float* z = S + d.dk * d.dv;  // [dk]
      float* den = z + d.dk;       // [rp]
      load_state(d, in, bh, S, d.dv, z, 1);
      const float* qs = q + bh * d.L * d.dk;
      const float* ks = k + bh * d.L * d.dk;
      const float* vs = v + bh * d.L * d.dv;
      for (int64_t t0 = 0; t0 < d.L; t0 += C) {
        const int64_t c = std::min(C, d.L - t0), rc = fused_lanes(c);
        const float* vc = vs + t0 * d.dv;
        // The next chunk's q, k, v rows: their first touch, from memory (3-4% in alternated runs).
        const int64_t next = std::min(C, d.L - t0 - c);
        prefetch_floats(qs + (t0 + c) * d.dk, next * d.dk);
        prefetch_floats(ks + (t0 + c) * d.dk, next * d.dk);
        prefetch_floats(vs + (t0 + c) * d.dv, next * d.dv);
        apply_feature_map(qs + t0 * d.dk, pq, c * d.dk, d.scale, d.phi);
        apply_feature_map(ks + t0 * d.dk, pk, c * d.dk, 1.0f, d.phi);
        pack_lanes({pq, d.dk, 0, c}, c, d.dk, 1.0f, qt, rc);
        lane_scores(qt, rc, pk, d.dk, c, d.dk, at);
        for (int64_t j = 1; j < c; ++j) std::fill(at + j * rc, at + j * rc + j, 0.0f);
        std::fill(num, num + c * d.dv, 0.0f);
        lane_accumulate(at, rc, c, c, vc, d.dv, d.dv, num, d.dv, nullptr, true);
        lane_accumulate(qt, rc, c, d.dk, S, d.dv, d.dv, num, d.dv);
        if (d.normalize) {
          std::fill(den, den + rc, d.eps);
          for (int64_t j = 0; j < c; ++j) {
            const float* aj = at + j * rc;
#pragma omp simd
            for (int64_t t = 0; t < rc; ++t) den[t] += aj[t];
          }
          for (int64_t x = 0; x < d.dk; ++x) {
            const float* qx = qt + x * rc;
            const float zx = z[x];
#pragma omp simd
            for (int64_t t = 0; t < rc; ++t) den[t] += qx[t] * zx;
          }
        }
        float* oc = o + (bh * d.L + t0) * d.dv;
        for (int64_t t = 0; t < c; ++t) {
          const float inv = !d.normalize ? 1.0f : den[t] != 0.0f ? 1.0f / den[t] : 0.0f;
#pragma omp simd
          for (int64_t y = 0; y < d.dv; ++y) oc[t * d.dv + y] = num[t * d.dv + y] * inv;
        }
        lane_accumulate(pk, d.dk, d.dk, c, vc, d.dv, d.dv, S, d.dv);
        if (d.normalize)
          for (int64_t t = 0; t < c; ++t) {
            const float* kt = pk + t * d.dk;
#pragma omp simd
            for (int64_t x = 0; x < d.dk; ++x) z[x] += kt[x];
          }
      }
      store_state(d, out, bh, S, d.dv, z, 1);
    });
  }

  // Lanes of a chunk of c rows in the lane kernels, and the fused form's floats per thread.
  static int64_t fused_lanes(int64_t c) {
    return (c + 31) / 32 * 32;
  }
  static int64_t fused_floats(const Dims& d) {
    const int64_t C = std::min(d.C, d.L), rp = fused_lanes(C);
    return 2 * C * d.dk + d.dk * rp + C * rp + C * d.dv + d.dk * d.dv + d.dk + rp;
  }

  void recurrent(const Params& p, const Dims& d, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const {
    const auto [q, k, v, o] = qkvo(in, out);
    const int64_t n = d.normalize ? d.dv + 1 : d.dv;
    const int64_t per = d.dk * n + 2 * d.dk + n;
    for_each_slice(p, per, ws, [&](float* mine, int64_t bh) {
      float* s = mine;           // [dk, n] [S | z]
      float* pq = s + d.dk * n;  // [dk]
      float* pk = pq + d.dk;     // [dk]
      float* vb = pk + d.dk;     // [n] [v | 1]
      load_state(d, in, bh, s, n, s + d.dv, n);
      if (d.normalize) vb[d.dv] = 1.0f;
      for (int64_t t = 0; t < d.L; ++t) {
        const int64_t row = bh * d.L + t;
        apply_feature_map(q + row * d.dk, pq, d.dk, d.scale, d.phi);
        apply_feature_map(k + row * d.dk, pk, d.dk, 1.0f, d.phi);
        std::copy(v + row * d.dv, v + (row + 1) * d.dv, vb);
        float* orow = o + row * d.dv;
        float den = 0;
        std::fill(orow, orow + d.dv, 0.0f);
        for (int64_t x = 0; x < d.dk; ++x) {
          float* sx = s + x * n;
          const float kx = pk[x], qx = pq[x];
#pragma omp simd
          for (int64_t y = 0; y < d.dv; ++y) {
            sx[y] += kx * vb[y];
            orow[y] += qx * sx[y];
          }
          if (d.normalize) {
            sx[d.dv] += kx;
            den += qx * sx[d.dv];
          }
        }
        if (d.normalize) {
          den += d.eps;
          const float inv = den != 0.0f ? 1.0f / den : 0.0f;
#pragma omp simd
          for (int64_t y = 0; y < d.dv; ++y) orow[y] *= inv;
        }
      }
      store_state(d, out, bh, s, n, s + d.dv, n);
    });
  }

  // [S | z] of slice bh (ld n) from the inputs, or zero.
  // Reads S0 (and z0) of slice bh into S (rows lds apart) and z (entries zs apart), or zeros.
  static void load_state(const Dims& d, const TensorMap& in, int64_t bh, float* S, int64_t lds,
                         float* z, int64_t zs) {
    const float* s0 = d.init ? input(in, "initial_state").data() + bh * d.dk * d.dv : nullptr;
    const float* z0 =
        d.init && d.normalize ? input(in, "initial_normalizer").data() + bh * d.dk : nullptr;
    for (int64_t x = 0; x < d.dk; ++x) {
      if (s0)
        std::copy(s0 + x * d.dv, s0 + (x + 1) * d.dv, S + x * lds);
      else
        std::fill(S + x * lds, S + x * lds + d.dv, 0.0f);
      if (d.normalize) z[x * zs] = z0 ? z0[x] : 0.0f;
    }
  }

  // Writes [S | z] of slice bh to final_state (and final_normalizer when normalising).
  static void store_state(const Dims& d, TensorMap& out, int64_t bh, const float* S, int64_t lds,
                          const float* z, int64_t zs) {
    float* sl = output(out, "final_state").data() + bh * d.dk * d.dv;
    float* zl = d.normalize ? output(out, "final_normalizer").data() + bh * d.dk : nullptr;
    for (int64_t x = 0; x < d.dk; ++x) {
      std::copy(S + x * lds, S + x * lds + d.dv, sl + x * d.dv);
      if (zl) zl[x] = z[x * zs];
    }
  }
};

}  // namespace

const Mechanism& mechanism_linear() {
  static const LinearAttention m;
  return m;
}

}  // namespace kt
