// self, mha, gqa, mqa: fast path vs reference over shapes, reference vs a float64 oracle, the
// invariants of mechanisms-softmax.md §0.6, the GQA/MQA reductions, the FLOP model, bad input.
#include <cmath>

#include "kernels/blas.hpp"
#include "test_util.hpp"

namespace kt {
namespace {

using nlohmann::json;
using test::make_run;

// ----- fast path equals reference over many shapes -------------------------------------------
struct ShapeCase {
  std::string mech;
  json given;
};

void PrintTo(const ShapeCase& c, std::ostream* os) {
  *os << test::case_name(c.mech, c.given);
}

class ExactFastVsReference : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(ExactFastVsReference, Agree) {
  test::expect_fast_matches_reference(GetParam().mech, GetParam().given);
}

std::vector<ShapeCase> exact_cases() {
  std::vector<ShapeCase> cases;
  for (int64_t L : test::test_lengths())
    for (int64_t d : {16, 64, 80})
      for (bool causal : {false, true}) {
        cases.push_back(
            {"self",
             {{"seq_len", L}, {"head_dim", d}, {"heads", 3}, {"batch", 2}, {"causal", causal}}});
        if (d != 64) continue;  // layers: fewer head dims, more head layouts
        cases.push_back(
            {"mha",
             {{"seq_len", L}, {"head_dim", d}, {"heads", 5}, {"batch", 2}, {"causal", causal}}});
        cases.push_back(
            {"gqa",
             {{"seq_len", L}, {"heads", 6}, {"kv_heads", 2}, {"batch", 2}, {"causal", causal}}});
        cases.push_back({"mqa", {{"seq_len", L}, {"heads", 3}, {"causal", causal}}});
      }
  // Value dim != head dim, odd model dim, small tiles that do not divide L.
  cases.push_back({"self",
                   {{"seq_len", 100},
                    {"head_dim", 16},
                    {"value_dim", 24},
                    {"block_rows", 24},
                    {"block_k", 40},
                    {"causal", true}}});
  cases.push_back({"gqa",
                   {{"seq_len", 77},
                    {"heads", 6},
                    {"kv_heads", 3},
                    {"head_dim", 16},
                    {"model_dim", 50},
                    {"block_rows", 30},
                    {"block_k", 20}}});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ExactFastVsReference, ::testing::ValuesIn(exact_cases()));

// ----- reference against a float64 oracle ----------------------------------------------------
TEST(SelfAttention, ReferenceMatchesFloat64Oracle) {
  for (bool causal : {false, true}) {
    auto r =
        make_run("self", {{"seq_len", 37}, {"heads", 2}, {"head_dim", 16}, {"causal", causal}});
    const TensorMap out = test::forward(r, Path::Reference);
    const Tensor &q = r.in["q"], &k = r.in["k"], &v = r.in["v"], &o = out.at("out");
    const int64_t H = 2, L = 37, d = 16;
    const double scale = 1 / std::sqrt(16.0);
    double max_err = 0, max_ref = 0;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> s(L, -INFINITY);
        double m = -INFINITY;
        for (int64_t j = 0; j < L; ++j) {
          if (causal && j > i) continue;
          double dot = 0;
          for (int64_t c = 0; c < d; ++c)
            dot += double(q[(h * L + i) * d + c]) * k[(h * L + j) * d + c];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int64_t j = 0; j < L; ++j) l += std::isinf(s[j]) ? 0 : std::exp(s[j] - m);
        for (int64_t c = 0; c < d; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < L; ++j)
            if (!std::isinf(s[j])) acc += std::exp(s[j] - m) / l * v[(h * L + j) * d + c];
          max_err = std::max(max_err, std::abs(acc - o[(h * L + i) * d + c]));
          max_ref = std::max(max_ref, std::abs(acc));
        }
      }
    EXPECT_LE(max_err / max_ref, 1e-5) << "causal " << causal;  // spec G1
  }
}

// ----- invariants (§0.6) ---------------------------------------------------------------------
// G3: adding c to every score of a row changes nothing, also for |scores| ~ 1e4. Row i's scores
// get + c by setting k's last column to 1 and q's last column to c / scale.
TEST(SelfAttention, ShiftInvariantAndFiniteForHugeScores) {
  for (Path path : {Path::Fast, Path::Reference})
    for (double c : {5.0, 1e4, -1e4}) {
      auto base =
          make_run("self", {{"seq_len", 65}, {"heads", 2}, {"head_dim", 16}, {"causal", true}});
      const int64_t n = 2 * 65;
      for (int64_t r = 0; r < n; ++r) base.in["k"][r * 16 + 15] = 0, base.in["q"][r * 16 + 15] = 0;
      auto shifted = base;
      const double scale = base.params.f("scale");
      for (int64_t r = 0; r < n; ++r)
        shifted.in["k"][r * 16 + 15] = 1, shifted.in["q"][r * 16 + 15] = float(c / scale);
      const TensorMap a = test::forward(base, path), b = test::forward(shifted, path);
      EXPECT_TRUE(test::all_finite(b));
      // The shift costs relative precision c·eps in the scores themselves.
      EXPECT_LE(max_rel_error({{"out", b.at("out")}}, {{"out", a.at("out")}}),
                1e-6 + std::abs(c) * 2e-7)
          << path_name(path) << " c=" << c;
    }
}

TEST(SelfAttention, ConstantValuesGiveTheConstant) {
  auto r = make_run("self", {{"seq_len", 100}, {"heads", 3}, {"causal", true}});
  r.in["v"].fill(2.5f);
  for (Path path : {Path::Fast, Path::Reference}) {
    const Tensor o = test::forward(r, path).at("out");
    for (int64_t i = 0; i < o.numel(); ++i) ASSERT_NEAR(o[i], 2.5f, 2.5e-6f);
  }
}

TEST(SelfAttention, PermutationEquivariance) {
  const int64_t L = 50, d = 16;
  auto r = make_run("self", {{"seq_len", L}, {"heads", 1}, {"head_dim", d}});
  auto p = r;
  auto perm = [](int64_t i) { return (i * 7 + 3) % 50; };  // a bijection on 0..49
  for (int64_t i = 0; i < L; ++i)
    for (int64_t c = 0; c < d; ++c) {
      p.in["k"][perm(i) * d + c] = r.in["k"][i * d + c];
      p.in["v"][perm(i) * d + c] = r.in["v"][i * d + c];
      p.in["q"][perm(i) * d + c] = r.in["q"][i * d + c];
    }
  const Tensor a = test::forward(r, Path::Fast).at("out"),
               b = test::forward(p, Path::Fast).at("out");
  for (int64_t i = 0; i < L; ++i)
    for (int64_t c = 0; c < d; ++c) ASSERT_NEAR(b[perm(i) * d + c], a[i * d + c], 1e-5);
}

TEST(SelfAttention, CausalNoLeakage) {
  const int64_t L = 90, d = 16, t = 40;
  auto r = make_run("self", {{"seq_len", L}, {"heads", 1}, {"head_dim", d}, {"causal", true}});
  auto p = r;
  for (const char* name : {"q", "k", "v"})
    for (int64_t i = (t + 1) * d; i < L * d; ++i) p.in[name][i] += 100.0f;
  for (Path path : {Path::Fast, Path::Reference}) {
    const Tensor a = test::forward(r, path).at("out"), b = test::forward(p, path).at("out");
    for (int64_t i = 0; i < (t + 1) * d; ++i) ASSERT_EQ(a[i], b[i]) << path_name(path);
  }
}

TEST(SelfAttention, SlicesAreIsolatedFromNaNElsewhere) {
  auto r = make_run("self", {{"seq_len", 64}, {"heads", 2}, {"batch", 2}, {"head_dim", 16}});
  auto p = r;
  const int64_t slice = 64 * 16;
  for (const char* name : {"q", "k", "v"})
    for (int64_t i = slice; i < 4 * slice; ++i) p.in[name][i] = NAN;  // all but (b=0, h=0)
  for (Path path : {Path::Fast, Path::Reference}) {
    const Tensor a = test::forward(r, path).at("out"), b = test::forward(p, path).at("out");
    for (int64_t i = 0; i < slice; ++i) ASSERT_EQ(a[i], b[i]) << path_name(path);
  }
}

// ----- the layer family ----------------------------------------------------------------------
TEST(ProjectedAttention, GqaWithGEqualHIsMha) {
  const json g = {
      {"seq_len", 33}, {"heads", 4}, {"kv_heads", 4}, {"causal", true}, {"head_dim", 16}};
  auto a = make_run("gqa", g);
  json m = g;
  m.erase("kv_heads");
  auto b = make_run("mha", m);
  for (Path path : {Path::Fast, Path::Reference})
    EXPECT_EQ(max_rel_error(test::forward(a, path), test::forward(b, path)), 0.0);
}

TEST(ProjectedAttention, MqaIsGqaWithOneGroup) {
  const json g = {{"seq_len", 33}, {"heads", 6}, {"head_dim", 16}};
  auto a = make_run("mqa", g);
  json q = g;
  q["kv_heads"] = 1;
  auto b = make_run("gqa", q);
  for (Path path : {Path::Fast, Path::Reference})
    EXPECT_EQ(max_rel_error(test::forward(a, path), test::forward(b, path)), 0.0);
}

// GQA equals MHA whose K/V heads are copies of the group's head (repeat_interleave, not tile).
TEST(ProjectedAttention, GqaEqualsMhaWithInterleavedKvHeads) {
  const int64_t H = 6, G = 2, d = 8, D = H * d;
  auto gq = make_run("gqa", {{"seq_len", 20}, {"heads", H}, {"kv_heads", G}, {"head_dim", d}});
  auto mh = make_run("mha", {{"seq_len", 20}, {"heads", H}, {"head_dim", d}});
  mh.in["x"] = gq.in["x"], mh.in["w_q"] = gq.in["w_q"], mh.in["w_o"] = gq.in["w_o"];
  for (const char* w : {"w_k", "w_v"})
    for (int64_t r = 0; r < D; ++r)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t c = 0; c < d; ++c)
          mh.in[w][r * H * d + h * d + c] = gq.in[w][r * G * d + (h / (H / G)) * d + c];
  EXPECT_LE(max_rel_error(test::forward(gq, Path::Fast), test::forward(mh, Path::Fast)), 1e-6);
}

// H = 1, identity weights: the layer is SDPA(x, x, x) (x [1,L,d] has the layout of [1,1,L,d]).
TEST(ProjectedAttention, IdentityWeightsReduceToSdpa) {
  const int64_t L = 30, d = 16;
  auto m = make_run("mha", {{"seq_len", L}, {"heads", 1}, {"head_dim", d}, {"causal", true}});
  for (const char* w : {"w_q", "w_k", "w_v", "w_o"}) {
    m.in[w].fill(0);
    for (int64_t i = 0; i < d; ++i) m.in[w][i * d + i] = 1;
  }
  auto s = make_run("self", {{"seq_len", L}, {"heads", 1}, {"head_dim", d}, {"causal", true}});
  for (const char* t : {"q", "k", "v"})
    std::copy(m.in["x"].data(), m.in["x"].data() + L * d, s.in[t].data());
  const Tensor a = test::forward(m, Path::Fast).at("out"),
               b = test::forward(s, Path::Fast).at("out");
  ASSERT_EQ(a.numel(), b.numel());
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_NEAR(a[i], b[i], 1e-6);
}

TEST(ProjectedAttention, KvCacheBytesShowTheSaving) {
  const json g = {{"heads", 8}, {"head_dim", 64}};
  const double mha =
      make_run("mha", g).mech->cost(make_run("mha", g).params, Path::Fast).kv_bytes_per_token;
  auto gq = make_run("gqa", g);  // default G = 2
  auto mq = make_run("mqa", g);
  EXPECT_EQ(gq.params.i("kv_heads"), 2);
  EXPECT_EQ(mha, 4.0 * 2 * 8 * 64);
  EXPECT_EQ(gq.mech->cost(gq.params, Path::Fast).kv_bytes_per_token, mha / 4);
  EXPECT_EQ(mq.mech->cost(mq.params, Path::Fast).kv_bytes_per_token, mha / 8);
}

// ----- the FLOP model against the BLAS calls the fast path makes ------------------------------
TEST(ExactCostModel, IssuedFlopsEqualCountedGemmFlops) {
  for (const auto& [mech, given] : std::vector<std::pair<std::string, json>>{
           {"self",
            {{"seq_len", 300},
             {"heads", 3},
             {"causal", true},
             {"block_rows", 64},
             {"block_k", 100}}},
           {"self", {{"seq_len", 129}, {"heads", 2}}},
           {"self",
            {{"seq_len", 200},
             {"heads", 8},
             {"kv_heads", 2},
             {"causal", true},
             {"kernel", "fused"}}},
           {"self", {{"seq_len", 150}, {"heads", 3}, {"causal", true}, {"kernel", "fused"}}},
           {"mha", {{"seq_len", 100}, {"heads", 3}, {"causal", true}}},
           {"gqa",
            {{"seq_len", 100},
             {"heads", 8},
             {"kv_heads", 2},
             {"causal", true},
             {"block_rows", 64},
             {"block_k", 32}}}}) {
    auto r = make_run(mech, given);
    EXPECT_EQ(test::counted_forward_flops(r), r.mech->cost(r.params, Path::Fast).issued_flops)
        << mech << given.dump();
  }
}

TEST(ExactCostModel, AnalyticFlops) {
  auto r = make_run("self", {{"seq_len", 1000}, {"heads", 8}, {"head_dim", 64}, {"batch", 2}});
  EXPECT_EQ(r.mech->cost(r.params, Path::Fast).flops, 4.0 * 2 * 8 * 1000 * 1000 * 64);
  auto c = make_run("self", {{"seq_len", 1000}, {"heads", 8}, {"head_dim", 64}, {"causal", true}});
  EXPECT_EQ(c.mech->cost(c.params, Path::Fast).flops, 4.0 * 8 * 64 * 1000 * 1001 / 2);
  auto m = make_run("mha", {{"seq_len", 100}, {"heads", 8}, {"head_dim", 64}});
  const double D = 512;
  EXPECT_EQ(m.mech->cost(m.params, Path::Fast).flops, 8 * 100 * D * D + 4.0 * 100 * 100 * D);
}

// ----- bad input -----------------------------------------------------------------------------
void expect_input_error(const std::string& mech, const json& given, const std::string& field,
                        const std::string& fragment) {
  try {
    make_run(mech, given);
    ADD_FAILURE() << "no error for " << given.dump();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), field);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ExactParams, BadInputNamesTheFieldAndWhatIsAllowed) {
  expect_input_error("gqa", {{"heads", 8}, {"kv_heads", 3}}, "kv_heads", "must divide heads");
  expect_input_error("self", {{"seq_len", 0}}, "seq_len", "integer in [1,");
  expect_input_error("self", {{"seq_len", -5}}, "seq_len", "'-5'");
  expect_input_error("self", {{"causal", "maybe"}}, "causal", "true or false");
  expect_input_error("self", {{"strde", 3}}, "strde", "unknown parameter");
  expect_input_error("mqa", {{"kv_heads", 2}}, "kv_heads", "mqa uses 1");
  try {
    find_mechanism("slef");
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'self'"), std::string::npos) << e.what();
  }
}

TEST(ExactParams, DerivedDefaults) {
  auto r = make_run("gqa", {{"heads", 12}, {"head_dim", 32}});
  EXPECT_EQ(r.params.i("kv_heads"), 3);
  EXPECT_EQ(r.params.i("model_dim"), 384);
  EXPECT_DOUBLE_EQ(r.params.f("scale"), 1 / std::sqrt(32.0));
  EXPECT_FALSE(r.params.b("causal"));
}

}  // namespace
}  // namespace kt
