// kda: Kimi Delta Attention, Kimi Team 2025, "Kimi Linear: An Expressive, Efficient Attention
// Architecture" (arXiv 2510.26692) §3, spec mechanisms-linear.md §2. Causal only.
//   inputs  q, k [B,H,L,dk], v [B,H,L,dv], g [B,H,L,dk] (log-decay <= 0, or the raw gate input
//           when gate != given), beta [B,H,L] in (0, 1); gate != given also a_log [H] and
//           dt_bias [H,dk]; initial_state = true also initial_state [B,H,dk,dv] (S0)
//   outputs out [B,H,L,dv], final_state [B,H,dk,dv] (S after the last token, key-major)
//   S_t = (I - β_t k_t k_tᵀ) Diag(exp(g_t)) S_{t-1} + β_t k_t v_tᵀ,  o_t = S_tᵀ (scale·q_t).
// Prologue (fla chunk_kda flags, spec §2.2): `l2norm` (default on) q, k ← x / sqrt(|x|² + 1e-6);
// q then times `scale` (default 1/sqrt(dk), decisions.md). `gate`: given (g is the log-decay) |
// softplus (g = -exp(a_log[h])·softplus(g + dt_bias[h])) | lower_bound (g = lb·sigmoid(
// exp(a_log[h])·(g + dt_bias[h])), lb = `lower_bound`, default -5). g is clamped to >= -1e4 so
// g = -inf cannot make NaN. β is taken as given (the sigmoid belongs to the layer).
// Reference: the recurrent form (spec §2.1, steps decay / p = Sᵀk / u = β(v - p) / S += k uᵀ /
//   o = Sᵀq) with float64 state and arithmetic.
// Fast, form = chunked (default): the WY/UT chunked form (spec §2.3) per chunk of `chunk_size`
//   rows, OpenMP over (b, h), BLAS single-threaded inside:
//   1. prologue rows; α = exp(g); e^P (true prefix sums) and e^X (true suffix sums) as factors of
//      Q, βK and K;
//   2. A_qk = tril(Q Kᵀ ⊙ decay), A_kk = β ⊙ strict-tril(K Kᵀ ⊙ decay) with the stable
//      sub-chunk factorisation of spec §2.4 (`sub_chunk`, default 16): off-diagonal blocks (I, J<I)
//      as one GEMM per block row, (Q_I ⊙ e^{Λ(n_I→i)})(K_J ⊙ e^{Λ(j→n_I)})ᵀ, both exponents
//      directly accumulated sums of g <= 0 (no cancellation, no overflow); diagonal blocks pairwise
//      with a running product of α (all factors <= 1; fused, dk <= 64 and sub_chunk <= 16: per row
//      the pairs' product vectors summed 16 at a time by one transposed reduction, 18% of the
//      chunked form's time at L = 8192 saved). Never the prefix-product factorisation
//      (Γ ⊙ K)(K / Γ)ᵀ, which overflows in float32 for strong gates;
//   3. one unit-lower triangular solve per chunk, (I + A_kk)[W | U] = [βe^P ⊙ K | βV]
//      (kernels/trsm.hpp, blocked by sub_chunk; kernel = fused: the off-diagonal block updates
//      on the lane kernels, 20.1 -> 17.7 ms at L = 8192; kernel = blas: sgemm);
//   4. Ṽ = U - W S, O = (e^P ⊙ Q) S + A_qk Ṽ (block-lower), S ← Diag(e^{P_c}) S + (e^X ⊙ K)ᵀ Ṽ:
//      kernel = fused (default), on the lane kernels of tile.hpp (-Wᵀ and (e^P ⊙ Q)ᵀ transposed
//      once each, A_qk kept transposed from step 2 on, the decay of S folded into the last
//      product's row scale; step 2's off-diagonal blocks as one lane product over the block's q
//      and k rows); kernel = blas, cblas_sgemm. L = 8192, H = 8, d = 64, one thread: 46 vs 61 ms.
//   Denormals: the kernel runs with FTZ/DAZ and exp_approx returns 0 below -87.
// Fast, form = recurrent: the reference loop in float32 (vectorised), the decoding form.
// Choices where the paper is silent: the diagonal-block decays are running products of α (spec
// §2.4 builds running sums and exponentiates; the product of <= 16 factors <= 1 loses at most
// ~16 ulp and never cancels); β is not clamped (β·|k|² must stay in [0, 2] for a stable
// recurrence: keep l2norm on or pass normalised keys).
// Cost: flops = spec §2.5 canonical count of the form (dense masked GEMMs, TRSM) plus the
// prologue (l2norm 2(3dk+1)/token, gate 2dk or 3dk/token, q scaling dk/token in the chunked form,
// whose spec count assumes a pre-scaled Q); issued_flops = what the path sends to blas::gemm
// and the lane kernels.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/random.hpp"
#include "kernels/blas.hpp"
#include "kernels/simd16.hpp"
#include "kernels/tile.hpp"
#include "kernels/trsm.hpp"
#include "kernels/vexp.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

namespace {

enum class Gate { Given, Softplus, LowerBound };

constexpr double kGateMin = -1e4;  // clamp of the log-decay (spec §2.4)
constexpr double kNormEps = 1e-6;  // l2norm eps (fla)

struct Dims {
  int64_t B, H, L, dk, dv, C, Cs;
  bool l2norm, init;
  float scale, lb;
  Gate gate;
  bool fused;  // steps 2-4's products on the lane kernels (kernel = fused and AVX-512 present)
};

Dims dims_of(const Params& p) {
  const std::string& g = p.s("gate");
  return {
      p.i("batch"),
      p.i("heads"),
      p.i("seq_len"),
      p.i("head_dim"),
      p.i("value_dim"),
      std::min(p.i("chunk_size"), std::max<int64_t>(1, p.i("seq_len"))),
      std::min(p.i("sub_chunk"), std::min(p.i("chunk_size"), std::max<int64_t>(1, p.i("seq_len")))),
      p.b("l2norm"),
      p.b("initial_state"),
      static_cast<float>(p.f("scale")),
      static_cast<float>(p.f("lower_bound")),
      g == "given"      ? Gate::Given
      : g == "softplus" ? Gate::Softplus
                        : Gate::LowerBound,
      p.s("kernel") == "fused" && fused_kernel_available()};
}

inline double softplus(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}

// Activated log-decay of one row (n = dk values) in double: the gate prologue and the clamp.
inline double gate_value(const Dims& d, double raw, double a_log, double dt_bias) {
  double g = raw;
  if (d.gate == Gate::Softplus)
    g = -std::exp(a_log) * softplus(raw + dt_bias);
  else if (d.gate == Gate::LowerBound)
    g = double(d.lb) / (1 + std::exp(-std::exp(a_log) * (raw + dt_bias)));
  return g < kGateMin ? kGateMin : g;  // NaN stays NaN
}

// Per-thread float scratch of the chunked form, and its layout.
struct ChunkScratch {
  float *qn, *kn, *gg, *alpha, *eq, *ekx, *kb, *qt, *kt, *aqk, *akk, *wu, *beta, *dec, *lam, *e,
      *lt, *xt;
  static int64_t lanes(int64_t c) { return (c + 31) / 32 * 32; }
  // Fused: A_qk is kept transposed, [C, lanes(C)]; lt holds one transposed operand (up to
  // max(dk, C) rows of lanes), xt one off-diagonal block row's [A_qk | A_kk]ᵀ.
  static int64_t aqk_floats(const Dims& d) { return d.fused ? d.C * lanes(d.C) : d.C * d.C; }
  static int64_t lt_floats(const Dims& d) {
    return d.fused ? std::max(d.dk, d.C) * std::max(lanes(d.C), lanes(2 * d.Cs)) : 0;
  }
  static int64_t xt_floats(const Dims& d) { return d.fused ? d.C * lanes(2 * d.Cs) : 0; }
  static int64_t floats(const Dims& d) {
    return 7 * d.C * d.dk + 2 * d.Cs * d.dk + aqk_floats(d) + d.C * d.C + d.C * (d.dk + d.dv) +
           d.C + 3 * d.dk + lt_floats(d) + xt_floats(d);
  }
  ChunkScratch(const Dims& d, float* base) {
    float* p = base;
    auto take = [&](int64_t n) {
      float* r = p;
      p += n;
      return r;
    };
    qn = take(d.C * d.dk);           // [C, dk] normalised, scaled q
    kn = take(d.C * d.dk);           // [C, dk] normalised k
    gg = take(d.C * d.dk);           // [C, dk] activated log-decay g
    alpha = take(d.C * d.dk);        // [C, dk] exp(g)
    eq = take(d.C * d.dk);           // [C, dk] e^P ⊙ Q
    ekx = take(d.C * d.dk);          // [C, dk] e^X ⊙ K
    kb = take(d.C * d.dk);           // [C, dk] K_J ⊙ e^{Λ(j→n_I)} for the current block row
    qt = take(d.Cs * d.dk);          // [Cs, dk] Q_I ⊙ e^{Λ(n_I→i)}
    kt = take(d.Cs * d.dk);          // [Cs, dk] K_I ⊙ e^{Λ(n_I→i)}
    aqk = take(aqk_floats(d));       // [C, C] A_qk (fused: A_qkᵀ, [C, lanes(C)])
    akk = take(d.C * d.C);           // [C, C] A_kk (strict lower)
    wu = take(d.C * (d.dk + d.dv));  // [C, dk+dv] RHS, then [W | U], then [W | Ṽ]
    beta = take(d.C);                // [C]
    dec = take(d.dk);                // [dk] running decay of a diagonal-block pair
    lam = take(d.dk);                // [dk] running log-decay sum
    e = take(d.dk);                  // [dk] exp(lam)
    lt = d.fused ? take(lt_floats(d)) : nullptr;  // a transposed operand
    xt = d.fused ? take(xt_floats(d)) : nullptr;  // [C, lanes(2Cs)]
  }
};

class KimiDeltaAttention final : public Mechanism {
 public:
  std::string name() const override { return "kda"; }
  std::vector<std::string> aliases() const override { return {"kimi_delta", "kimi_linear"}; }
  std::string family() const override { return "linear"; }
  std::string summary() const override {
    return "Kimi Delta Attention: gated delta rule with channel-wise decay (chunked WY/UT form)";
  }
  PaperInfo paper() const override {
    return {"Kimi Linear: An Expressive, Efficient Attention Architecture", "Kimi Team", 2025,
            "2510.26692"};
  }

  std::vector<ParamSpec> params() const override {
    const ParamSpec lb = float_param(
        "lower_bound", "gate = lower_bound: g = lower_bound · sigmoid(exp(a_log)(g + dt_bias))",
        -5.0, -1e4, 0);
    return {
        common::batch(),
        common::heads(),
        common::head_dim(),
        common::value_dim(),
        common::seq_len(),
        common::causal(true),
        common::scale("1/sqrt(head_dim), applied to q after its L2 normalisation"),
        common::seed(),
        common::threads(),
        bool_param("l2norm", "L2-normalise q and k in the kernel (eps 1e-6)", true),
        choice_param("gate", "how g becomes the log-decay", {"given", "softplus", "lower_bound"},
                     "given"),
        lb,
        choice_param("gate_regime", "generated gates: mild or strong decay (decisions.md)",
                     {"mild", "strong"}, "mild"),
        int_param("chunk_size", "rows per chunk of the chunked form", 64, 1, 1 << 16),
        int_param("sub_chunk", "rows per sub-chunk of the stable factorisation", 16, 1, 1 << 16),
        choice_param("form", "fast-path form", {"chunked", "recurrent"}, "chunked"),
        choice_param("kernel",
                     "chunked form's state and output products: fused (AVX-512 lane kernels; "
                     "blas where unsupported) or blas (cblas_sgemm)",
                     {"fused", "blas"}, "fused"),
        bool_param("initial_state", "take input initial_state (S0 [B,H,dk,dv])", false)};
  }

  void resolve(Params& p) const override {
    if (!p.b("causal"))
      throw InputError("causal",
                       "kda is causal only (a recurrence); got causal = false, allowed: "
                       "true");
    if (!p.has("value_dim")) p.set("value_dim", p.i("head_dim"));
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(p.i("head_dim"))));
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), dk = p.i("head_dim"),
                  dv = p.i("value_dim");
    const bool given = p.s("gate") == "given";
    std::vector<TensorSpec> s = {
        {"q", {B, H, L, dk}, "queries [B,H,L,dk]"},
        {"k", {B, H, L, dk}, "keys [B,H,L,dk]"},
        {"v", {B, H, L, dv}, "values [B,H,L,dv]"},
        {"g",
         {B, H, L, dk},
         given ? "log-decay per channel, <= 0 [B,H,L,dk]" : "raw gate input [B,H,L,dk]"},
        {"beta", {B, H, L}, "delta-rule step size in (0, 1) [B,H,L]"}};
    if (!given) {
      s.push_back({"a_log", {H}, "log of the per-head decay rate A [H]"});
      s.push_back({"dt_bias", {H, dk}, "gate bias [H,dk]"});
    }
    if (p.b("initial_state"))
      s.push_back(
          {"initial_state", {B, H, dk, dv}, "S0, state before the first token [B,H,dk,dv]"});
    return s;
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), dk = p.i("head_dim"),
                  dv = p.i("value_dim");
    return {{"out", {B, H, L, dv}, "attention output [B,H,L,dv]"},
            {"final_state", {B, H, dk, dv}, "S after the last token [B,H,dk,dv]"}};
  }

  // decisions.md: q, k, v, S0 ~ N(0, 1); beta = sigmoid(N(0, 1)); the gate of the layer's
  // initialisation, g = -exp(a_log)·softplus(u + dt_bias), with dt_bias = inverse-softplus of
  // dt ~ logU(1e-3, 1e-1) (clamped >= 1e-4), and mild: a_log = ln U(1, 16), u ~ N(-2, 1) |
  // strong: a_log = ln 16, u ~ N(+2, 1). gate = given receives the activated g; the other gates
  // receive u, a_log and dt_bias.
  void generate_inputs(const Params& p, TensorMap& in) const override {
    const uint64_t seed = static_cast<uint64_t>(p.i("seed"));
    const Dims d = dims_of(p);
    const bool strong = p.s("gate_regime") == "strong";
    for (const auto& spec : inputs(p)) {
      if (spec.name == "g" || spec.name == "beta" || spec.name == "a_log" || spec.name == "dt_bias")
        continue;
      Tensor t(spec.shape);
      fill_normal(t, seed, spec.name);
      in[spec.name] = std::move(t);
    }
    Tensor a_log({d.H}), dt_bias({d.H, d.dk}), u({d.B, d.H, d.L, d.dk}), beta({d.B, d.H, d.L});
    fill_uniform(a_log, seed, "a_log", 1.0, 16.0);
    for (int64_t h = 0; h < d.H; ++h) a_log[h] = strong ? std::log(16.0f) : std::log(a_log[h]);
    fill_uniform(dt_bias, seed, "dt_bias", std::log(1e-3), std::log(1e-1));
    for (int64_t i = 0; i < dt_bias.numel(); ++i) {
      const double dt = std::max(std::exp(double(dt_bias[i])), 1e-4);
      dt_bias[i] = float(dt + std::log(-std::expm1(-dt)));  // inverse softplus
    }
    fill_normal(u, seed, "g", strong ? 2.0 : -2.0, 1.0);
    fill_normal(beta, seed, "beta");
    for (int64_t i = 0; i < beta.numel(); ++i)
      beta[i] = float(1 / (1 + std::exp(-double(beta[i]))));
    in["beta"] = std::move(beta);
    if (d.gate == Gate::Given) {
      for (int64_t r = 0; r < d.B * d.H * d.L; ++r) {
        const int64_t h = (r / d.L) % d.H;
        for (int64_t x = 0; x < d.dk; ++x)
          u[r * d.dk + x] = float(-std::exp(double(a_log[h])) *
                                  softplus(double(u[r * d.dk + x]) + dt_bias[h * d.dk + x]));
      }
    } else {
      in["a_log"] = std::move(a_log);
      in["dt_bias"] = std::move(dt_bias);
    }
    in["g"] = std::move(u);
  }

  CostModel cost(const Params& p, Path path) const override {
    const Dims d = dims_of(p);
    const double BH = double(d.B) * d.H, L = d.L, dk = d.dk, dv = d.dv;
    const bool chunked = path == Path::Fast && p.s("form") == "chunked";
    CostModel c;
    // Prologue per token: l2norm of q and k, the gate, q scaling (chunked form only: the spec's
    // recurrent count includes it).
    double pro = 0, pro_t = 0;
    if (d.l2norm) pro += 2 * (3 * dk + 1), pro_t += 2;
    if (d.gate == Gate::Softplus) pro += 2 * dk, pro_t += 2 * dk;
    if (d.gate == Gate::LowerBound) pro += 3 * dk, pro_t += dk;
    if (chunked) pro += dk;
    double core = 0, ew = 0, issued = 0, trans = 0;
    if (!chunked) {
      // Spec §2.5: L(7·dk·dv + 2dv + dk): decay dk·dv, p = Sᵀk 2dk·dv, u = β(v - p) 2dv,
      // S += k uᵀ 2dk·dv, o = Sᵀq 2dk·dv, q scaling dk. T = L·dk exps.
      core = L * (7 * dk * dv + 2 * dv + dk);
      ew = L * (dk * dv + 2 * dv + dk);
      issued = path == Path::Reference ? core : 0;
      trans = L * dk;
      c.form = path == Path::Reference ? "recurrent (float64)" : "recurrent (token by token)";
      c.time_complexity = "O(B·H·L·dk·dv)";
      c.space_complexity = "O(T·(dk + dv))";
      c.workspace_bytes =
          double(slice_threads(p)) *
          (path == Path::Reference ? 8 * (d.dk * d.dv + 3 * d.dk + d.dv) : 4 * (3 * d.dk + d.dv));
    } else {
      const int64_t full = d.L / d.C, last = d.L % d.C;
      auto add = [&](int64_t cnt, int64_t ci) {
        if (cnt == 0 || ci == 0) return;
        const double cc = double(ci);
        core += cnt * (4 * cc * cc * dk + 2 * cc * cc * dv + cc * (cc - 1) * (dk + dv) +
                       6 * cc * dk * dv + dk * dv + cc * cc + 6 * cc * dk + 3 * cc * dv);
        ew += cnt * (dk * dv + cc * cc + 6 * cc * dk + 3 * cc * dv);
        double is = 6 * cc * dk * dv;  // W·S, (e^P⊙Q)·S, (e^X⊙K)ᵀ·Ṽ
        double tr = 3 * cc * dk;       // α, e^P, e^X
        for (int64_t n = 0; n < ci; n += d.Cs) {
          const double rows = double(std::min(d.Cs, ci - n)), e = double(n) + rows;
          is += 2 * rows * e * dv;  // A_qk[I, <=I]·Ṽ
          // Off-diagonal A blocks: two GEMMs (blas), or one lane product over the block's q and k
          // rows padded to a multiple of 32 lanes (fused).
          const double lanes = d.fused ? double(ChunkScratch::lanes(2 * int64_t(rows))) : 2 * rows;
          if (n > 0) is += 2 * lanes * double(n) * dk, tr += (rows + double(n)) * dk;
        }
        is += solve_unit_lower_gemm_flops(ci, d.dk + d.dv, d.Cs);
        issued += cnt * is;
        trans += cnt * tr;
      };
      add(full, d.C);
      add(last ? 1 : 0, last);
      c.form = fmt::format(
          "chunked WY/UT (chunk_size {}, sub_chunk {}; spec canonical count; paper Eq. 13 "
          "6Ld²+3LCd+LC² = {:.4g})",
          d.C, d.Cs, BH * L * (6 * dk * dk + 3 * double(d.C) * dk + double(d.C) * d.C));
      c.time_complexity = "O(B·H·L·(C·(dk + dv) + dk·dv))";
      c.space_complexity = "O(T·(C² + C·(dk + dv)))";
      c.workspace_bytes = double(slice_threads(p)) * 4 * ChunkScratch::floats(d);
    }
    c.flops = BH * (core + L * pro);
    c.elementwise = BH * (ew + L * pro);
    c.issued_flops = BH * issued;
    c.transcendentals = BH * (trans + L * pro_t);
    c.flops_parts = {{"core", BH * core}, {"prologue", BH * L * pro}};
    c.io_bytes = 4 * BH * (L * (3 * dk + 2 * dv + 1) + dk * dv * (d.init ? 2 : 1)) +
                 (d.gate != Gate::Given ? 4.0 * d.H * (dk + 1) : 0.0);
    c.kv_bytes_per_token = 0;  // constant-size state: 4·H·dk·dv bytes per sequence
    return c;
  }

  // The fp32 forms agree with the float64 recurrence to ~1e-6 normwise in every gate regime of
  // spec §2.7 (tests); the issue and spec §0.3 ask for <= 1e-4 between forms.
  double tolerance(const Params&) const override { return 1e-4; }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    const Dims d = dims_of(p);
    const Inputs x = inputs_of(d, in);
    float* o = output(out, "out").data();
    float* sl = output(out, "final_state").data();
    const int nthreads = slice_threads(p);
    const int64_t per = d.dk * d.dv + 3 * d.dk + d.dv;
    Workspace::Scope scope(ws);
    double* scratch = ws.alloc<double>(per * nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
    for (int64_t bh = 0; bh < d.B * d.H; ++bh) {
      double* S = scratch + per * omp_get_thread_num();
      double* qv = S + d.dk * d.dv;
      double* kv = qv + d.dk;
      double* al = kv + d.dk;
      double* u = al + d.dk;
      const int64_t h = bh % d.H;
      for (int64_t i = 0; i < d.dk * d.dv; ++i) S[i] = x.s0 ? x.s0[bh * d.dk * d.dv + i] : 0.0;
      for (int64_t t = 0; t < d.L; ++t) {
        const int64_t row = bh * d.L + t;
        double nq = 0, nk = 0;
        for (int64_t c = 0; c < d.dk; ++c) {
          qv[c] = x.q[row * d.dk + c];
          kv[c] = x.k[row * d.dk + c];
          nq += qv[c] * qv[c];
          nk += kv[c] * kv[c];
          al[c] = std::exp(gate_value(d, x.g[row * d.dk + c], x.a_log ? x.a_log[h] : 0.0,
                                      x.dt_bias ? x.dt_bias[h * d.dk + c] : 0.0));
        }
        const double fq = (d.l2norm ? 1 / std::sqrt(nq + kNormEps) : 1.0) * double(d.scale);
        const double fk = d.l2norm ? 1 / std::sqrt(nk + kNormEps) : 1.0;
        for (int64_t c = 0; c < d.dk; ++c) qv[c] *= fq, kv[c] *= fk;
        const double b = x.beta[row];
        for (int64_t y = 0; y < d.dv; ++y) u[y] = 0;
        for (int64_t c = 0; c < d.dk; ++c)
          for (int64_t y = 0; y < d.dv; ++y) {
            S[c * d.dv + y] *= al[c];
            u[y] += kv[c] * S[c * d.dv + y];
          }
        for (int64_t y = 0; y < d.dv; ++y) u[y] = b * (double(x.v[row * d.dv + y]) - u[y]);
        for (int64_t y = 0; y < d.dv; ++y) {
          double acc = 0;
          for (int64_t c = 0; c < d.dk; ++c) {
            S[c * d.dv + y] += kv[c] * u[y];
            acc += qv[c] * S[c * d.dv + y];
          }
          o[row * d.dv + y] = float(acc);
        }
      }
      for (int64_t i = 0; i < d.dk * d.dv; ++i) sl[bh * d.dk * d.dv + i] = float(S[i]);
    }
  }

  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    const Dims d = dims_of(p);
    if (p.s("form") == "recurrent")
      recurrent(p, d, in, out, ws);
    else
      chunked(p, d, in, out, ws);
  }

 private:
  struct Inputs {
    const float *q, *k, *v, *g, *beta, *a_log, *dt_bias, *s0;
  };
  static Inputs inputs_of(const Dims& d, const TensorMap& in) {
    const bool given = d.gate == Gate::Given;
    return {input(in, "q").data(),
            input(in, "k").data(),
            input(in, "v").data(),
            input(in, "g").data(),
            input(in, "beta").data(),
            given ? nullptr : input(in, "a_log").data(),
            given ? nullptr : input(in, "dt_bias").data(),
            d.init ? input(in, "initial_state").data() : nullptr};
  }
  // One prologue row in float32: y = x·(scale / |x|) (or x·scale), and the activated gate.
  static void norm_row(const float* x, float* y, int64_t n, bool l2norm, float s) {
    float f = s;
    if (l2norm) {
      float ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < n; ++c) ss += x[c] * x[c];
      f = s / std::sqrt(ss + float(kNormEps));
    }
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) y[c] = x[c] * f;
  }
  static void gate_row(const Dims& d, const Inputs& x, int64_t row, int64_t h, float* g) {
    const float* raw = x.g + row * d.dk;
    if (d.gate == Gate::Given) {
#pragma omp simd
      for (int64_t c = 0; c < d.dk; ++c) g[c] = raw[c] < float(kGateMin) ? float(kGateMin) : raw[c];
      return;
    }
    for (int64_t c = 0; c < d.dk; ++c)
      g[c] = float(gate_value(d, raw[c], x.a_log[h], x.dt_bias[h * d.dk + c]));
  }

  void recurrent(const Params& p, const Dims& d, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const {
    const Inputs x = inputs_of(d, in);
    float* o = output(out, "out").data();
    float* sl = output(out, "final_state").data();
    const int64_t per = 3 * d.dk + d.dv;
    for_each_slice(p, per, ws, [&](float* mine, int64_t bh) {
      float* qv = mine;
      float* kv = qv + d.dk;
      float* al = kv + d.dk;
      float* u = al + d.dk;
      float* S = sl + bh * d.dk * d.dv;
      const int64_t h = bh % d.H;
      if (x.s0)
        std::copy(x.s0 + bh * d.dk * d.dv, x.s0 + (bh + 1) * d.dk * d.dv, S);
      else
        std::fill(S, S + d.dk * d.dv, 0.0f);
      for (int64_t t = 0; t < d.L; ++t) {
        const int64_t row = bh * d.L + t;
        norm_row(x.q + row * d.dk, qv, d.dk, d.l2norm, d.scale);
        norm_row(x.k + row * d.dk, kv, d.dk, d.l2norm, 1.0f);
        gate_row(d, x, row, h, al);
#pragma omp simd
        for (int64_t c = 0; c < d.dk; ++c) al[c] = exp_approx(al[c]);
        std::fill(u, u + d.dv, 0.0f);
        for (int64_t c = 0; c < d.dk; ++c) {
          float* sc = S + c * d.dv;
          const float a = al[c], kc = kv[c];
#pragma omp simd
          for (int64_t y = 0; y < d.dv; ++y) {
            sc[y] *= a;
            u[y] += kc * sc[y];
          }
        }
        const float b = x.beta[row];
        const float* vr = x.v + row * d.dv;
#pragma omp simd
        for (int64_t y = 0; y < d.dv; ++y) u[y] = b * (vr[y] - u[y]);
        float* orow = o + row * d.dv;
        std::fill(orow, orow + d.dv, 0.0f);
        for (int64_t c = 0; c < d.dk; ++c) {
          float* sc = S + c * d.dv;
          const float kc = kv[c], qc = qv[c];
#pragma omp simd
          for (int64_t y = 0; y < d.dv; ++y) {
            sc[y] += kc * u[y];
            orow[y] += qc * sc[y];
          }
        }
      }
    });
  }

  void chunked(const Params& p, const Dims& d, const TensorMap& in, TensorMap& out,
               Workspace& ws) const {
    const Inputs x = inputs_of(d, in);
    float* o = output(out, "out").data();
    float* sl = output(out, "final_state").data();
    const int64_t per = ChunkScratch::floats(d);
    const int64_t dk = d.dk, dv = d.dv, dkv = dk + dv, C = d.C;
    for_each_slice(p, per, ws, [&](float* mine, int64_t bh) {
      ChunkScratch w(d, mine);
      float* S = sl + bh * dk * dv;
      const int64_t h = bh % d.H;
      if (x.s0)
        std::copy(x.s0 + bh * dk * dv, x.s0 + (bh + 1) * dk * dv, S);
      else
        std::fill(S, S + dk * dv, 0.0f);
      for (int64_t t0 = 0; t0 < d.L; t0 += C) {
        const int64_t c = std::min(C, d.L - t0);
        // 1. Prologue rows, α, e^P factors (with the right-hand side) and e^X factors.
        std::fill(w.lam, w.lam + dk, 0.0f);
        for (int64_t r = 0; r < c; ++r) {
          const int64_t row = bh * d.L + t0 + r;
          float *qr = w.qn + r * dk, *kr = w.kn + r * dk, *gr = w.gg + r * dk;
          norm_row(x.q + row * dk, qr, dk, d.l2norm, d.scale);
          norm_row(x.k + row * dk, kr, dk, d.l2norm, 1.0f);
          gate_row(d, x, row, h, gr);
          const float b = x.beta[row];
          w.beta[r] = b;
          float *ar = w.alpha + r * dk, *eqr = w.eq + r * dk, *rhs = w.wu + r * dkv;
#pragma omp simd
          for (int64_t j = 0; j < dk; ++j) {
            ar[j] = exp_approx(gr[j]);
            w.lam[j] += gr[j];  // P_r, a true prefix
            const float ep = exp_approx(w.lam[j]);
            eqr[j] = ep * qr[j];
            rhs[j] = b * ep * kr[j];
          }
          const float* vr = x.v + row * dv;
#pragma omp simd
          for (int64_t y = 0; y < dv; ++y) rhs[dk + y] = b * vr[y];
        }
        for (int64_t j = 0; j < dk; ++j) w.e[j] = exp_approx(w.lam[j]);  // e^{P_c}
        std::fill(w.lam, w.lam + dk, 0.0f);
        for (int64_t r = c - 1; r >= 0; --r) {  // X_r = Σ_{s>r} g_s, a true suffix
          const float *kr = w.kn + r * dk, *gr = w.gg + r * dk;
          float* er = w.ekx + r * dk;
#pragma omp simd
          for (int64_t j = 0; j < dk; ++j) {
            er[j] = exp_approx(w.lam[j]) * kr[j];
            w.lam[j] += gr[j];
          }
        }
        // 2. A_qk and A_kk by sub-chunks. A_qk[i][j] is at aqk[i·ai + j·aj] (fused: transposed,
        // as step 4's lane kernels read it).
        const int64_t rc = ChunkScratch::lanes(c), ai = d.fused ? 1 : C, aj = d.fused ? rc : 1;
        std::fill(w.aqk, w.aqk + (d.fused ? c * rc : c * C), 0.0f);
        for (int64_t n = 0; n < c; n += d.Cs) {
          const int64_t e = std::min(c, n + d.Cs), rows = e - n;
          diagonal_block(d, w, n, e, ai, aj);
          if (n == 0) continue;
          // Λ(n→i) for the block's rows (within-block prefix, first row excluded).
          std::fill(w.lam, w.lam + dk, 0.0f);
          for (int64_t i = n; i < e; ++i) {
            const float *gi = w.gg + i * dk, *qi = w.qn + i * dk, *ki = w.kn + i * dk;
            float *qt = w.qt + (i - n) * dk, *kt = w.kt + (i - n) * dk;
#pragma omp simd
            for (int64_t j = 0; j < dk; ++j) {
              if (i > n) w.lam[j] += gi[j];
              const float f = exp_approx(w.lam[j]);
              qt[j] = qi[j] * f;
              kt[j] = ki[j] * f;
            }
          }
          // Λ(j→n) for the earlier rows: g_n + Σ_{s=j+1}^{n-1} g_s, accumulated backward.
          std::copy(w.gg + n * dk, w.gg + (n + 1) * dk, w.lam);
          for (int64_t j = n - 1; j >= 0; --j) {
            const float *gj = w.gg + j * dk, *kj = w.kn + j * dk;
            float* kb = w.kb + j * dk;
#pragma omp simd
            for (int64_t m = 0; m < dk; ++m) {
              kb[m] = kj[m] * exp_approx(w.lam[m]);
              w.lam[m] += gj[m];
            }
          }
          if (d.fused) {  // one lane product for both: lanes = the block's q rows, then k rows
            const int64_t r2 = ChunkScratch::lanes(2 * rows);
            pack_lanes({w.qt, dk, w.kt - w.qt, rows}, 2 * rows, dk, 1.0f, w.lt, r2);
            lane_scores(w.lt, r2, w.kb, dk, n, dk, w.xt);
            for (int64_t j = 0; j < n; ++j) {
              const float* xj = w.xt + j * r2;
              std::copy(xj, xj + rows, w.aqk + j * rc + n);
              for (int64_t r = 0; r < rows; ++r)
                w.akk[(n + r) * C + j] = w.beta[n + r] * xj[rows + r];
            }
          } else {
            blas::gemm(false, true, rows, n, dk, 1.0f, w.qt, dk, w.kb, dk, 0.0f, w.aqk + n * C, C);
            blas::gemm(false, true, rows, n, dk, 1.0f, w.kt, dk, w.kb, dk, 0.0f, w.akk + n * C, C);
            for (int64_t i = n; i < e; ++i) scale_row(w.akk + i * C, n, w.beta[i]);
          }
        }
        // 3. (I + A_kk)[W | U] = [βe^P ⊙ K | βV].
        if (d.fused)  // lt is free between steps 2 and 4
          solve_unit_lower_lanes(c, dkv, w.akk, C, w.wu, dkv, d.Cs, w.lt);
        else
          solve_unit_lower(c, dkv, w.akk, C, w.wu, dkv, d.Cs);
        // 4. Ṽ = U - W S; O = (e^P ⊙ Q) S + A_qk Ṽ; S ← Diag(e^{P_c}) S + (e^X ⊙ K)ᵀ Ṽ.
        float* vt = w.wu + dk;
        float* orows = o + (bh * d.L + t0) * dv;
        if (d.fused) {  // lane kernels: the left operands transposed once (pack_lanes) into lt
          pack_lanes({w.wu, dkv, 0, c}, c, dk, -1.0f, w.lt, rc);  // -Wᵀ
          lane_accumulate(w.lt, rc, c, dk, S, dv, dv, vt, dkv);
          pack_lanes({w.eq, dk, 0, c}, c, dk, 1.0f, w.lt, rc);  // (e^P ⊙ Q)ᵀ
          std::fill(orows, orows + c * dv, 0.0f);
          lane_accumulate(w.lt, rc, c, dk, S, dv, dv, orows, dv);
          for (int64_t n = 0; n < c; n += d.Cs) {  // A_qkᵀ is already transposed
            const int64_t e = std::min(c, n + d.Cs);
            lane_accumulate(w.aqk + n, rc, e - n, e, vt, dkv, dv, orows + n * dv, dv);
          }
          lane_accumulate(w.ekx, dk, dk, c, vt, dkv, dv, S, dv, w.e);  // decays S by e^{P_c}
        } else {
          blas::gemm(false, false, c, dv, dk, -1.0f, w.wu, dkv, S, dv, 1.0f, vt, dkv);
          blas::gemm(false, false, c, dv, dk, 1.0f, w.eq, dk, S, dv, 0.0f, orows, dv);
          for (int64_t n = 0; n < c; n += d.Cs) {
            const int64_t e = std::min(c, n + d.Cs);
            blas::gemm(false, false, e - n, dv, e, 1.0f, w.aqk + n * C, C, vt, dkv, 1.0f,
                       orows + n * dv, dv);
          }
          for (int64_t j = 0; j < dk; ++j) scale_row(S + j * dv, dv, w.e[j]);
          blas::gemm(true, false, dk, dv, c, 1.0f, w.ekx, dk, vt, dkv, 1.0f, S, dv);
        }
      }
    });
  }

  // Diagonal block [n, e): A_qk[i, j] (j <= i) and A_kk[i, j] (j < i) pairwise, the decay of
  // each pair a running product of α (factors <= 1, no division).
  static void diagonal_block(const Dims& d, ChunkScratch& w, int64_t n, int64_t e, int64_t ai,
                             int64_t aj) {
    const int64_t dk = d.dk, C = d.C;
    if (d.fused && dk <= 64 && e - n <= 16) {
      using Lanes = void (*)(const float*, const float*, const float*, const float*, int64_t,
                             int64_t, int64_t, float*, int64_t, int64_t, float*, int64_t);
      constexpr Lanes kLanes[5] = {nullptr, diagonal_block_lanes<1>, diagonal_block_lanes<2>,
                                   diagonal_block_lanes<3>, diagonal_block_lanes<4>};
      return kLanes[(dk + 15) / 16](w.qn, w.kn, w.alpha, w.beta, dk, n, e, w.aqk, ai, aj, w.akk, C);
    }
    for (int64_t i = n; i < e; ++i) {
      const float *qi = w.qn + i * dk, *ki = w.kn + i * dk;
      std::fill(w.dec, w.dec + dk, 1.0f);
      for (int64_t j = i; j >= n; --j) {
        const float* kj = w.kn + j * dk;
        if (j < i) {
          const float* aj = w.alpha + (j + 1) * dk;
#pragma omp simd
          for (int64_t m = 0; m < dk; ++m) w.dec[m] *= aj[m];
        }
        float sq, sk;
        dot2_weighted(qi, ki, kj, w.dec, dk, sq, sk);
        w.aqk[i * ai + j * aj] = sq;
        if (j < i) w.akk[i * C + j] = w.beta[i] * sk;
      }
    }
  }

  // diagonal_block on AVX-512 for dk <= 16·NV and a sub-chunk of at most 16 rows: per row i the
  // decay vector D = Π α_{j+1..i} and the pairs j = i, i-1, .., n: K_j ⊙ D, its products with q_i
  // and k_i as vectors (NV lanes of dk folded into one), the up to 16 pairs' product vectors
  // summed by one transposed reduction (no horizontal sum per pair).
  template <int NV>
  KT_SIMD16 static void diagonal_block_lanes(const float* qn, const float* kn, const float* alpha,
                                             const float* beta, int64_t dk, int64_t n, int64_t e,
                                             float* aqk, int64_t ai, int64_t aj, float* akk,
                                             int64_t C) {
    const __mmask16 tail = prefix16(dk - 16 * (NV - 1));
    auto mk = [tail](int v) { return v < NV - 1 ? __mmask16(0xffff) : tail; };
    alignas(64) float sq[16], sk[16];
    for (int64_t i = n; i < e; ++i) {
      __m512 q[NV], k[NV], dec[NV], pq[16], pk[16];
      for (int v = 0; v < NV; ++v) {
        q[v] = _mm512_maskz_loadu_ps(mk(v), qn + i * dk + 16 * v);
        k[v] = _mm512_maskz_loadu_ps(mk(v), kn + i * dk + 16 * v);
        dec[v] = _mm512_set1_ps(1.0f);
      }
      const int cnt = int(i - n + 1);
      for (int l = 0; l < 16; ++l) {  // pair l: key j = i - l, in the slot its lane sums
        const int slot = 4 * (l % 4) + l / 4;
        if (l >= cnt) {
          pq[slot] = pk[slot] = _mm512_setzero_ps();
          continue;
        }
        const int64_t j = i - l;
        __m512 xq = _mm512_setzero_ps(), xk = _mm512_setzero_ps();
        for (int v = 0; v < NV; ++v) {
          if (l > 0)
            dec[v] =
                _mm512_mul_ps(dec[v], _mm512_maskz_loadu_ps(mk(v), alpha + (j + 1) * dk + 16 * v));
          const __m512 kd =
              _mm512_mul_ps(_mm512_maskz_loadu_ps(mk(v), kn + j * dk + 16 * v), dec[v]);
          xq = _mm512_fmadd_ps(q[v], kd, xq);
          xk = _mm512_fmadd_ps(k[v], kd, xk);
        }
        pq[slot] = xq;
        pk[slot] = xk;
      }
      _mm512_store_ps(sq, transpose_sum16(pq));
      _mm512_store_ps(sk, transpose_sum16(pk));
      for (int l = 0; l < cnt; ++l) {
        const int64_t j = i - l;
        aqk[i * ai + j * aj] = sq[l];
        if (l > 0) akk[i * C + j] = beta[i] * sk[l];
      }
    }
  }
};

}  // namespace

const Mechanism& mechanism_kda() {
  static const KimiDeltaAttention m;
  return m;
}

}  // namespace kt
