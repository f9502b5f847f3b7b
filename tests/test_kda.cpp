// kda (Kimi Delta Attention): both fast forms (chunked WY/UT, recurrent) against the float64
// recurrent reference over shapes, chunk sizes and every decay regime of spec §2.7; the reference
// against an independent float64 oracle (paper Eq. 1 with explicit matrices); the spec's reduction
// tests (g = 0 is DeltaNet, β = 0 is pure decay, extreme decay, delta-rule overwrite,
// split-and-carry); the analytic FLOP model and bad inputs.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/blas.hpp"
#include "test_util.hpp"

namespace kt::test {
namespace {

using json = nlohmann::json;
using KRun = kt::test::Run;  // inside TEST bodies `Run` names testing::Test::Run

bool finite(const TensorMap& m) {
  for (const auto& [name, t] : m)
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t[i])) return false;
  return true;
}

// Every fast form against the reference (1e-4, spec §0.3), with no NaN or Inf anywhere.
void expect_forms_match(const KRun& r) {
  const TensorMap ref = forward(r, Path::Reference);
  EXPECT_TRUE(finite(ref));
  // The chunked form with both kernels (lane kernels and BLAS), and the recurrent form.
  for (const char* form : {"chunked", "chunked-blas", "recurrent"}) {
    KRun f = r;
    const bool use_blas = std::string(form) == "chunked-blas";
    f.params.set("form", std::string(use_blas ? "chunked" : form));
    f.params.set("kernel", std::string(use_blas ? "blas" : "fused"));
    const TensorMap got = forward(f, Path::Fast);
    EXPECT_TRUE(finite(got)) << form;
    EXPECT_LE(max_rel_error(got, ref), 1e-4) << form;
  }
}
void expect_forms_match(const json& g) {
  SCOPED_TRACE(g.dump());
  expect_forms_match(make_run("kda", g));
}

TEST(Kda, FastMatchesReferenceOverShapes) {
  const int64_t dims[] = {16, 64, 80};
  for (int64_t L : test_lengths())
    for (int di = 0; di < 3; ++di)
      expect_forms_match({{"batch", 2},
                          {"heads", di == 1 ? 5 : 3},
                          {"head_dim", dims[di]},
                          {"value_dim", di == 2 ? 48 : dims[di]},
                          {"seq_len", L}});
}

// Spec §2.7-1: C in {16, 32, 64, >= L} (C >= L is the single-chunk parallel form), ragged L,
// sub-chunks that do not divide the chunk or exceed 16 (the AVX-512 diagonal block takes at most
// 16), with and without S0, both gate regimes.
TEST(Kda, ChunkSizesRaggedAndInitialState) {
  for (const char* regime : {"mild", "strong"})
    for (bool init : {false, true})
      for (auto [C, Cs] : std::vector<std::pair<int, int>>{
               {16, 16}, {32, 16}, {64, 16}, {256, 16}, {64, 7}, {64, 32}, {20, 1}})
        expect_forms_match({{"heads", 2},
                            {"head_dim", 32},
                            {"seq_len", 200},
                            {"chunk_size", C},
                            {"sub_chunk", Cs},
                            {"initial_state", init},
                            {"gate_regime", regime}});
}

TEST(Kda, GatePrologues) {
  for (const char* gate : {"given", "softplus", "lower_bound"})
    for (const char* regime : {"mild", "strong"})
      expect_forms_match({{"heads", 3}, {"seq_len", 150}, {"gate", gate}, {"gate_regime", regime}});
  expect_forms_match(
      {{"heads", 2}, {"seq_len", 150}, {"gate", "lower_bound"}, {"lower_bound", -1}});
}

// Spec §2.7-1 stress regimes, written into g directly: huge early decays in each chunk (up to
// 200 per step in the first half), alternating huge / small, and g = -1e4 everywhere.
TEST(Kda, StressDecayRegimes) {
  const int64_t H = 2, L = 200, dk = 32;
  for (int regime = 0; regime < 3; ++regime) {
    SCOPED_TRACE(regime);
    KRun r =
        make_run("kda", {{"heads", H}, {"head_dim", dk}, {"seq_len", L}, {"initial_state", true}});
    Tensor& g = r.in["g"];
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < L; ++t)
        for (int64_t x = 0; x < dk; ++x) {
          float& gv = g[(h * L + t) * dk + x];
          const float u = float((t * 31 + x * 17 + h * 7) % 101) / 100.0f;  // in [0, 1]
          if (regime == 0) gv = (t % 64) < 32 ? -200.0f * u : -0.05f * u;
          if (regime == 1) gv = t % 2 ? -150.0f * u : -0.01f * u;
          if (regime == 2) gv = -1e4f;
        }
    expect_forms_match(r);
  }
}

// Spec §2.7-7: with g = -1e4 the state forgets at every step: o_t = scale·β_t (q̂_t·k̂_t) v_t.
TEST(Kda, ExtremeDecayForgetsEveryStep) {
  const int64_t H = 2, L = 70, d = 16;
  KRun r =
      make_run("kda", {{"heads", H}, {"head_dim", d}, {"seq_len", L}, {"initial_state", true}});
  r.in["g"].fill(-1e4f);
  std::vector<double> want(H * L * d);
  const double scale = r.params.f("scale");
  for (int64_t row = 0; row < H * L; ++row) {
    double qq = 0, kk = 0, qk = 0;
    for (int64_t x = 0; x < d; ++x) {
      const double q = r.in["q"][row * d + x], k = r.in["k"][row * d + x];
      qq += q * q, kk += k * k, qk += q * k;
    }
    const double a = scale * r.in["beta"][row] * qk / std::sqrt((qq + 1e-6) * (kk + 1e-6));
    for (int64_t y = 0; y < d; ++y) want[row * d + y] = a * r.in["v"][row * d + y];
  }
  for (const char* form : {"chunked", "recurrent"}) {
    KRun f = r;
    f.params.set("form", std::string(form));
    TensorMap out = forward(f, Path::Fast);
    EXPECT_TRUE(finite(out));
    EXPECT_LE(rel_error(out.at("out"), want), 1e-5) << form;
  }
}

// Independent oracle: paper Eq. 1 with explicit matrices, S_t = (I - β k kᵀ) Diag(α) S_{t-1} +
// β k vᵀ, in float64, with the prologue written out (l2norm, scale, softplus gate).
std::vector<double> oracle(const KRun& r, std::vector<double>* final_state = nullptr) {
  const auto& p = r.params;
  const int64_t BH = p.i("batch") * p.i("heads"), H = p.i("heads"), L = p.i("seq_len"),
                dk = p.i("head_dim"), dv = p.i("value_dim");
  const std::string gate = p.s("gate");
  std::vector<double> o(BH * L * dv), S(dk * dv), T(dk * dv), M(dk * dk);
  if (final_state) final_state->assign(BH * dk * dv, 0);
  for (int64_t bh = 0; bh < BH; ++bh) {
    for (int64_t i = 0; i < dk * dv; ++i)
      S[i] = p.b("initial_state") ? r.in.at("initial_state")[bh * dk * dv + i] : 0.0;
    for (int64_t t = 0; t < L; ++t) {
      const int64_t row = bh * L + t;
      std::vector<double> q(dk), k(dk), a(dk);
      double nq = 0, nk = 0;
      for (int64_t x = 0; x < dk; ++x) {
        q[x] = r.in.at("q")[row * dk + x], k[x] = r.in.at("k")[row * dk + x];
        nq += q[x] * q[x], nk += k[x] * k[x];
        double g = r.in.at("g")[row * dk + x];
        if (gate == "softplus") {
          const double z = g + r.in.at("dt_bias")[(bh % H) * dk + x];
          g = -std::exp(double(r.in.at("a_log")[bh % H])) * std::log(1 + std::exp(z));
        }
        a[x] = std::exp(g);
      }
      for (int64_t x = 0; x < dk; ++x) {
        if (p.b("l2norm")) q[x] /= std::sqrt(nq + 1e-6), k[x] /= std::sqrt(nk + 1e-6);
        q[x] *= p.f("scale");
      }
      const double b = r.in.at("beta")[row];
      for (int64_t x = 0; x < dk; ++x)
        for (int64_t z = 0; z < dk; ++z) M[x * dk + z] = (x == z) - b * k[x] * k[z];
      for (int64_t x = 0; x < dk; ++x)
        for (int64_t y = 0; y < dv; ++y) {
          double s = b * k[x] * r.in.at("v")[row * dv + y];
          for (int64_t z = 0; z < dk; ++z) s += M[x * dk + z] * a[z] * S[z * dv + y];
          T[x * dv + y] = s;
        }
      S = T;
      for (int64_t y = 0; y < dv; ++y) {
        double s = 0;
        for (int64_t x = 0; x < dk; ++x) s += q[x] * S[x * dv + y];
        o[row * dv + y] = s;
      }
    }
    if (final_state) std::copy(S.begin(), S.end(), final_state->begin() + bh * dk * dv);
  }
  return o;
}

TEST(Kda, ReferenceMatchesMatrixOracle) {
  for (const char* gate : {"given", "softplus"})
    for (const char* regime : {"mild", "strong"}) {
      KRun r = make_run("kda", {{"batch", 2},
                                {"heads", 2},
                                {"head_dim", 12},
                                {"value_dim", 9},
                                {"seq_len", 40},
                                {"gate", gate},
                                {"gate_regime", regime},
                                {"initial_state", true}});
      std::vector<double> S;
      const std::vector<double> o = oracle(r, &S);
      TensorMap ref = forward(r, Path::Reference);
      // float32 inputs and outputs around float64 arithmetic: 1e-6.
      EXPECT_LE(rel_error(ref.at("out"), o), 1e-6) << gate << regime;
      EXPECT_LE(rel_error(ref.at("final_state"), S), 1e-6) << gate << regime;
    }
}

// Spec §5 / §2.7-3: g = 0 is DeltaNet. Delta-rule oracle (fla naive_delta_rule, float64):
// S ← S + β k (v - Sᵀk)ᵀ, o = Sᵀ(scale·q), with keys L2-normalised beforehand and l2norm off.
TEST(Kda, ZeroDecayIsDeltaNet) {
  const int64_t H = 3, L = 150, dk = 24, dv = 20;
  KRun r = make_run("kda", {{"heads", H},
                            {"head_dim", dk},
                            {"value_dim", dv},
                            {"seq_len", L},
                            {"l2norm", false},
                            {"chunk_size", 32}});
  r.in["g"].fill(0.0f);
  for (const char* n : {"q", "k"})
    for (int64_t row = 0; row < H * L; ++row) {
      double ss = 0;
      for (int64_t x = 0; x < dk; ++x) ss += double(r.in[n][row * dk + x]) * r.in[n][row * dk + x];
      for (int64_t x = 0; x < dk; ++x) r.in[n][row * dk + x] /= float(std::sqrt(ss));
    }
  std::vector<double> o(H * L * dv), S(dk * dv);
  for (int64_t h = 0; h < H; ++h) {
    std::fill(S.begin(), S.end(), 0.0);
    for (int64_t t = 0; t < L; ++t) {
      const int64_t row = h * L + t;
      const float* k = &r.in["k"][row * dk];
      const float* q = &r.in["q"][row * dk];
      const double b = r.in["beta"][row];
      for (int64_t y = 0; y < dv; ++y) {
        double pred = 0;
        for (int64_t x = 0; x < dk; ++x) pred += S[x * dv + y] * k[x];
        const double u = b * (r.in["v"][row * dv + y] - pred);
        double acc = 0;
        for (int64_t x = 0; x < dk; ++x) {
          S[x * dv + y] += k[x] * u;
          acc += r.params.f("scale") * q[x] * S[x * dv + y];
        }
        o[row * dv + y] = acc;
      }
    }
  }
  for (const char* form : {"chunked", "recurrent"}) {
    KRun f = r;
    f.params.set("form", std::string(form));
    EXPECT_LE(rel_error(forward(f, Path::Fast).at("out"), o), 1e-4) << form;
  }
  EXPECT_LE(rel_error(forward(r, Path::Reference).at("out"), o), 1e-6);
}

// Spec §2.7-2: β = 0 is pure decay of S0: o_t = scale·(q̂_t ⊙ e^{P_t})ᵀ S0, S_L = Diag(e^{P_L}) S0.
TEST(Kda, ZeroBetaIsPureDecay) {
  const int64_t H = 2, L = 100, d = 16;
  for (const char* regime : {"mild", "strong"}) {
    KRun r = make_run("kda", {{"heads", H},
                              {"head_dim", d},
                              {"seq_len", L},
                              {"initial_state", true},
                              {"gate_regime", regime}});
    r.in["beta"].fill(0.0f);
    std::vector<double> o(H * L * d), S(H * d * d);
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> P(d, 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = h * L + t;
        double nq = 0;
        for (int64_t x = 0; x < d; ++x) {
          P[x] += r.in["g"][row * d + x];
          nq += double(r.in["q"][row * d + x]) * r.in["q"][row * d + x];
        }
        for (int64_t y = 0; y < d; ++y) {
          double acc = 0;
          for (int64_t x = 0; x < d; ++x)
            acc += r.in["q"][row * d + x] * std::exp(P[x]) *
                   r.in["initial_state"][(h * d + x) * d + y];
          o[row * d + y] = r.params.f("scale") * acc / std::sqrt(nq + 1e-6);
        }
      }
      for (int64_t x = 0; x < d; ++x)
        for (int64_t y = 0; y < d; ++y)
          S[(h * d + x) * d + y] = std::exp(P[x]) * r.in["initial_state"][(h * d + x) * d + y];
    }
    for (const char* form : {"chunked", "recurrent"}) {
      KRun f = r;
      f.params.set("form", std::string(form));
      TensorMap out = forward(f, Path::Fast);
      EXPECT_LE(rel_error(out.at("out"), o), 1e-5) << form << regime;
      EXPECT_LE(rel_error(out.at("final_state"), S), 1e-5) << form << regime;
    }
  }
}

// Spec §2.7-4: β = 1, |k| = 1, g = 0: the last key reads back exactly its value, S_tᵀ k_t = v_t.
TEST(Kda, DeltaRuleOverwrite) {
  const int64_t L = 45, d = 32;
  for (const char* form : {"chunked", "recurrent"}) {
    KRun r = make_run("kda", {{"heads", 1},
                              {"head_dim", d},
                              {"seq_len", L},
                              {"form", form},
                              {"initial_state", true},
                              {"chunk_size", 16}});
    r.in["g"].fill(0.0f);
    r.in["beta"].fill(1.0f);
    TensorMap out = forward(r, Path::Fast);
    const float* k = &r.in["k"][(L - 1) * d];
    double nk = 0;
    for (int64_t x = 0; x < d; ++x) nk += double(k[x]) * k[x];
    double diff = 0, mx = 0;
    for (int64_t y = 0; y < d; ++y) {
      double s = 0;
      for (int64_t x = 0; x < d; ++x) s += out.at("final_state")[x * d + y] * k[x];
      s /= std::sqrt(nk + 1e-6);
      diff = std::max(diff, std::abs(s - r.in["v"][(L - 1) * d + y]));
      mx = std::max(mx, double(std::abs(r.in["v"][(L - 1) * d + y])));
    }
    EXPECT_LE(diff / mx, 1e-4) << form;
  }
}

// Spec §2.7-5: [0, t) then [t, L) with the carried S equals one run (t not aligned to C).
TEST(Kda, SplitAndCarryEqualsOneRun) {
  const int64_t H = 2, L = 200, d = 32;
  for (int64_t t : {77, 128})
    for (const char* form : {"chunked", "recurrent"}) {
      SCOPED_TRACE(std::string(form) + " t=" + std::to_string(t));
      json g = {
          {"heads", H}, {"head_dim", d}, {"form", form}, {"gate_regime", "strong"}, {"seq_len", L}};
      KRun full = make_run("kda", g);
      TensorMap whole = forward(full, Path::Fast);
      auto slice = [&](const Tensor& src, int64_t a, int64_t n, int64_t w) {
        Tensor out(w ? Shape{1, H, n, w} : Shape{1, H, n});
        const int64_t ww = w ? w : 1;
        for (int64_t h = 0; h < H; ++h)
          std::copy(src.data() + (h * L + a) * ww, src.data() + (h * L + a + n) * ww,
                    out.data() + h * n * ww);
        return out;
      };
      auto cut = [&](KRun& r, int64_t a, int64_t n) {
        for (const char* name : {"q", "k", "v", "g"}) r.in[name] = slice(full.in[name], a, n, d);
        r.in["beta"] = slice(full.in["beta"], a, n, 0);
      };
      g["seq_len"] = t;
      KRun first = make_run("kda", g);
      cut(first, 0, t);
      TensorMap o1 = forward(first, Path::Fast);
      g["seq_len"] = L - t;
      g["initial_state"] = true;
      KRun second = make_run("kda", g);
      cut(second, t, L - t);
      second.in["initial_state"] = o1.at("final_state");
      TensorMap o2 = forward(second, Path::Fast);
      EXPECT_LE(max_rel_error(o1.at("out"), slice(whole.at("out"), 0, t, d)), 1e-5);
      EXPECT_LE(max_rel_error(o2.at("out"), slice(whole.at("out"), t, L - t, d)), 1e-5);
      EXPECT_LE(max_rel_error(o2.at("final_state"), whole.at("final_state")), 1e-5);
    }
}

// Spec §2.5 / §6 per-token core numbers at dk = dv = 128, C = 64; the ragged sum by hand.
TEST(Kda, AnalyticFlopsMatchSpec) {
  auto core = [](json g, Path path = Path::Fast) {
    g["head_dim"] = 128;
    g["seq_len"] = 1024;
    g["heads"] = 1;
    KRun r = make_run("kda", g);
    const CostModel c = r.mech->cost(r.params, path);
    EXPECT_EQ(c.flops_parts.at(0).first, "core");
    return c.flops_parts.at(0).second / 1024;
  };
  EXPECT_DOUBLE_EQ(core({}), 165056);
  EXPECT_DOUBLE_EQ(core({{"form", "recurrent"}}), 115072);
  EXPECT_DOUBLE_EQ(core({}, Path::Reference), 115072);
  // Prologue: l2norm 2(3d+1) + q scaling d per token in the chunked form, + 2d for softplus.
  KRun r = make_run("kda", {{"heads", 1}, {"head_dim", 8}, {"seq_len", 100}, {"gate", "softplus"}});
  const CostModel c = r.mech->cost(r.params, Path::Fast);
  auto f = [](double cc) {
    const double d = 8;
    return 4 * cc * cc * d + 2 * cc * cc * d + cc * (cc - 1) * 2 * d + 6 * cc * d * d + d * d +
           cc * cc + 6 * cc * d + 3 * cc * d;
  };
  EXPECT_DOUBLE_EQ(c.flops_parts.at(0).second, f(64) + f(36));
  EXPECT_DOUBLE_EQ(c.flops_parts.at(1).second, 100 * (2 * (3 * 8 + 1) + 8 + 2 * 8));
  EXPECT_DOUBLE_EQ(c.flops, f(64) + f(36) + 100 * (2 * (3 * 8 + 1) + 8 + 2 * 8));
}

TEST(Kda, IssuedFlopsMatchCounter) {
  for (auto [L, C, Cs] :
       std::vector<std::tuple<int, int, int>>{{300, 64, 16}, {100, 48, 7}, {5, 64, 16}})
    for (const char* form : {"chunked", "chunked-blas", "recurrent"}) {
      const bool use_blas = std::string(form) == "chunked-blas";
      KRun r = make_run("kda", {{"batch", 2},
                                {"heads", 3},
                                {"head_dim", 24},
                                {"value_dim", 40},
                                {"seq_len", L},
                                {"chunk_size", C},
                                {"sub_chunk", Cs},
                                {"form", use_blas ? "chunked" : form},
                                {"kernel", use_blas ? "blas" : "fused"}});
      EXPECT_DOUBLE_EQ(counted_forward_flops(r), r.mech->cost(r.params, Path::Fast).issued_flops)
          << L << " " << C << " " << Cs << " " << form;
    }
}

TEST(Kda, WorkspaceWithinModel) {
  for (const char* form : {"chunked", "chunked-blas", "recurrent"}) {
    const bool use_blas = std::string(form) == "chunked-blas";
    KRun r = make_run("kda", {{"heads", 4},
                              {"seq_len", 300},
                              {"form", use_blas ? "chunked" : form},
                              {"kernel", use_blas ? "blas" : "fused"}});
    const double peak = forward_workspace_peak(r);
    EXPECT_GT(peak, 0);
    EXPECT_LE(peak, r.mech->cost(r.params, Path::Fast).workspace_bytes + 64) << form;
  }
}

TEST(Kda, BadInputsAreRejected) {
  const Mechanism& m = find_mechanism("kda");
  auto rejects = [&](json g, const std::string& needle) {
    try {
      resolve_params(m, g);
      ADD_FAILURE() << "accepted " << g.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  rejects({{"causal", false}}, "causal");
  rejects({{"gate", "sigmoid"}}, "sigmoid");
  rejects({{"gate_regime", "huge"}}, "huge");
  rejects({{"chunk_size", 0}}, "chunk_size");
  rejects({{"lower_bound", 1}}, "lower_bound");
  rejects({{"form", "parallel"}}, "parallel");
  KRun r = make_run("kda", {{"heads", 2}, {"seq_len", 8}, {"gate", "softplus"}});
  r.in["dt_bias"] = Tensor({3, 64});
  Workspace ws;
  EXPECT_THROW(run_forward(*r.mech, r.params, r.in, Path::Fast, ws), InputError);
}

}  // namespace
}  // namespace kt::test
