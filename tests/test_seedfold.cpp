// seedfold: SeedFold linear triangular attention (gated, additive) and the AlphaFold softmax
// triangle attention baseline, starting and ending node (mechanisms-linear.md §3, decisions.md).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/blas.hpp"
#include "test_util.hpp"

namespace kt {
namespace {

using nlohmann::json;
using test::forward;
using test::make_run;
using test::rel_error;
using SfRun = test::Run;

const std::vector<std::string> kVariants = {"gated", "additive", "softmax"};
const std::vector<std::string> kNodes = {"start", "end"};

SfRun make(json given) {
  return make_run("seedfold", std::move(given));
}

struct Dims {
  int64_t B, N, H, c;
  explicit Dims(const Params& p)
      : B(p.i("batch")), N(p.i("seq_len")), H(p.i("heads")), c(p.i("head_dim")) {}
  // Flat index of (b, i, h, j, x) in a pair tensor [B, N, H, N, c].
  int64_t at(int64_t b, int64_t i, int64_t h, int64_t j, int64_t x = 0) const {
    return (((b * N + i) * H + h) * N + j) * c + x;
  }
  int64_t bias(int64_t b, int64_t h, int64_t j, int64_t k) const {
    return ((b * H + h) * N + j) * N + k;
  }
  int64_t mask(int64_t b, int64_t i, int64_t k) const { return (b * N + i) * N + k; }
};

double phi(const std::string& f, double x) {
  if (f == "relu") return std::max(x, 0.0);
  if (f == "elu1") return x > 0 ? x + 1 : std::exp(x);
  return x;
}
double psi(const std::string& f, double x) {
  if (f == "sigmoid") return 1 / (1 + std::exp(-x));
  if (f == "relu") return std::max(x, 0.0);
  return x;
}

// Independent float64 oracle, written from the spec's equations with 5-D indexing. Ending node
// directly as o_ij = Σ_k f(q_ij, k_kj, b_ki, m_kj) v_kj (no transposition).
std::vector<double> oracle(const SfRun& r) {
  const Params& p = r.params;
  const Dims d(p);
  const std::string var = p.s("variant"), fphi = p.s("phi"), fpsi = p.s("psi");
  const bool end = p.s("node") == "end", norm = p.b("normalize") && var != "softmax";
  const double scale = p.f("scale"), eps = p.f("eps");
  const Tensor &q = r.in.at("q"), &k = r.in.at("k"), &v = r.in.at("v"), &bias = r.in.at("bias"),
               &mask = r.in.at("mask");
  std::vector<double> out(size_t(d.B * d.N * d.H * d.N * d.c), 0.0);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t i = 0; i < d.N; ++i)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t j = 0; j < d.N; ++j) {
          std::vector<double> w(d.N), acc(d.c, 0.0);
          std::vector<int64_t> vrow(d.N);
          std::vector<bool> kept(d.N);
          double mx = -INFINITY;
          for (int64_t kk = 0; kk < d.N; ++kk) {
            const int64_t krow = end ? d.at(b, kk, h, j) : d.at(b, i, h, kk);
            const double bb = end ? bias[d.bias(b, h, kk, i)] : bias[d.bias(b, h, j, kk)];
            kept[kk] = (end ? mask[d.mask(b, kk, j)] : mask[d.mask(b, i, kk)]) != 0;
            vrow[kk] = krow;
            double dot = 0;
            for (int64_t x = 0; x < d.c; ++x) {
              const double wq = scale * q[d.at(b, i, h, j, x)], kx = k[krow + x];
              dot += var == "softmax" ? wq * kx : phi(fphi, wq) * phi(fphi, kx);
            }
            if (var == "gated") w[kk] = dot * psi(fpsi, bb);
            if (var == "additive") w[kk] = dot + psi(fpsi, bb);
            if (var == "softmax") w[kk] = dot + psi(fpsi, bb);
            if (!kept[kk]) w[kk] = var == "softmax" ? -INFINITY : 0.0;
            mx = std::max(mx, w[kk]);
          }
          double den = norm ? eps : 1.0;
          if (var == "softmax") {
            den = 0;
            for (auto& x : w) x = mx == -INFINITY ? 0.0 : std::exp(x - mx), den += x;
          } else if (norm) {
            for (double x : w) den += x;
          }
          for (int64_t kk = 0; kk < d.N; ++kk)
            for (int64_t x = 0; x < d.c; ++x) acc[x] += w[kk] * v[vrow[kk] + x];
          for (int64_t x = 0; x < d.c; ++x)
            out[d.at(b, i, h, j, x)] = den != 0 ? acc[x] / den : 0.0;
        }
  return out;
}

bool all_finite(const Tensor& t) {
  for (int64_t x = 0; x < t.numel(); ++x)
    if (!std::isfinite(t[x])) return false;
  return true;
}

// Float32 results against float64 (reference or oracle): the budget is 1e-4 normwise;
// observed errors are 1e-7 to 1e-6, an indexing or masking bug gives errors of order 1.
constexpr double kTol = 1e-4;

TEST(SeedFold, ReferenceAndFastMatchFloat64Oracle) {
  for (const auto& var : kVariants)
    for (const auto& node : kNodes)
      for (const auto& [fphi, norm] : std::vector<std::pair<std::string, bool>>{
               {"relu", false}, {"relu", true}, {"elu1", true}, {"identity", false}}) {
        if (var == "softmax" && (fphi != "relu" || norm)) continue;  // φ, normalize: linear only
        for (int64_t n : {1, 6}) {
          json g = {{"variant", var},  {"node", node},  {"batch", 2},  {"seq_len", n},
                    {"heads", 3},      {"head_dim", 5}, {"phi", fphi}, {"normalize", norm},
                    {"block_rows", 4}, {"block_k", 4}};
          if (var == "additive") g["psi"] = "sigmoid";  // the non-default ψ once
          SCOPED_TRACE(g.dump());
          SfRun r = make(g);
          const auto want = oracle(r);
          EXPECT_LE(rel_error(forward(r, Path::Reference).at("out"), want), 1e-6);
          EXPECT_LE(rel_error(forward(r, Path::Fast).at("out"), want), kTol);
        }
      }
}

TEST(SeedFold, FastMatchesReferenceOverShapes) {
  struct Case {
    int64_t n, b, h, c;
  };
  // Cubic reference: large N only with few heads and channels (odd heads, d in {16, 64, 80}).
  const std::vector<Case> cases = {
      {1, 2, 3, 16}, {7, 2, 5, 64}, {64, 2, 3, 16}, {64, 1, 1, 80}, {100, 1, 5, 16}};
  for (const auto& cs : cases)
    for (const auto& var : kVariants)
      for (const auto& node : kNodes)
        test::expect_fast_matches_reference("seedfold", {{"variant", var},
                                                         {"node", node},
                                                         {"seq_len", cs.n},
                                                         {"batch", cs.b},
                                                         {"heads", cs.h},
                                                         {"head_dim", cs.c}});
  // N = 257: the last key block of 256 holds one key (online-softmax rescale exercised).
  for (const auto& [var, node] : std::vector<std::pair<std::string, std::string>>{
           {"gated", "start"}, {"additive", "end"}, {"softmax", "end"}})
    test::expect_fast_matches_reference(
        "seedfold",
        {{"variant", var}, {"node", node}, {"seq_len", 257}, {"heads", 1}, {"head_dim", 16}});
  // Non-default maps and scale; normalised linear variants. With ψ = identity or φ = identity
  // the weights change sign, so a normaliser could be ~0 (ill-conditioned by construction):
  // normalisation is checked with non-negative weights (φ = elu1, ψ = relu or sigmoid).
  for (const auto& var : {"gated", "additive"})
    for (const auto& node : kNodes) {
      const json base = {{"variant", var}, {"node", node}, {"seq_len", 37},
                         {"batch", 2},     {"heads", 3},   {"head_dim", 16}};
      json g = base;
      g.update({{"phi", "identity"}, {"psi", "identity"}, {"scale", 0.5}});
      test::expect_fast_matches_reference("seedfold", g);
      g = base;
      g.update({{"normalize", true}, {"phi", "elu1"}, {"psi", "relu"}, {"scale", 0.5}});
      test::expect_fast_matches_reference("seedfold", g);
    }
}

TEST(SeedFold, TiledEqualsDenseForAnyTileSize) {
  // Spec §3.3 test 1 (gated) and test 7 (flash-style softmax): tile sizes change only the
  // float32 summation order.
  for (const auto& var : {"gated", "softmax"})
    for (const auto& node : kNodes) {
      json g = {{"variant", var}, {"node", node},   {"seq_len", 45},
                {"heads", 2},     {"head_dim", 16}, {"batch", 2}};
      SfRun r = make(g);
      const Tensor ref = forward(r, Path::Reference).at("out");
      for (auto [br, bk] : std::vector<std::pair<int, int>>{{1, 1}, {7, 13}, {16, 45}, {99, 99}}) {
        r.params.set("block_rows", int64_t{br});
        r.params.set("block_k", int64_t{bk});
        SCOPED_TRACE(g.dump() + " tiles " + std::to_string(br) + "x" + std::to_string(bk));
        EXPECT_LE(rel_error(forward(r, Path::Fast).at("out"), ref), kTol);
      }
    }
}

// Transposes the two N axes of the inputs (q, k, v: i <-> j; bias: j <-> k; mask: i <-> k).
TensorMap transposed_inputs(const SfRun& r) {
  const Dims d(r.params);
  TensorMap t = r.in;
  for (const char* name : {"q", "k", "v"})
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t i = 0; i < d.N; ++i)
        for (int64_t h = 0; h < d.H; ++h)
          for (int64_t j = 0; j < d.N; ++j)
            for (int64_t x = 0; x < d.c; ++x)
              t[name][d.at(b, i, h, j, x)] = r.in.at(name)[d.at(b, j, h, i, x)];
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t j = 0; j < d.N; ++j)
      for (int64_t k = 0; k < d.N; ++k) {
        t["mask"][d.mask(b, j, k)] = r.in.at("mask")[d.mask(b, k, j)];
        for (int64_t h = 0; h < d.H; ++h)
          t["bias"][d.bias(b, h, j, k)] = r.in.at("bias")[d.bias(b, h, k, j)];
      }
  return t;
}

TEST(SeedFold, EndNodeIsStartNodeOnTransposedInputs) {
  for (const auto& var : kVariants) {
    SfRun end = make({{"variant", var},
                      {"node", "end"},
                      {"seq_len", 19},
                      {"batch", 2},
                      {"heads", 3},
                      {"head_dim", 8},
                      {"block_rows", 8},
                      {"block_k", 8}});
    SfRun start = end;
    start.params.set("node", std::string("start"));
    start.in = transposed_inputs(end);
    const Dims d(end.params);
    for (Path path : {Path::Reference, Path::Fast}) {
      SCOPED_TRACE(var + " " + path_name(path));
      const Tensor oe = forward(end, path).at("out"), os = forward(start, path).at("out");
      double diff = 0;
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t i = 0; i < d.N; ++i)
          for (int64_t h = 0; h < d.H; ++h)
            for (int64_t j = 0; j < d.N; ++j)
              for (int64_t x = 0; x < d.c; ++x)
                diff = std::max(
                    diff, double(std::abs(oe[d.at(b, i, h, j, x)] - os[d.at(b, j, h, i, x)])));
      EXPECT_EQ(diff, 0.0);  // same values in the same order: exact (spec: "exact")
    }
  }
}

TEST(SeedFold, LimitsReduceToPerRowLinearAttention) {
  // Spec §3.3 test 4 / §5: gated with σ(B) = 1 and additive with ψ(B) = ReLU(B) = 0 both equal
  // the unnormalised ReLU linear attention of each row, φ(Q_i)(φ(K_i)ᵀ diag(m_i) V_i).
  SfRun gated = make({{"variant", "gated"}, {"seq_len", 20}, {"heads", 2}, {"head_dim", 8}});
  gated.in["bias"].fill(100.0f);  // sigmoid(100) = 1 in float32 and float64
  SfRun additive = gated;
  additive.params.set("variant", std::string("additive"));
  additive.params.set("psi", std::string("relu"));
  additive.in["bias"].fill(-1.0f);
  const Dims d(gated.params);
  const Tensor &q = gated.in.at("q"), &k = gated.in.at("k"), &v = gated.in.at("v"),
               &mask = gated.in.at("mask");
  std::vector<double> want(size_t(q.numel()));
  for (int64_t i = 0; i < d.N; ++i)
    for (int64_t h = 0; h < d.H; ++h) {
      std::vector<double> s(size_t(d.c * d.c), 0.0);  // φ(K_i)ᵀ diag(m_i) V_i
      for (int64_t kk = 0; kk < d.N; ++kk)
        for (int64_t x = 0; x < d.c; ++x)
          for (int64_t y = 0; y < d.c; ++y)
            s[x * d.c + y] += mask[d.mask(0, i, kk)] * phi("relu", k[d.at(0, i, h, kk, x)]) *
                              v[d.at(0, i, h, kk, y)];
      for (int64_t j = 0; j < d.N; ++j)
        for (int64_t y = 0; y < d.c; ++y)
          for (int64_t x = 0; x < d.c; ++x)
            want[d.at(0, i, h, j, y)] += phi("relu", q[d.at(0, i, h, j, x)]) * s[x * d.c + y];
    }
  for (Path path : {Path::Reference, Path::Fast}) {
    SCOPED_TRACE(path_name(path));
    EXPECT_LE(rel_error(forward(gated, path).at("out"), want), kTol);
    EXPECT_LE(rel_error(forward(additive, path).at("out"), want), kTol);
  }
}

TEST(SeedFold, MaskedKeysAndOtherRowsHaveNoEffect) {
  for (const auto& var : kVariants)
    for (const auto& node : kNodes) {
      SCOPED_TRACE(var + " " + node);
      SfRun r = make({{"variant", var},
                      {"node", node},
                      {"seq_len", 23},
                      {"heads", 2},
                      {"head_dim", 8},
                      {"block_k", 8}});
      const Dims d(r.params);
      const bool end = node == "end";
      for (Path path : {Path::Reference, Path::Fast}) {
        const Tensor base = forward(r, path).at("out");
        // Masked keys: the (row, key) pairs with mask 0 (starting node: k_ik, v_ik with m_ik = 0;
        // ending node: k_kj, v_kj with m_kj = 0) get other finite values.
        SfRun masked = r;
        std::mt19937 gen(7);
        std::normal_distribution<float> nd(0.0f, 50.0f);
        int64_t changed = 0;
        for (int64_t a = 0; a < d.N; ++a)
          for (int64_t kk = 0; kk < d.N; ++kk) {
            if (r.in.at("mask")[d.mask(0, a, kk)] != 0) continue;
            ++changed;
            for (int64_t h = 0; h < d.H; ++h)
              for (int64_t x = 0; x < d.c; ++x) {
                // start: row a, key kk -> (a, kk); end: key a of column kk -> (a, kk) as well.
                masked.in["k"][d.at(0, a, h, kk, x)] = nd(gen);
                masked.in["v"][d.at(0, a, h, kk, x)] = nd(gen);
              }
          }
        ASSERT_GT(changed, 0);
        EXPECT_EQ(rel_error(forward(masked, path).at("out"), base), 0.0);
        // Row independence (starting node): row 5 of q, k, v changes only row 5 of the output.
        if (!end) {
          SfRun other = r;
          for (const char* name : {"q", "k", "v"})
            for (int64_t x = d.at(0, 5, 0, 0); x < d.at(0, 6, 0, 0); ++x) other.in[name][x] += 1;
          const Tensor o = forward(other, path).at("out");
          for (int64_t x = 0; x < o.numel(); ++x) {
            const bool row5 = x >= d.at(0, 5, 0, 0) && x < d.at(0, 6, 0, 0);
            if (!row5) {
              ASSERT_EQ(o[x], base[x]) << "flat index " << x;
            }
          }
        }
      }
    }
}

TEST(SeedFold, FullyMaskedRowsGiveZeroNotNaN) {
  for (const auto& var : kVariants)
    for (const auto& node : kNodes)
      for (bool norm : {false, true}) {
        if (var == "softmax" && norm) continue;
        SCOPED_TRACE(var + " " + node + (norm ? " normalize" : ""));
        SfRun r = make({{"variant", var},
                        {"node", node},
                        {"seq_len", 12},
                        {"heads", 2},
                        {"head_dim", 4},
                        {"normalize", norm},
                        {"batch", 2}});
        const Dims d(r.params);
        // Every key of row 3 masked (start node sees it as row 3; end node as column 3).
        for (int64_t k = 0; k < d.N; ++k)
          r.in["mask"][d.mask(1, node == "start" ? 3 : k, node == "start" ? k : 3)] = 0;
        r.in["bias"][d.bias(0, 1, 2, 2)] = 1e30f;  // extreme logit in softmax / sigmoid saturation
        for (Path path : {Path::Reference, Path::Fast}) {
          const Tensor o = forward(r, path).at("out");
          EXPECT_TRUE(all_finite(o));
          for (int64_t h = 0; h < d.H; ++h)
            for (int64_t j = 0; j < d.N; ++j)
              for (int64_t x = 0; x < d.c; ++x)
                ASSERT_EQ(o[node == "start" ? d.at(1, 3, h, j, x) : d.at(1, j, h, 3, x)], 0.0f);
        }
      }
}

TEST(SeedFold, PermutationEquivariance) {
  // Relabelling tokens by π (i, j and k of q, k, v, mask and bias) permutes the output alike.
  for (const auto& var : kVariants)
    for (const auto& node : kNodes) {
      SCOPED_TRACE(var + " " + node);
      SfRun r = make({{"variant", var},
                      {"node", node},
                      {"seq_len", 17},
                      {"heads", 2},
                      {"head_dim", 8},
                      {"block_rows", 4},
                      {"block_k", 8}});
      const Dims d(r.params);
      std::vector<int64_t> pi(d.N);
      std::iota(pi.begin(), pi.end(), 0);
      std::shuffle(pi.begin(), pi.end(), std::mt19937(3));
      SfRun p = r;
      for (const char* name : {"q", "k", "v"})
        for (int64_t i = 0; i < d.N; ++i)
          for (int64_t h = 0; h < d.H; ++h)
            for (int64_t j = 0; j < d.N; ++j)
              for (int64_t x = 0; x < d.c; ++x)
                p.in[name][d.at(0, i, h, j, x)] = r.in.at(name)[d.at(0, pi[i], h, pi[j], x)];
      for (int64_t j = 0; j < d.N; ++j)
        for (int64_t k = 0; k < d.N; ++k) {
          p.in["mask"][d.mask(0, j, k)] = r.in.at("mask")[d.mask(0, pi[j], pi[k])];
          for (int64_t h = 0; h < d.H; ++h)
            p.in["bias"][d.bias(0, h, j, k)] = r.in.at("bias")[d.bias(0, h, pi[j], pi[k])];
        }
      const Tensor o = forward(r, Path::Fast).at("out"), op = forward(p, Path::Fast).at("out");
      Tensor back(o.shape());
      for (int64_t i = 0; i < d.N; ++i)
        for (int64_t h = 0; h < d.H; ++h)
          for (int64_t j = 0; j < d.N; ++j)
            for (int64_t x = 0; x < d.c; ++x)
              back[d.at(0, pi[i], h, pi[j], x)] = op[d.at(0, i, h, j, x)];
      EXPECT_LE(rel_error(back, o), 1e-5);  // summation order of the keys changes
    }
}

TEST(SeedFold, FlopCounterMatchesCostModel) {
  for (const auto& var : kVariants)
    for (const auto& node : kNodes)
      for (bool norm : {false, true}) {
        if (var == "softmax" && norm) continue;
        SCOPED_TRACE(var + " " + node + (norm ? " normalize" : ""));
        SfRun r = make({{"variant", var},
                        {"node", node},
                        {"seq_len", 37},
                        {"heads", 3},
                        {"head_dim", 16},
                        {"batch", 2},
                        {"normalize", norm},
                        {"block_rows", 16},
                        {"block_k", 24}});
        const CostModel c = r.mech->cost(r.params, Path::Fast);
        EXPECT_EQ(test::counted_forward_flops(r), c.issued_flops);
        EXPECT_EQ(c.issued_flops, c.flops);  // dense tiles: nothing issued beyond the algorithm
        EXPECT_EQ(test::flops_parts_sum(c), c.flops);
        EXPECT_EQ(test::counted_forward_flops(r, Path::Reference),
                  0.0);  // the reference issues no BLAS
      }
}

TEST(SeedFold, CostMatchesSpecFormulas) {
  // mechanisms-linear.md §3.3 table, per (batch, head), at the defaults H = 4, c = 32, N = 128.
  const double H = 4, c = 32, N = 128, n3 = N * N * N, n2 = N * N;
  const Mechanism& m = find_mechanism("seedfold");
  auto cost = [&](const char* var, Path path) {
    return m.cost(resolve_params(m, {{"variant", var}, {"threads", 2}}), path);
  };
  for (Path path : {Path::Reference, Path::Fast}) {
    const CostModel cg = cost("gated", path);
    EXPECT_EQ(cg.flops + cg.elementwise, H * (4 * n3 * c + n3));
    EXPECT_EQ(cg.transcendentals, H * n2);  // σ(B) once per head

    const CostModel cs = cost("softmax", path);
    EXPECT_EQ(cs.flops + cs.elementwise, H * (4 * n3 * c + 3 * n3 + 2 * n2 * c));
    EXPECT_EQ(cs.transcendentals, H * n3);  // one key block (block_k >= N): no rescale exps

    const CostModel ca = cost("additive", path);
    EXPECT_EQ(ca.transcendentals, 0);  // ReLU ψ
    if (path == Path::Fast)            // right-product form: the spec's count
      EXPECT_EQ(ca.flops + ca.elementwise, H * (4 * n2 * c * c + 2 * n3 * c + n2 * c));
    else  // quadratic form of the reference
      EXPECT_EQ(ca.flops + ca.elementwise, H * (4 * n3 * c + n3));
    for (const CostModel* m : {&cg, &cs, &ca}) {
      EXPECT_FALSE(m->form.empty());
      EXPECT_NE(m->time_complexity.find("N³"), std::string::npos);  // cubic for every variant
    }
  }
  SfRun a = make({{"variant", "additive"}});
  EXPECT_NE(a.mech->cost(a.params, Path::Fast).form, a.mech->cost(a.params, Path::Reference).form);
}

TEST(SeedFold, WorkspaceIsQuadraticInN) {
  // A materialised N³ score tensor would grow 8x from N = 128 to 256; ψ(B) is N² per (b, h) and
  // the per-thread tiles are linear in N.
  for (const auto& var : kVariants) {
    SCOPED_TRACE(var);
    double peak[2];
    for (int t = 0; t < 2; ++t) {
      json g = {{"variant", var}, {"seq_len", t == 0 ? 128 : 256}};  // gated: H = 4, c = 32
      if (var != "gated") g.update({{"heads", 2}, {"head_dim", 16}});
      SfRun r = make(g);
      Workspace ws;
      const Tensor o = run_forward(*r.mech, r.params, r.in, Path::Fast, ws).at("out");
      EXPECT_TRUE(all_finite(o));
      peak[t] = double(ws.peak());
      EXPECT_EQ(peak[t], r.mech->cost(r.params, Path::Fast).workspace_bytes);
      const double n = double(r.params.i("seq_len"));
      EXPECT_LT(peak[t], 4 * n * n * n);  // less than one head's N³ float scores
    }
    EXPECT_LE(peak[1] / peak[0], 4.5);
  }
  SfRun r = make({{"variant", "softmax"}, {"seq_len", 20}});
  EXPECT_EQ(test::forward_workspace_peak(r, Path::Reference),
            r.mech->cost(r.params, Path::Reference).workspace_bytes);
}

TEST(SeedFold, DefaultsAndGeneratedInputs) {
  SfRun r = make(json::object());
  const Params& p = r.params;
  EXPECT_EQ(p.i("heads"), 4);
  EXPECT_EQ(p.i("head_dim"), 32);
  EXPECT_EQ(p.i("seq_len"), 128);
  EXPECT_EQ(p.s("variant"), "gated");
  EXPECT_EQ(p.s("node"), "start");
  EXPECT_EQ(p.s("phi"), "relu");
  EXPECT_EQ(p.s("psi"), "sigmoid");
  EXPECT_FALSE(p.b("normalize"));
  EXPECT_EQ(p.f("scale"), 1.0);
  EXPECT_EQ(make({{"variant", "additive"}}).params.s("psi"), "relu");
  EXPECT_EQ(make({{"variant", "softmax"}}).params.s("psi"), "identity");
  EXPECT_DOUBLE_EQ(make({{"variant", "softmax"}}).params.f("scale"), 1 / std::sqrt(32.0));
  EXPECT_EQ(find_mechanism("triangle").name(), "seedfold");
  const Tensor& mask = r.in.at("mask");
  int64_t zeros = 0;
  for (int64_t x = 0; x < mask.numel(); ++x) {
    ASSERT_TRUE(mask[x] == 0.0f || mask[x] == 1.0f);
    zeros += mask[x] == 0.0f;
  }
  EXPECT_GT(zeros, mask.numel() / 20);  // about 10% masked
  EXPECT_LT(zeros, mask.numel() / 5);
  const json small = {{"seq_len", 9}, {"heads", 2}, {"head_dim", 4}};
  SfRun once = make(small), again = make(small);
  for (const auto& [name, t] : once.in) EXPECT_EQ(rel_error(again.in.at(name), t), 0.0) << name;
  EXPECT_EQ(r.in.at("q").shape(), (Shape{1, 128, 4, 128, 32}));
  EXPECT_EQ(r.in.at("bias").shape(), (Shape{1, 4, 128, 128}));
  EXPECT_EQ(r.in.at("mask").shape(), (Shape{1, 128, 128}));
}

TEST(SeedFold, BadInputIsAnInputErrorNamingTheField) {
  const Mechanism& m = find_mechanism("seedfold");
  auto expect_error = [&](const json& given, const std::string& field, const std::string& text) {
    SCOPED_TRACE(given.dump());
    try {
      resolve_params(m, given);
      ADD_FAILURE() << "no InputError";
    } catch (const InputError& e) {
      EXPECT_EQ(e.field(), field);
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect_error({{"variant", "linear"}}, "variant", "'linear'");
  expect_error({{"node", "middle"}}, "node", "start, end");
  expect_error({{"phi", "tanh"}}, "phi", "'tanh'");
  expect_error({{"psi", "exp"}}, "psi", "sigmoid, relu, identity");
  expect_error({{"seq_len", 0}}, "seq_len", "'0'");
  expect_error({{"heads", 0}}, "heads", "'0'");
  expect_error({{"block_k", 0}}, "block_k", "'0'");
  expect_error({{"eps", -1}}, "eps", "'-1'");
  expect_error({{"scale", -2}}, "scale", "'-2'");
  expect_error({{"normalise", true}}, "normalise", "did you mean 'normalize'");
  // A mask value other than 0 or 1, in either path.
  SfRun r = make({{"seq_len", 4}, {"heads", 1}, {"head_dim", 4}});
  r.in["mask"][5] = 0.5f;
  for (Path path : {Path::Reference, Path::Fast}) {
    try {
      forward(r, path);
      ADD_FAILURE() << "no InputError";
    } catch (const InputError& e) {
      EXPECT_EQ(e.field(), "mask");
      EXPECT_NE(std::string(e.what()).find("0.5"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kt
