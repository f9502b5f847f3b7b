// mla (DeepSeek-V2 multi-head latent attention): fast path (naive and absorbed forms) vs the
// reference over shapes, the reference vs a float64 oracle, naive == absorbed, RoPE (relative
// property, interleaved pairs), causal leakage, the cost model (issued FLOPs = counted GEMM FLOPs,
// analytic FLOPs, exact workspace, KV bytes at DeepSeek-V2's sizes), bad input.
#include <cmath>
#include <map>
#include <vector>

#include "kernels/blas.hpp"
#include "kernels/rope.hpp"
#include "test_util.hpp"

namespace kt {
namespace {

using nlohmann::json;
using test::make_run;

json with_form(json g, const std::string& form) {
  g["form"] = form;
  return g;
}

// ----- fast path (both forms) equals reference over many shapes ------------------------------
struct MlaCase {
  json given;
};

void PrintTo(const MlaCase& c, std::ostream* os) {
  *os << test::case_name("mla", c.given);
}

class MlaFastVsReference : public ::testing::TestWithParam<MlaCase> {};

TEST_P(MlaFastVsReference, Agree) {
  test::expect_fast_matches_reference("mla", GetParam().given);
}

std::vector<MlaCase> mla_cases() {
  std::vector<MlaCase> cases;
  for (int64_t L : test::test_lengths())
    for (int64_t H : {3, 5})
      for (bool causal : {false, true})
        for (int64_t q_rank : {0, 24})
          for (const char* form : {"naive", "absorbed"})
            cases.push_back({{{"seq_len", L},
                              {"heads", H},
                              {"head_dim", 16},
                              {"q_rank", q_rank},
                              {"batch", 2},
                              {"causal", causal},
                              {"form", form}}});
  // Odd widths, model dim unrelated to heads, small tiles that do not divide L (the absorbed form
  // stacks 5 heads x 16 positions per tile), no RoPE part at all.
  for (const char* form : {"naive", "absorbed"}) {
    cases.push_back({{{"seq_len", 77},
                      {"heads", 5},
                      {"nope_dim", 12},
                      {"rope_dim", 6},
                      {"kv_rank", 40},
                      {"q_rank", 20},
                      {"model_dim", 50},
                      {"block_rows", 24},
                      {"block_k", 20},
                      {"form", form}}});
    cases.push_back({{{"seq_len", 50},
                      {"heads", 4},
                      {"head_dim", 16},
                      {"rope_dim", 0},
                      {"causal", false},
                      {"form", form}}});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(MlaShapes, MlaFastVsReference, ::testing::ValuesIn(mla_cases()));

// ----- reference (and fast) against a float64 oracle written from the definitions -------------
std::vector<double> oracle(const test::Run& r) {
  const Params& p = r.params;
  const int64_t B = p.i("batch"), L = p.i("seq_len"), D = p.i("model_dim"), H = p.i("heads"),
                n = p.i("nope_dim"), dr = p.i("rope_dim"), c = p.i("kv_rank"), qr = p.i("q_rank");
  const bool causal = p.b("causal");
  const double scale = 1 / std::sqrt(double(n + dr));
  auto W = [&](const char* name) -> const Tensor& { return r.in.at(name); };
  // y = v · w[:, col0 .. col0 + m) for w [rows(v), ld].
  auto mul = [](const std::vector<double>& v, const Tensor& w, int64_t col0, int64_t m) {
    const int64_t ld = w.dim(1);
    std::vector<double> y(m, 0.0);
    for (size_t i = 0; i < v.size(); ++i)
      for (int64_t o = 0; o < m; ++o) y[o] += v[i] * double(w[int64_t(i) * ld + col0 + o]);
    return y;
  };
  auto rms = [](std::vector<double> v, const Tensor& g) {
    double ss = 0;
    for (double e : v) ss += e * e;
    const double inv = 1 / std::sqrt(ss / double(v.size()) + 1e-6);
    for (size_t i = 0; i < v.size(); ++i) v[i] *= inv * g[int64_t(i)];
    return v;
  };
  auto rope = [](std::vector<double> v, int64_t pos) {
    const int64_t d = int64_t(v.size());
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = double(pos) * std::pow(10000.0, -2.0 * double(i) / double(d));
      const double x0 = v[2 * i], x1 = v[2 * i + 1];
      v[2 * i] = x0 * std::cos(a) - x1 * std::sin(a);
      v[2 * i + 1] = x0 * std::sin(a) + x1 * std::cos(a);
    }
    return v;
  };
  std::vector<double> out(B * L * D, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    // Per position: q[h] (width n + dr), k[h] (width n + dr), v[h] (width n).
    std::vector<std::vector<std::vector<double>>> q(L), k(L), v(L);
    for (int64_t t = 0; t < L; ++t) {
      std::vector<double> x(D);
      for (int64_t i = 0; i < D; ++i) x[i] = r.in.at("x")[(b * L + t) * D + i];
      const std::vector<double> src = qr > 0 ? rms(mul(x, W("w_dq"), 0, qr), W("q_norm")) : x;
      const std::vector<double> lat = rms(mul(x, W("w_dkv"), 0, c), W("kv_norm"));
      const std::vector<double> kr = rope(mul(x, W("w_kr"), 0, dr), t);
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> qh = mul(src, W("w_uq"), h * n, n);
        const std::vector<double> qrh = rope(mul(src, W("w_qr"), h * dr, dr), t);
        qh.insert(qh.end(), qrh.begin(), qrh.end());
        std::vector<double> kh = mul(lat, W("w_uk"), h * n, n);
        kh.insert(kh.end(), kr.begin(), kr.end());
        q[t].push_back(qh);
        k[t].push_back(kh);
        v[t].push_back(mul(lat, W("w_uv"), h * n, n));
      }
    }
    for (int64_t t = 0; t < L; ++t) {
      std::vector<double> ctx(H * n, 0.0);
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> s(L, -INFINITY);
        double m = -INFINITY;
        for (int64_t j = 0; j < L; ++j) {
          if (causal && j > t) continue;
          double dot = 0;
          for (int64_t e = 0; e < n + dr; ++e) dot += q[t][h][e] * k[j][h][e];
          s[j] = scale * dot;
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int64_t j = 0; j < L; ++j)
          if (s[j] != -INFINITY) l += std::exp(s[j] - m);
        for (int64_t j = 0; j < L; ++j)
          if (s[j] != -INFINITY)
            for (int64_t e = 0; e < n; ++e) ctx[h * n + e] += std::exp(s[j] - m) / l * v[j][h][e];
      }
      const std::vector<double> o = mul(ctx, W("w_o"), 0, D);
      for (int64_t i = 0; i < D; ++i) out[(b * L + t) * D + i] = o[i];
    }
  }
  return out;
}

TEST(MlaReference, MatchesFloat64Oracle) {
  for (int64_t q_rank : {0, 5})
    for (bool causal : {false, true}) {
      auto r = make_run("mla", {{"batch", 2},
                                {"seq_len", 9},
                                {"heads", 3},
                                {"nope_dim", 4},
                                {"rope_dim", 6},
                                {"kv_rank", 7},
                                {"q_rank", q_rank},
                                {"model_dim", 10},
                                {"causal", causal}});
      const std::vector<double> want = oracle(r);
      for (const char* form : {"reference", "naive", "absorbed"}) {
        test::Run run = r;
        const bool ref = std::string(form) == "reference";
        if (!ref) run.params.set("form", std::string(form));
        const Tensor o = test::forward(run, ref ? Path::Reference : Path::Fast).at("out");
        double err = 0, mx = 0;
        for (int64_t i = 0; i < o.numel(); ++i) {
          err = std::max(err, std::abs(o[i] - want[i]));
          mx = std::max(mx, std::abs(want[i]));
        }
        EXPECT_LE(err / mx, 1e-5) << form << " q_rank " << q_rank << " causal " << causal;
      }
    }
}

// ----- the two forms agree --------------------------------------------------------------------
TEST(MlaForms, NaiveEqualsAbsorbed) {
  for (const json& g : {json{{"seq_len", 130}, {"heads", 4}, {"head_dim", 32}, {"q_rank", 96}},
                        json{{"seq_len", 65}, {"heads", 6}, {"head_dim", 16}, {"causal", false}},
                        json{{"seq_len", 1}, {"heads", 2}, {"head_dim", 16}},
                        json{{"seq_len", 200},
                             {"heads", 8},
                             {"nope_dim", 32},
                             {"rope_dim", 16},
                             {"kv_rank", 128},
                             {"q_rank", 96},
                             {"model_dim", 160},
                             {"batch", 2}}}) {
    const TensorMap a = test::forward(make_run("mla", with_form(g, "naive")), Path::Fast);
    const TensorMap b = test::forward(make_run("mla", with_form(g, "absorbed")), Path::Fast);
    EXPECT_LE(max_rel_error(b, a), 1e-5) << g.dump();  // spec §6 tests: relative 1e-5
  }
}

// ----- RoPE -----------------------------------------------------------------------------------
// Pair i = (x[2i], x[2i+1]) rotated by t·10000^(-2i/dim) (not the rotate-half pairs (i, i+d/2)).
TEST(MlaRope, InterleavedPairConvention) {
  const int64_t dim = 8, t = 5;
  std::vector<float> x = {1, 0, 0, 1, 2, 3, 0, 0};
  std::vector<float> ct((t + 1) * dim / 2), st((t + 1) * dim / 2);
  rope_table(t + 1, dim, 10000.0, 0, ct.data(), st.data());
  // Apply the row of position t: a batch of one vector at position t via the table offset.
  rope_apply(x.data(), 1, 1, 1, dim, dim, dim, 0, ct.data() + t * dim / 2, st.data() + t * dim / 2,
             1);
  auto angle = [&](int i) { return double(t) * std::pow(10000.0, -2.0 * i / dim); };
  const double a0 = angle(0), a1 = angle(1), a2 = angle(2);
  const std::vector<double> want = {std::cos(a0),
                                    std::sin(a0),
                                    -std::sin(a1),
                                    std::cos(a1),
                                    2 * std::cos(a2) - 3 * std::sin(a2),
                                    2 * std::sin(a2) + 3 * std::cos(a2),
                                    0,
                                    0};
  for (int64_t i = 0; i < dim; ++i) EXPECT_NEAR(x[i], want[i], 1e-6) << i;
  // Position 0 is the identity.
  std::vector<float> y = {0.5f, -1, 2, 3, 4, 5, 6, 7}, y0 = y;
  rope_apply(y.data(), 1, 1, 1, dim, dim, dim, 0, ct.data(), st.data(), 1);
  EXPECT_EQ(y, y0);
}

// ⟨RoPE_s(q), RoPE_t(k)⟩ depends only on s − t: shifting both positions by Δ changes nothing.
TEST(MlaRope, ScoresDependOnlyOnRelativePosition) {
  const int64_t dim = 16;
  std::vector<float> q0(dim), k0(dim);
  for (int64_t i = 0; i < dim; ++i) q0[i] = std::sin(1.3 * i + 0.2), k0[i] = std::cos(0.7 * i);
  auto score = [&](int64_t s, int64_t t) {
    std::vector<float> q = q0, k = k0, c(dim / 2), sn(dim / 2);
    rope_table(1, dim, 10000.0, s, c.data(), sn.data());
    rope_apply(q.data(), 1, 1, 1, dim, dim, dim, 0, c.data(), sn.data(), 1);
    rope_table(1, dim, 10000.0, t, c.data(), sn.data());
    rope_apply(k.data(), 1, 1, 1, dim, dim, dim, 0, c.data(), sn.data(), 1);
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += double(q[i]) * k[i];
    return dot;
  };
  for (auto [s, t] : std::vector<std::pair<int64_t, int64_t>>{{3, 10}, {10, 3}, {7, 7}, {0, 50}}) {
    const double base = score(s, t);
    for (int64_t delta : {1, 17, 100, 1000})
      EXPECT_NEAR(score(s + delta, t + delta), base, 2e-5) << s << " " << t << " +" << delta;
  }
  EXPECT_GT(std::abs(score(3, 10) - score(3, 11)), 1e-3);  // and the offset does matter
}

// ----- causal leakage (§0.6 G9) ---------------------------------------------------------------
TEST(MlaCausal, NoLeakage) {
  const int64_t L = 40, t = 17, D = 48;
  for (int64_t q_rank : {0, 20}) {
    auto r = make_run("mla", {{"seq_len", L}, {"heads", 3}, {"head_dim", 16}, {"q_rank", q_rank}});
    ASSERT_EQ(r.params.i("model_dim"), D);
    ASSERT_TRUE(r.params.b("causal"));  // the default
    auto p = r;
    for (int64_t i = (t + 1) * D; i < L * D; ++i) p.in["x"][i] += 3.0f;
    for (const char* form : {"reference", "naive", "absorbed"}) {
      const bool ref = std::string(form) == "reference";
      if (!ref) r.params.set("form", std::string(form)), p.params.set("form", std::string(form));
      const Path path = ref ? Path::Reference : Path::Fast;
      const Tensor a = test::forward(r, path).at("out"), b = test::forward(p, path).at("out");
      for (int64_t i = 0; i < (t + 1) * D; ++i) ASSERT_EQ(a[i], b[i]) << form << " " << i;
      bool changed = false;
      for (int64_t i = (t + 1) * D; i < L * D; ++i) changed |= a[i] != b[i];
      EXPECT_TRUE(changed) << form;
    }
  }
}

// ----- cost model -----------------------------------------------------------------------------
TEST(MlaCost, IssuedFlopsEqualCountedGemmFlops) {
  for (const json& g :
       {json{{"seq_len", 100}, {"heads", 3}, {"head_dim", 16}},
        json{{"seq_len", 100}, {"heads", 5}, {"head_dim", 16}, {"q_rank", 24}, {"causal", false}},
        json{{"seq_len", 129},
             {"heads", 4},
             {"nope_dim", 12},
             {"rope_dim", 6},
             {"kv_rank", 40},
             {"q_rank", 20},
             {"model_dim", 50},
             {"batch", 2},
             {"block_rows", 24},
             {"block_k", 20}},
        json{{"seq_len", 33}, {"heads", 2}, {"head_dim", 16}, {"rope_dim", 0}}})
    for (const char* form : {"naive", "absorbed"}) {
      auto r = make_run("mla", with_form(g, form));
      const CostModel c = r.mech->cost(r.params, Path::Fast);
      EXPECT_EQ(test::counted_forward_flops(r), c.issued_flops) << form << " " << g.dump();
      EXPECT_DOUBLE_EQ(test::flops_parts_sum(c), c.flops) << form;
    }
}

TEST(MlaCost, AnalyticFlops) {
  // B = 1, L = 10, H = 2, d_h = 4, d_r = 2, d_c = 8, no query compression, D = 6, non-causal.
  const json g = {{"seq_len", 10}, {"heads", 2},     {"nope_dim", 4},   {"rope_dim", 2},
                  {"kv_rank", 8},  {"model_dim", 6}, {"causal", false}, {"head_dim", 4}};
  const double q_proj = 2 * 10 * 6 * 2 * 6, kv_down = 2 * 10 * 6 * 10, out = 2 * 10 * 2 * 4 * 6;
  auto n = make_run("mla", with_form(g, "naive"));
  const CostModel cn = n.mech->cost(n.params, Path::Fast);
  // kv_up 4·N·d_c·H·d_h; core 2·B·H·L²·((d_h + d_r) + d_h)
  EXPECT_EQ(cn.flops, q_proj + kv_down + 4 * 10 * 8 * 2 * 4 + 2 * 2 * 100 * (6 + 4) + out);
  EXPECT_EQ(cn.issued_flops, cn.flops);  // one tile covers everything
  auto a = make_run("mla", with_form(g, "absorbed"));
  const CostModel ca = a.mech->cost(a.params, Path::Fast);
  // q_absorb, v_up 2·N·H·d_h·d_c each; core 2·B·H·L²·((d_c + d_r) + d_c)
  EXPECT_EQ(ca.flops, q_proj + kv_down + 2 * 1280 + 2 * 2 * 100 * (10 + 8) + out);
  EXPECT_NE(cn.form, ca.form);
  EXPECT_EQ(n.mech->cost(n.params, Path::Reference).flops, cn.flops);  // the reference is naive
}

TEST(MlaCost, WorkspaceIsExact) {
  for (int64_t q_rank : {0, 24})
    for (const char* form : {"naive", "absorbed"}) {
      auto r = make_run("mla", {{"seq_len", 70},
                                {"heads", 3},
                                {"head_dim", 16},
                                {"q_rank", q_rank},
                                {"batch", 2},
                                {"form", form}});
      for (Path path : {Path::Fast, Path::Reference}) {
        EXPECT_EQ(test::forward_workspace_peak(r, path),
                  r.mech->cost(r.params, path).workspace_bytes)
            << form << " " << path_name(path) << " q_rank " << q_rank;
      }
    }
}

// At DeepSeek-V2's sizes the cache is d_c + d_h^R = 576 floats per token and layer, against
// 2·H·d_h = 32,768 for MHA (56.9x). Only the parameters are resolved (no 600M-weight inputs).
TEST(MlaCost, KvBytesAtDeepSeekV2Sizes) {
  const json v2 = {{"heads", 128},   {"nope_dim", 128},   {"rope_dim", 64}, {"kv_rank", 512},
                   {"q_rank", 1536}, {"model_dim", 5120}, {"seq_len", 512}};
  const Mechanism& m = find_mechanism("mla");
  for (const char* form : {"naive", "absorbed"}) {
    const Params p = resolve_params(m, with_form(v2, form));
    EXPECT_EQ(m.cost(p, Path::Fast).kv_bytes_per_token, 4.0 * 576) << form;
    EXPECT_DOUBLE_EQ(p.f("scale"), 1 / std::sqrt(192.0));  // not 1/sqrt(576) in absorbed form
  }
  const Params p = resolve_params(m, v2);
  const Params mha = resolve_params(find_mechanism("mha"), {{"heads", 128}, {"head_dim", 128}});
  const double mha_bytes = find_mechanism("mha").cost(mha, Path::Fast).kv_bytes_per_token;
  EXPECT_EQ(mha_bytes, 4.0 * 2 * 128 * 128);
  EXPECT_NEAR(mha_bytes / m.cost(p, Path::Fast).kv_bytes_per_token, 56.89, 0.01);
  // Shapes of DeepSeek-V2 (236B): w_uq [d_c', H·d_h], w_qr [d_c', H·d_h^R], ...
  std::map<std::string, Shape> shapes;
  for (const auto& s : m.inputs(p)) shapes[s.name] = s.shape;
  EXPECT_EQ(shapes["w_uq"], (Shape{1536, 16384}));
  EXPECT_EQ(shapes["w_qr"], (Shape{1536, 8192}));
  EXPECT_EQ(shapes["w_dkv"], (Shape{5120, 512}));
  EXPECT_EQ(shapes["w_kr"], (Shape{5120, 64}));
  EXPECT_EQ(shapes["w_uk"], (Shape{512, 16384}));
  EXPECT_EQ(shapes["w_uv"], (Shape{512, 16384}));
  EXPECT_EQ(shapes["w_o"], (Shape{16384, 5120}));
  EXPECT_EQ(m.inputs(p).size(), 11u);  // x, w_dq, q_norm, w_uq, w_qr, w_dkv, w_kr, kv_norm, ...
  // V2-Lite has no query compression: w_uq and w_qr read x directly, no w_dq / q_norm.
  json lite = v2;
  lite["heads"] = 16, lite["q_rank"] = 0, lite["model_dim"] = 2048;
  const Params pl = resolve_params(m, lite);
  EXPECT_EQ(m.inputs(pl).size(), 9u);
  for (const auto& s : m.inputs(pl)) shapes[s.name] = s.shape;
  EXPECT_EQ(shapes["w_uq"], (Shape{2048, 2048}));
}

// ----- parameters -----------------------------------------------------------------------------
TEST(MlaParams, DerivedDefaults) {
  const Params p = resolve_params(find_mechanism("mla"), {{"heads", 8}, {"head_dim", 64}});
  EXPECT_EQ(p.i("nope_dim"), 64);
  EXPECT_EQ(p.i("rope_dim"), 32);
  EXPECT_EQ(p.i("kv_rank"), 256);
  EXPECT_EQ(p.i("q_rank"), 0);
  EXPECT_EQ(p.i("model_dim"), 512);
  EXPECT_TRUE(p.b("causal"));
  EXPECT_EQ(p.s("form"), "naive");
  EXPECT_DOUBLE_EQ(p.f("scale"), 1 / std::sqrt(96.0));
}

void expect_mla_error(const json& given, const std::string& field, const std::string& fragment) {
  try {
    resolve_params(find_mechanism("mla"), given);
    ADD_FAILURE() << "no error for " << given.dump();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(MlaParams, BadInputNamesTheFieldAndWhatIsAllowed) {
  expect_mla_error({{"rope_dim", 5}}, "rope_dim", "must be even");
  expect_mla_error({{"rope_dim", 5}}, "rope_dim", "allowed: an even integer");
  expect_mla_error({{"head_dim", 6}}, "rope_dim", "(head_dim / 2) must be even");
  expect_mla_error({{"form", "fast"}}, "form", "one of naive, absorbed");
  expect_mla_error({{"q_rank", -1}}, "q_rank", "integer in [0,");
  expect_mla_error({{"kv_rank", 0}}, "kv_rank", "integer in [1,");
  expect_mla_error({{"kv_rnak", 8}}, "kv_rnak", "did you mean 'kv_rank'");
}

}  // namespace
}  // namespace kt
