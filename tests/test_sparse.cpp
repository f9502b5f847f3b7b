// Tests of `sparse` (Sparse Transformer, mechanisms-softmax.md §3, decisions.md): fast path vs the
// dense masked reference over many shapes, the reference vs a float64 oracle written here with its
// own set definitions, exact pair counts vs brute force and the spec's closed forms, the FLOP
// counter, workspace, the validity criterion (§4.2), special cases and the generic tests G3-G10.
#include <cmath>
#include <functional>

#include "kernels/blas.hpp"
#include "test_util.hpp"

namespace kt::test {
namespace {

using SRun = kt::test::Run;  // inside TEST bodies `Run` names testing::Test::Run

// Independent set definitions (0-based, decisions.md).
struct Sets {
  bool strided, causal, merged;
  int64_t l, c;
  bool a1(int64_t i, int64_t j) const {
    if (causal && j > i) return false;
    return strided ? std::abs(i - j) <= l : j / l == i / l;
  }
  bool a2(int64_t i, int64_t j) const {
    if (causal && j > i) return false;
    return strided ? std::abs(i - j) % l == 0 : j % l >= l - c;
  }
  bool allowed(int64_t h, int64_t i, int64_t j) const {
    return merged ? a1(i, j) || a2(i, j) : (h % 2 == 0 ? a1(i, j) : a2(i, j));
  }
};

Sets sets_of(const Params& p) {
  return {p.s("pattern") == "strided", p.b("causal"), p.s("combine") == "merged", p.i("stride"),
          p.i("c")};
}

double brute_pairs(const Params& p) {
  const Sets s = sets_of(p);
  const int64_t L = p.i("seq_len");
  double n = 0;
  for (int64_t h = 0; h < p.i("heads"); ++h)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < L; ++j) n += s.allowed(h, i, j);
  return n * p.i("batch");
}

double pair_flops(const Params& p, double pairs) {
  return 2 * pairs * double(p.i("head_dim") + p.i("value_dim"));
}

// Float64 oracle: naive loops over the brute-force mask.
Tensor oracle(const Run& r) {
  const Params& p = r.params;
  const Sets s = sets_of(p);
  const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), d = p.i("head_dim"),
                dv = p.i("value_dim");
  const double scale = p.f("scale");
  const Tensor &q = r.in.at("q"), &k = r.in.at("k"), &v = r.in.at("v");
  Tensor out({B, H, L, dv});
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < L; ++i) {
      std::vector<double> sc(L, -INFINITY);
      double m = -INFINITY;
      for (int64_t j = 0; j < L; ++j) {
        if (!s.allowed(bh % H, i, j)) continue;
        double dot = 0;
        for (int64_t c = 0; c < d; ++c)
          dot += double(q[(bh * L + i) * d + c]) * k[(bh * L + j) * d + c];
        sc[j] = dot * scale;
        m = std::max(m, sc[j]);
      }
      double l = 0;
      std::vector<double> acc(dv, 0);
      for (int64_t j = 0; j < L; ++j) {
        if (sc[j] == -INFINITY) continue;
        const double e = std::exp(sc[j] - m);
        l += e;
        for (int64_t c = 0; c < dv; ++c) acc[c] += e * v[(bh * L + j) * dv + c];
      }
      for (int64_t c = 0; c < dv; ++c) out[(bh * L + i) * dv + c] = float(acc[c] / l);
    }
  return out;
}

// Fast vs reference: `out` normwise within the mechanism's tolerance; `lse` equal to within
// 1e-4 absolute (an lse is O(log L); float32 tile sums vs double sums differ by ~1e-6) and -inf in
// exactly the same rows (alternate fixed causal heads: rows before the first summary cell have no
// key, so out = 0 and lse = -inf; the shared max_rel_error treats -inf as an error).
void expect_match(const nlohmann::json& given) {
  SCOPED_TRACE(given.dump());
  SRun r = make_run("sparse", given);
  const TensorMap fast = forward(r, Path::Fast), ref = forward(r, Path::Reference);
  ASSERT_TRUE(all_finite(fast));
  EXPECT_LE(rel_error(fast.at("out"), ref.at("out")), r.mech->tolerance(r.params));
  const Tensor &lf = fast.at("lse"), &lr = ref.at("lse");
  for (int64_t t = 0; t < lr.numel(); ++t) {
    if (lr[t] == -INFINITY) {
      ASSERT_EQ(lf[t], -INFINITY) << t;
      for (int64_t c = 0; c < r.params.i("value_dim"); ++c)
        ASSERT_EQ(fast.at("out")[t * r.params.i("value_dim") + c], 0.0f);
    } else {
      ASSERT_NEAR(lf[t], lr[t], 1e-4) << t;
    }
  }
}

TEST(Sparse, FastMatchesReferenceOverShapes) {
  for (const char* kernel : {"fused", "blas"})
    for (const char* pattern : {"strided", "fixed"})
      for (const char* combine : {"merged", "alternate"})
        for (bool causal : {true, false})
          for (int64_t L : test_lengths())
            for (int64_t stride : {4, 9, 128}) {
              if (L < 64 && stride != 4) continue;  // stride >= L: all clamp to L
              const int64_t H = L % 2 ? 3 : 5, d = L == 64 ? 80 : (L == 100 ? 64 : 16);
              expect_match({{"batch", 2},
                            {"heads", H},
                            {"head_dim", d},
                            {"seq_len", L},
                            {"pattern", pattern},
                            {"combine", combine},
                            {"causal", causal},
                            {"stride", stride},
                            {"c", std::min<int64_t>(3, stride)},
                            {"kernel", kernel},
                            {"seed", L}});
            }
}

TEST(Sparse, FastMatchesReferenceSmallTilesAndValueDim) {
  // Tiles smaller than the stride (several key blocks per tile, blocks partially masked) and
  // tiles that straddle fixed blocks; dv != d; both tile kernels.
  for (const char* kernel : {"fused", "blas"})
    for (const char* pattern : {"strided", "fixed"})
      for (bool causal : {true, false})
        for (const char* combine : {"merged", "alternate"})
          expect_match({{"batch", 2},
                        {"heads", 3},
                        {"head_dim", 16},
                        {"value_dim", 24},
                        {"seq_len", 300},
                        {"pattern", pattern},
                        {"causal", causal},
                        {"combine", combine},
                        {"stride", 40},
                        {"c", 7},
                        {"block_rows", 16},
                        {"block_k", 24},
                        {"kernel", kernel}});
}

TEST(Sparse, ReferenceMatchesFloat64Oracle) {
  // Both accumulate in double (the reference rounds scores to float): well below 1e-5 (G1).
  for (const char* pattern : {"strided", "fixed"})
    for (const char* combine : {"merged", "alternate"})
      for (bool causal : {true, false}) {
        SRun r = make_run("sparse", {{"batch", 1},
                                     {"heads", 2},
                                     {"head_dim", 8},
                                     {"seq_len", 37},
                                     {"pattern", pattern},
                                     {"combine", combine},
                                     {"causal", causal},
                                     {"stride", 5},
                                     {"c", 2}});
        const Tensor want = oracle(r);
        EXPECT_LE(rel_error(forward(r, Path::Reference).at("out"), want), 1e-5);
        EXPECT_LE(rel_error(forward(r, Path::Fast).at("out"), want), 1e-5) << pattern << combine;
      }
}

TEST(Sparse, ExactPairCountsMatchBruteForce) {
  for (const char* pattern : {"strided", "fixed"})
    for (const char* combine : {"merged", "alternate"})
      for (bool causal : {true, false})
        for (int64_t L : {1, 2, 7, 33, 64, 130})
          for (int64_t stride : {1, 3, 8, 16, 200}) {
            SRun r = make_run("sparse", {{"heads", 3},
                                         {"seq_len", L},
                                         {"pattern", pattern},
                                         {"combine", combine},
                                         {"causal", causal},
                                         {"stride", stride},
                                         {"c", std::min<int64_t>(2, stride)}});
            const double want = pair_flops(r.params, brute_pairs(r.params));
            EXPECT_EQ(r.mech->cost(r.params, Path::Fast).flops, want)
                << pattern << " " << combine << " causal=" << causal << " L=" << L
                << " stride=" << stride;
          }
}

TEST(Sparse, PairCountsMatchClosedForms) {
  // Causal merged, L = n·l (mechanisms-softmax.md §3 "Sizes").
  for (int64_t l : {4, 16, 32})
    for (int64_t n : {1, 3, 8}) {
      const double L = double(n * l);
      SRun s = make_run("sparse", {{"heads", 1}, {"seq_len", n * l}, {"stride", l}});
      const double strided = L * l - l * (l - 1) / 2.0 + l * n * (n - 1) / 2.0;
      EXPECT_EQ(s.mech->cost(s.params, Path::Fast).flops, pair_flops(s.params, strided));
      const int64_t c = l / 4;
      SRun f = make_run(
          "sparse",
          {{"heads", 1}, {"seq_len", n * l}, {"stride", l}, {"pattern", "fixed"}, {"c", c}});
      const double fixed = L * (l + 1) / 2.0 + double(c) * l * n * (n - 1) / 2.0;
      EXPECT_EQ(f.mech->cost(f.params, Path::Fast).flops, pair_flops(f.params, fixed));
    }
}

TEST(Sparse, FlopCounterEqualsIssuedFlops) {
  for (const char* kernel : {"fused", "blas"})
    for (const char* pattern : {"strided", "fixed"})
      for (const char* combine : {"merged", "alternate"})
        for (bool causal : {true, false}) {
          SRun r = make_run("sparse", {{"batch", 2},
                                       {"heads", 3},
                                       {"head_dim", 16},
                                       {"seq_len", 333},
                                       {"pattern", pattern},
                                       {"combine", combine},
                                       {"causal", causal},
                                       {"stride", 24},
                                       {"c", 5},
                                       {"kernel", kernel}});
          const CostModel c = r.mech->cost(r.params, Path::Fast);
          EXPECT_EQ(counted_forward_flops(r), c.issued_flops)
              << kernel << pattern << combine << causal;
          EXPECT_GE(c.issued_flops, c.flops);
        }
}

TEST(Sparse, WorkSharesWithThePatternAndNoQuadraticMemory) {
  // L = 8192, stride 128: the tiles visit at most 1.5x the exact pairs, far below the causal
  // L(L+1)/2 (25.8x fewer exact pairs); workspace is O(L), not O(L²): doubling L at most
  // doubles it (plus the L-independent tile scratch).
  SRun r = make_run("sparse", {{"heads", 1}, {"seq_len", 8192}, {"head_dim", 64}});
  const CostModel c = r.mech->cost(r.params, Path::Fast);
  const double dense = pair_flops(r.params, 8192.0 * 8193 / 2);
  EXPECT_GT(dense / c.flops, 25.0);
  EXPECT_LT(c.issued_flops, 1.5 * c.flops);
  SRun r2 = make_run("sparse", {{"heads", 1}, {"seq_len", 16384}, {"head_dim", 64}});
  EXPECT_LT(r2.mech->cost(r2.params, Path::Fast).workspace_bytes, 2.1 * c.workspace_bytes);
  EXPECT_LT(c.workspace_bytes, 0.2 * 4 * 8192.0 * 8192.0);
}

TEST(Sparse, MeasuredWorkspaceMatchesModel) {
  for (const char* kernel : {"fused", "blas"})
    for (const char* pattern : {"strided", "fixed"})
      for (const char* combine : {"merged", "alternate"}) {
        SRun r = make_run("sparse", {{"batch", 2},
                                     {"heads", 3},
                                     {"head_dim", 16},
                                     {"seq_len", 300},
                                     {"pattern", pattern},
                                     {"combine", combine},
                                     {"stride", 32},
                                     {"c", 4},
                                     {"kernel", kernel}});
        EXPECT_EQ(forward_workspace_peak(r), r.mech->cost(r.params, Path::Fast).workspace_bytes)
            << kernel << pattern << combine;
      }
}

TEST(Sparse, StrideAtLeastLIsDenseCausal) {
  // l >= L: A1 covers every earlier key (strided); fixed with c = l: every key is a summary.
  const nlohmann::json base = {{"batch", 2}, {"heads", 3}, {"head_dim", 16}, {"seq_len", 70}};
  SRun self = make_run(
      "self", {{"batch", 2}, {"heads", 3}, {"head_dim", 16}, {"seq_len", 70}, {"causal", true}});
  const TensorMap want = forward(self, Path::Reference);
  for (auto extra : {nlohmann::json{{"stride", 500}},
                     nlohmann::json{{"pattern", "fixed"}, {"stride", 10}, {"c", 10}}}) {
    nlohmann::json g = base;
    g.update(extra);
    SRun r = make_run("sparse", g);
    EXPECT_LE(max_rel_error(forward(r, Path::Fast), want), 2e-4) << extra.dump();
  }
  EXPECT_EQ(make_run("sparse", {{"seq_len", 70}}).params.i("stride"), 70);  // effective stride
}

TEST(Sparse, ValidityCriterion) {
  // §4.2 with p = 2: every j <= i is reached in at most two steps, j ∈ A1(i) ∪ A2(i) or
  // j ∈ A1(a) for some a ∈ A2(i) (i.e. M2·M1 ∨ M1 ∨ M2 is the full causal mask).
  for (bool strided : {true, false}) {
    const int64_t L = 50, l = 7;
    Sets s{strided, true, true, l, 1};
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        bool ok = s.a1(i, j) || s.a2(i, j);
        for (int64_t a = 0; a < L && !ok; ++a) ok = s.a2(i, a) && s.a1(a, j);
        EXPECT_TRUE(ok) << strided << " " << i << " " << j;
      }
  }
}

TEST(Sparse, ShiftInvarianceAndLargeScores) {
  // G3: k_j += u for every j adds q_i·u to every score of row i: output unchanged.
  SRun r = make_run("sparse", {{"heads", 2}, {"head_dim", 16}, {"seq_len", 200}, {"stride", 16}});
  const TensorMap base = forward(r, Path::Fast);
  Tensor& k = r.in.at("k");
  for (int64_t t = 0; t < k.numel(); ++t) k[t] += float(0.5 + (t % 16) * 0.1);
  EXPECT_LE(rel_error(forward(r, Path::Fast).at("out"), base.at("out")), 1e-4);
  // |scores| ~ 1e4: no inf/NaN, still equal to the reference.
  Tensor& q = r.in.at("q");
  for (int64_t t = 0; t < q.numel(); ++t) q[t] *= 300.0f;
  const TensorMap fast = forward(r, Path::Fast), ref = forward(r, Path::Reference);
  EXPECT_TRUE(all_finite(fast));
  EXPECT_LE(rel_error(fast.at("out"), ref.at("out")), 1e-4);
}

TEST(Sparse, ConstantValues) {
  // G4: v_j = c everywhere gives out = c.
  for (const char* pattern : {"strided", "fixed"}) {
    SRun r = make_run("sparse", {{"heads", 3},
                                 {"seq_len", 150},
                                 {"stride", 16},
                                 {"c", 4},
                                 {"pattern", pattern},
                                 {"causal", false}});
    r.in.at("v").fill(1.25f);
    const Tensor out = forward(r, Path::Fast).at("out");
    for (int64_t t = 0; t < out.numel(); ++t) ASSERT_NEAR(out[t], 1.25f, 2e-6);
  }
}

TEST(Sparse, CausalLeakage) {
  // G9: perturbing positions > t changes no output at positions <= t.
  for (const char* pattern : {"strided", "fixed"}) {
    SRun r = make_run(
        "sparse", {{"heads", 2}, {"seq_len", 120}, {"stride", 10}, {"c", 3}, {"pattern", pattern}});
    const TensorMap base = forward(r, Path::Fast);
    const int64_t t = 57, L = 120, d = 64;
    for (const char* name : {"q", "k", "v"}) {
      Tensor& x = r.in.at(name);
      for (int64_t bh = 0; bh < 2; ++bh)
        for (int64_t i = t + 1; i < L; ++i)
          for (int64_t c = 0; c < d; ++c) x[(bh * L + i) * d + c] = 1e3f;
    }
    const TensorMap got = forward(r, Path::Fast);
    for (int64_t bh = 0; bh < 2; ++bh)
      for (int64_t i = 0; i <= t; ++i)
        for (int64_t c = 0; c < d; ++c)
          ASSERT_EQ(got.at("out")[(bh * L + i) * d + c], base.at("out")[(bh * L + i) * d + c]);
  }
}

TEST(Sparse, SliceIsolation) {
  // G10: NaN in every other (b, h) slice leaves slice (1, 2) unchanged.
  for (const char* pattern : {"strided", "fixed"}) {
    SRun r = make_run("sparse", {{"batch", 2},
                                 {"heads", 3},
                                 {"head_dim", 16},
                                 {"seq_len", 90},
                                 {"stride", 8},
                                 {"c", 2},
                                 {"pattern", pattern}});
    const TensorMap base = forward(r, Path::Fast);
    const int64_t slice = 90 * 16, keep = 1 * 3 + 2;
    for (const char* name : {"q", "k", "v"})
      for (int64_t s = 0; s < 6; ++s)
        if (s != keep)
          for (int64_t t = 0; t < slice; ++t) r.in.at(name)[s * slice + t] = NAN;
    const Tensor got = forward(r, Path::Fast).at("out");
    for (int64_t t = 0; t < slice; ++t)
      ASSERT_EQ(got[keep * slice + t], base.at("out")[keep * slice + t]);
  }
}

TEST(Sparse, Determinism) {
  SRun r = make_run("sparse", {{"heads", 2}, {"seq_len", 100}, {"stride", 8}});
  const Tensor a = forward(r, Path::Fast).at("out"), b = forward(r, Path::Fast).at("out");
  for (int64_t t = 0; t < a.numel(); ++t) ASSERT_EQ(a[t], b[t]);
}

TEST(Sparse, BadInputs) {
  auto message = [](const nlohmann::json& g) {
    try {
      make_run("sparse", g);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"pattern", "fixed"}, {"stride", 16}, {"c", 20}}).find("c = 20"),
            std::string::npos);
  EXPECT_NE(message({{"pattern", "diagonal"}}).find("diagonal"), std::string::npos);
  EXPECT_NE(message({{"combine", "interleaved"}}).find("interleaved"), std::string::npos);
  EXPECT_NE(message({{"stride", 0}}).find("stride"), std::string::npos);
}

}  // namespace
}  // namespace kt::test
