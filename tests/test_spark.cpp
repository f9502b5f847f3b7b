// spark: the top-k kernels (Φ⁻¹, statistical threshold, exact selection), the gather kernel's
// softplus, fast = reference, the reference against an independent float64 oracle, and the spec's
// invariants (mechanisms-softmax.md §5 tests; decisions.md spark bullet).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/random.hpp"
#include "kernels/blas.hpp"
#include "kernels/gather.hpp"
#include "kernels/simd16.hpp"
#include "kernels/tile.hpp"
#include "kernels/topk.hpp"
#include "test_util.hpp"

namespace kt::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Kernels.

TEST(SparkKernels, InverseNormalCdfAccuracy) {
  // |Φ(Φ⁻¹(p)) - p| < 1e-12 over [1e-6, 1 - 1e-6] (spec §5), log-spaced into both tails.
  std::vector<double> ps;
  for (double p = 1e-6; p < 0.5; p *= 1.07) ps.push_back(p);
  for (int i = 1; i < 1000; ++i) ps.push_back(i / 1000.0);
  const size_t lower = ps.size();
  for (size_t i = 0; i < lower; ++i) ps.push_back(1.0 - ps[i]);
  for (double p : ps) {
    const double x = inverse_normal_cdf(p);
    EXPECT_LT(std::abs(normal_cdf(x) - p), 1e-12) << "p = " << p;
    EXPECT_NEAR(x, -inverse_normal_cdf(1 - p), 1e-9) << "symmetry at p = " << p;
  }
  // Known quantiles (spec §5 quotes 1.4051 and 1.5341).
  EXPECT_NEAR(inverse_normal_cdf(0.5), 0.0, 1e-15);
  EXPECT_NEAR(inverse_normal_cdf(0.975), 1.959963984540054, 1e-12);
  EXPECT_NEAR(inverse_normal_cdf(0.92), 1.4050715603096329, 1e-12);
  EXPECT_NEAR(inverse_normal_cdf(1 - 256.0 / 4096), 1.5341205443525463, 1e-12);
  EXPECT_NEAR(inverse_normal_cdf(1e-10), -6.361340902404056, 1e-9);
  EXPECT_EQ(inverse_normal_cdf(0.0), -INFINITY);
  EXPECT_EQ(inverse_normal_cdf(1.0), INFINITY);
  EXPECT_TRUE(std::isnan(inverse_normal_cdf(1.5)));
}

TEST(SparkKernels, SoftplusApprox) {
  for (double x = -100; x <= 100; x += 0.0137) {
    const double want = std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
    EXPECT_NEAR(softplus_approx(float(x)), want, 4e-7 * std::max(1.0, want)) << "x = " << x;
  }
  EXPECT_NEAR(softplus_approx(0.0f), std::log(2.0), 1e-7);
  EXPECT_EQ(softplus_approx(-1e4f), 0.0f);
  EXPECT_EQ(softplus_approx(1e4f), 1e4f);
}

// The 16-lane kernels (simd16.hpp: spark's fused weights, FusedTile's softmax) against libm in
// double: exp16 to 3e-7 relative on [-87, 88] and 0 below -87 (and for -inf), softplus16 to 3e-7
// relative everywhere (also for x << 0, where it is e^x), and against the scalar forms.
KT_SIMD16 void simd16_values(const float* x, float* e, float* sp) {
  _mm512_storeu_ps(e, exp16(_mm512_loadu_ps(x)));
  _mm512_storeu_ps(sp, softplus16(_mm512_loadu_ps(x)));
}

TEST(SparkKernels, Simd16ExpAndSoftplus) {
  if (!fused_kernel_available()) GTEST_SKIP() << "no AVX-512 on this CPU (or KITTENTION_NO_AVX512)";
  std::vector<float> xs;
  for (double x = -100; x <= 90; x += 0.0173) xs.push_back(float(x));
  xs.push_back(-INFINITY);
  while (xs.size() % 16) xs.push_back(0.0f);
  std::vector<float> e(xs.size()), sp(xs.size());
  for (size_t i = 0; i < xs.size(); i += 16) simd16_values(&xs[i], &e[i], &sp[i]);
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    if (x < -87) {
      EXPECT_EQ(e[i], 0.0f) << "x = " << x;
    } else if (x <= 88) {
      EXPECT_NEAR(e[i], std::exp(x), 3e-7 * std::exp(x)) << "x = " << x;
      EXPECT_NEAR(e[i], exp_approx(float(x)), 3e-7 * std::exp(x)) << "x = " << x;
    }
    if (std::isfinite(x)) {
      const double want = std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
      const double tol = x < -87 ? 0.0 : 3e-7 * want;  // below -87 exp16 flushes to 0
      EXPECT_NEAR(sp[i], want, std::max(tol, x < -87 ? want : 0.0)) << "x = " << x;
      EXPECT_NEAR(sp[i], softplus_approx(float(x)), 3e-7 * want) << "x = " << x;
    }
  }
}

std::vector<float> normal_row(int64_t n, uint64_t seed, double mean = 0, double sd = 1) {
  Tensor t({n});
  fill_normal(t, seed, "row", mean, sd);
  return std::vector<float>(t.data(), t.data() + n);
}

TEST(SparkKernels, StatisticalTopkConcentration) {
  // i.i.d. Gaussian, n = 65536, k = 2048: the survivor count is within ±8% of k for every seed
  // and the mean relative deviation over 20 seeds within ±2% (spec §5).
  const int64_t n = 65536, k = 2048;
  std::vector<int32_t> idx(n + 16);
  double mean_dev = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto x = normal_row(n, seed, 3.0, 2.5);
    const int64_t m = select_topk(x.data(), n, k, TopkMode::Statistical, idx.data(), nullptr);
    const double dev = double(m - k) / k;
    EXPECT_LT(std::abs(dev), 0.08) << "seed " << seed << " kept " << m;
    mean_dev += dev / 20;
  }
  EXPECT_LT(std::abs(mean_dev), 0.02);
}

TEST(SparkKernels, StatisticalSelectionIsExactThresholdAndAffineInvariant) {
  const int64_t n = 5000, k = 300;
  const auto x = normal_row(n, 7);
  std::vector<int32_t> idx(n + 16), idx2(n + 16);
  const int64_t m = select_topk(x.data(), n, k, TopkMode::Statistical, idx.data(), nullptr);
  // Every kept index has x > θ, every dropped one x <= θ, in increasing order (the vector
  // compress path and the scalar tail agree with the definition).
  const double theta = statistical_threshold(x.data(), n, k);
  std::vector<char> kept(n, 0);
  for (int64_t t = 0; t < m; ++t) {
    kept[idx[t]] = 1;
    if (t) {
      EXPECT_LT(idx[t - 1], idx[t]);
    }
  }
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(bool(kept[j]), double(x[j]) > theta) << j;
  // θ against a plain two-pass double computation.
  double mu = 0, var = 0;
  for (float v : x) mu += v;
  mu /= n;
  for (float v : x) var += (v - mu) * (v - mu);
  EXPECT_NEAR(theta, mu + std::sqrt(var / n) * inverse_normal_cdf(1.0 - double(k) / n), 1e-9);
  // x -> 4x + 64 (a > 0) keeps the same set, except keys within float rounding of θ.
  std::vector<float> y(n);
  for (int64_t j = 0; j < n; ++j) y[j] = 4 * x[j] + 64;
  const int64_t m2 = select_topk(y.data(), n, k, TopkMode::Statistical, idx2.data(), nullptr);
  std::vector<char> kept2(n, 0);
  for (int64_t t = 0; t < m2; ++t) kept2[idx2[t]] = 1;
  for (int64_t j = 0; j < n; ++j)
    if (std::abs(x[j] - theta) > 1e-5) {
      EXPECT_EQ(kept[j], kept2[j]) << j;
    }
}

TEST(SparkKernels, ExactTopkKeepsLargestTiesToSmallerIndex) {
  std::vector<float> x = {1, 5, 3, 5, 2, 5, 0, 4};
  std::vector<float> scratch(x.size());
  std::vector<int32_t> idx(x.size() + 16);
  int64_t m = select_topk(x.data(), 8, 2, TopkMode::Exact, idx.data(), scratch.data());
  ASSERT_EQ(m, 2);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 3);
  m = select_topk(x.data(), 8, 4, TopkMode::Exact, idx.data(), scratch.data());
  ASSERT_EQ(m, 4);
  EXPECT_EQ((std::vector<int32_t>(idx.begin(), idx.begin() + 4)),
            (std::vector<int32_t>{1, 3, 5, 7}));
  // Random rows: exactly k survivors, and they are the k largest.
  const auto r = normal_row(1000, 3);
  std::vector<float> sc(1000);
  std::vector<int32_t> id(1016);
  m = select_topk(r.data(), 1000, 37, TopkMode::Exact, id.data(), sc.data());
  ASSERT_EQ(m, 37);
  std::vector<float> sorted = r;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  for (int64_t t = 0; t < m; ++t) EXPECT_GE(r[id[t]], sorted[36]);
  // n <= k keeps everything.
  EXPECT_EQ(select_topk(r.data(), 10, 37, TopkMode::Exact, id.data(), sc.data()), 10);
  EXPECT_EQ(select_topk(r.data(), 10, 10, TopkMode::Statistical, id.data(), nullptr), 10);
}

TEST(SparkKernels, ConstantRowKeepsArgmax) {
  // σ = 0: the threshold equals every score, nothing is strictly above it; the guard keeps the
  // first key. Never empty, for either mode.
  std::vector<float> x(1000, 0.1f);
  std::vector<int32_t> idx(1016);
  std::vector<float> sc(1000);
  ASSERT_EQ(select_topk(x.data(), 1000, 10, TopkMode::Statistical, idx.data(), nullptr), 1);
  EXPECT_EQ(idx[0], 0);
  x[517] = 0.2f;  // one larger key
  ASSERT_GE(select_topk(x.data(), 1000, 10, TopkMode::Statistical, idx.data(), nullptr), 1);
  EXPECT_EQ(idx[0], 517);
  x[517] = 0.1f;
  ASSERT_EQ(select_topk(x.data(), 1000, 10, TopkMode::Exact, idx.data(), sc.data()), 10);
  EXPECT_EQ(idx[9], 9);
}

TEST(SparkKernels, MomentThresholdsMatchTwoPassStatistics) {
  // θ from the keys' moments equals μ + σ·Φ⁻¹(1 - k/n) computed in two passes over the exact
  // (double) scores, to 1e-6·σ, on centred rows and on shifted ones (|μ| >> σ: keys = 20 + 0.05·N,
  // q = 1 + 0.3·N), causal (prefix moments) and not; and agrees with statistical_threshold over the
  // float scores up to their rounding. Rows with n <= k get -inf.
  // r = 16 and r = 20 take the AVX-512 kernels (r <= 32) where the build has them, r = 40 the
  // portable loops.
  const int64_t L = 300, d = 48, k = 20;
  const float alpha = 0.3f;
  for (int64_t r : {16, 20, 40})
    for (bool shifted : {false, true})
      for (bool causal : {true, false}) {
        SCOPED_TRACE(std::string(shifted ? "shifted" : "centred") + (causal ? " causal" : "") +
                     " r=" + std::to_string(r));
        const auto q = normal_row(L * d, 11, shifted ? 1.0 : 0.0, shifted ? 0.3 : 1.0);
        const auto key = normal_row(L * d, 12, shifted ? 20.0 : 0.0, shifted ? 0.05 : 1.0);
        std::vector<double> theta(L), scratch(moment_scratch_doubles(r)), z(L + 1);
        normal_quantiles(k, L, z.data());
        moment_thresholds(q.data(), d, key.data(), d, L, r, alpha, k, causal, z.data(),
                          scratch.data(), theta.data());
        double min_ratio = INFINITY;  // |μ| / σ over the rows, to check the shifted case is one
        for (int64_t i = 0; i < L; ++i) {
          const int64_t n = causal ? i + 1 : L;
          if (n <= k) {
            EXPECT_EQ(theta[i], -INFINITY) << i;
            continue;
          }
          std::vector<double> sd(n);
          std::vector<float> sf(n);
          for (int64_t j = 0; j < n; ++j) {
            double dot = 0;
            for (int64_t c = 0; c < r; ++c) dot += double(q[i * d + c] * alpha) * key[j * d + c];
            sd[j] = dot;
            sf[j] = float(dot);
          }
          double mu = 0, var = 0;
          for (double x : sd) mu += x;
          mu /= n;
          for (double x : sd) var += (x - mu) * (x - mu);
          const double sigma = std::sqrt(var / n);
          const double want = mu + sigma * inverse_normal_cdf(1.0 - double(k) / n);
          min_ratio = std::min(min_ratio, std::abs(mu) / sigma);
          EXPECT_NEAR(theta[i], want, 1e-6 * sigma) << i;
          EXPECT_NEAR(theta[i], statistical_threshold(sf.data(), n, k),
                      1e-6 * sigma + 1e-6 * std::abs(mu))
              << i;
        }
        if (shifted) {
          EXPECT_GT(min_ratio, 10.0);
        }
      }
}

TEST(SparkKernels, LaneDotsAreOneFmaChainPerLane) {
  // Every lane's dot is fma(q_{dim-1}, k_{dim-1}, ... fma(q_0, k_0, 0)), bit for bit, whatever the
  // tile width (16..80 lanes), the key count (microkernel edges) or the code path.
  for (int64_t rp : {16, 32, 48, 64, 80})
    for (int64_t n : {1, 5, 6, 7, 13})
      for (int64_t dim : {1, 7, 32}) {
        const auto qt = normal_row(dim * rp, 21 + rp);
        const auto k = normal_row(n * (dim + 3), 22 + n);
        std::vector<float> st(n * rp);
        lane_dots(qt.data(), rp, k.data(), dim + 3, n, dim, st.data());
        for (int64_t j = 0; j < n; ++j)
          for (int64_t l = 0; l < rp; ++l) {
            float acc = 0;
            for (int64_t c = 0; c < dim; ++c)
              acc = std::fma(qt[c * rp + l], k[j * (dim + 3) + c], acc);
            ASSERT_EQ(st[j * rp + l], acc) << rp << " " << n << " " << dim << " " << j << " " << l;
          }
      }
}

// ---------------------------------------------------------------------------------------------
// Float64 oracle (independent of the library): predictor scores, threshold, selection, softmax,
// gate and value sum all in double from the float inputs. A row is "ambiguous" when a key's
// score lies within `delta` of the decision boundary (statistical: θ; exact: between the k-th and
// (k+1)-th largest; guard: the top two); decisions.md lets the float32 kernels go either way there.
struct Oracle {
  std::vector<double> out;      // [B,H,L,dv]
  std::vector<char> ambiguous;  // [B,H,L]
};

Oracle spark_oracle(const Run& r, double delta = 1e-5) {
  const Params& p = r.params;
  const int64_t B = p.i("batch"), H = p.i("heads"), G = p.i("kv_heads"), L = p.i("seq_len"),
                d = p.i("head_dim"), dv = p.i("value_dim"), rr = p.i("r"), K = p.i("k");
  const bool causal = p.b("causal"), exact = p.s("topk_mode") == "exact";
  const double alpha = p.f("scale");
  const float *q = r.in.at("q").data(), *k = r.in.at("k").data(), *v = r.in.at("v").data();
  Oracle o;
  o.out.assign(B * H * L * dv, 0.0);
  o.ambiguous.assign(B * H * L, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      for (int64_t i = 0; i < L; ++i) {
        const float* qi = q + ((b * H + h) * L + i) * d;
        const int64_t n = causal ? i + 1 : L;
        std::vector<double> s(n);
        for (int64_t j = 0; j < n; ++j) {
          const float* kj = k + ((b * G + g) * L + j) * d;
          double dot = 0;
          for (int64_t c = 0; c < rr; ++c) dot += double(qi[c]) * kj[c];
          s[j] = alpha * dot;
        }
        std::vector<char> keep(n, 1);
        bool amb = false;
        if (n > K) {
          std::vector<double> sorted = s;
          std::sort(sorted.begin(), sorted.end(), std::greater<double>());
          double boundary;
          if (exact) {
            boundary = sorted[K - 1];
            amb = sorted[K - 1] - sorted[K] <= delta;
            int64_t left = K;
            for (int64_t j = 0; j < n; ++j) left -= s[j] > boundary;
            for (int64_t j = 0; j < n; ++j)
              keep[j] = s[j] > boundary || (s[j] == boundary && left-- > 0);
          } else {
            double mu = 0, var = 0;
            for (double x : s) mu += x;
            mu /= n;
            for (double x : s) var += (x - mu) * (x - mu);
            boundary = mu + std::sqrt(var / n) * inverse_normal_cdf(1.0 - double(K) / n);
            int64_t m = 0;
            for (int64_t j = 0; j < n; ++j) {
              keep[j] = s[j] > boundary;
              m += keep[j];
              amb = amb || std::abs(s[j] - boundary) <= delta;
            }
            if (m == 0) {  // the argmax guard: ambiguous when the top two are close
              amb = amb || sorted[0] - sorted[1] <= delta;
              keep[std::max_element(s.begin(), s.end()) - s.begin()] = 1;
            }
          }
        }
        double mx = -INFINITY, z = 0;
        for (int64_t j = 0; j < n; ++j)
          if (keep[j]) mx = std::max(mx, s[j]);
        double* oi = o.out.data() + ((b * H + h) * L + i) * dv;
        for (int64_t j = 0; j < n; ++j) {
          if (!keep[j]) continue;
          const float* kj = k + ((b * G + g) * L + j) * d;
          double x = 0;
          for (int64_t c = rr; c < d; ++c) x += double(qi[c]) * kj[c];
          x *= alpha;
          const double e = std::exp(s[j] - mx);
          z += e;
          const double w = e * std::log1p(std::exp(x));
          const float* vj = v + ((b * G + g) * L + j) * dv;
          for (int64_t c = 0; c < dv; ++c) oi[c] += w * vj[c];
        }
        for (int64_t c = 0; c < dv; ++c) oi[c] /= z;
        o.ambiguous[(b * H + h) * L + i] = amb;
      }
    }
  return o;
}

// max over non-ambiguous rows of |got - oracle| / max|oracle|; counts the rows compared.
double oracle_error(const Tensor& got, const Oracle& o, int64_t dv, int64_t* compared) {
  double num = 0, den = 0;
  *compared = 0;
  for (size_t row = 0; row < o.ambiguous.size(); ++row) {
    for (int64_t c = 0; c < dv; ++c) den = std::max(den, std::abs(o.out[row * dv + c]));
    if (o.ambiguous[row]) continue;
    ++*compared;
    for (int64_t c = 0; c < dv; ++c)
      num = std::max(num, std::abs(double(got[row * dv + c]) - o.out[row * dv + c]));
  }
  return den > 0 ? num / den : num;
}

void expect_matches_oracle(const nlohmann::json& given) {
  SCOPED_TRACE(given.dump());
  kt::test::Run r = make_run("spark", given);
  const Oracle o = spark_oracle(r);
  const int64_t dv = r.params.i("value_dim");
  for (Path path : {Path::Reference, Path::Fast}) {
    const TensorMap out = forward(r, path);
    ASSERT_TRUE(all_finite(out));
    int64_t compared = 0;
    // Float32 scores and sums vs double: a few eps·sqrt(n) relative (see Mechanism::tolerance).
    EXPECT_LE(oracle_error(out.at("out"), o, dv, &compared), 2e-4) << path_name(path);
    EXPECT_GE(compared, int64_t(0.9 * double(o.ambiguous.size())));
  }
}

// ---------------------------------------------------------------------------------------------
// Mechanism.

TEST(Spark, FastMatchesReferenceOverShapes) {
  // Both paths share the float predictor scores (spark.cpp pass 1), so they take the same
  // keep/drop decisions and agree to float rounding of the softmax/gate/value sums.
  for (int64_t L : test_lengths())
    for (bool causal : {true, false})
      for (const char* mode : {"statistical", "exact"}) {
        expect_fast_matches_reference("spark", {{"seq_len", L},
                                                {"causal", causal},
                                                {"topk_mode", mode},
                                                {"heads", 3},
                                                {"batch", 2},
                                                {"head_dim", 16},
                                                {"k", 5},
                                                {"block_rows", 16}});
        expect_fast_matches_reference("spark", {{"seq_len", L},
                                                {"causal", causal},
                                                {"topk_mode", mode},
                                                {"heads", 5},
                                                {"head_dim", 80},
                                                {"r", 24},
                                                {"value_dim", 48},
                                                {"k", 33}});
      }
  expect_fast_matches_reference("spark",
                                {{"seq_len", 300}, {"heads", 4}, {"kv_heads", 2}, {"k", 64}});
  expect_fast_matches_reference("spark", {{"seq_len", 1000}, {"heads", 2}, {"k", 256}});
  expect_fast_matches_reference("spark", {{"seq_len", 200}, {"heads", 1}, {"k", 300}});
  // r > 32: the thresholds' portable loops; d - r = 56: the gate dots' generic width.
  expect_fast_matches_reference(
      "spark", {{"seq_len", 300}, {"heads", 2}, {"head_dim", 96}, {"r", 40}, {"k", 32}});
}

TEST(Spark, FastMatchesReferenceAtTileEdges) {
  // Ragged lengths around the 16-lane vectors and the 64-row subtiles of the fused kernel, tiles
  // of 32, 64 and 100 rows (two subtiles), GQA, causal and not, both modes.
  for (int64_t L : {31, 33, 63, 65, 129})
    for (int64_t br : {32, 64, 100})
      for (bool causal : {true, false})
        for (const char* mode : {"statistical", "exact"})
          expect_fast_matches_reference("spark", {{"seq_len", L},
                                                  {"block_rows", br},
                                                  {"causal", causal},
                                                  {"topk_mode", mode},
                                                  {"heads", 4},
                                                  {"kv_heads", 2},
                                                  {"head_dim", 24},
                                                  {"r", 8},
                                                  {"value_dim", 20},
                                                  {"k", 6}});
}

TEST(Spark, ReferenceAndFastMatchFloat64Oracle) {
  for (int64_t L : {1, 7, 64, 100, 257})
    for (bool causal : {true, false})
      for (const char* mode : {"statistical", "exact"})
        expect_matches_oracle({{"seq_len", L},
                               {"causal", causal},
                               {"topk_mode", mode},
                               {"heads", 3},
                               {"batch", 2},
                               {"head_dim", 16},
                               {"k", 9},
                               {"block_rows", 32}});
  expect_matches_oracle(
      {{"seq_len", 200}, {"heads", 4}, {"kv_heads", 2}, {"head_dim", 64}, {"k", 40}, {"seed", 5}});
  expect_matches_oracle({{"seq_len", 150},
                         {"heads", 2},
                         {"head_dim", 80},
                         {"r", 10},
                         {"value_dim", 24},
                         {"k", 20},
                         {"topk_mode", "exact"}});
}

TEST(Spark, DenseEquivalenceWhenKCoversEveryKey) {
  // k >= n for every row: out = V·(softmax(K1ᵀq1) ⊙ softplus(K2ᵀq2)); with q2 = 0 the gate is
  // ln 2 everywhere, so spark = ln 2 × self attention on the predictor halves (q2 = k2 = 0).
  for (bool causal : {true, false}) {
    kt::test::Run r = make_run("spark", {{"seq_len", 100},
                                         {"heads", 2},
                                         {"head_dim", 32},
                                         {"k", 100},
                                         {"causal", causal},
                                         {"scale", 0.3}});
    Tensor& q = r.in["q"];
    for (int64_t row = 0; row < q.numel() / 32; ++row)
      for (int64_t c = 16; c < 32; ++c) q[row * 32 + c] = 0.0f;
    kt::test::Run s = make_run(
        "self",
        {{"seq_len", 100}, {"heads", 2}, {"head_dim", 32}, {"causal", causal}, {"scale", 0.3}});
    s.in["q"] = q;
    s.in["k"] = r.in["k"];
    s.in["v"] = r.in["v"];
    for (int64_t row = 0; row < q.numel() / 32; ++row)
      for (int64_t c = 16; c < 32; ++c) s.in["k"][row * 32 + c] = 0.0f;
    const Tensor want = forward(s, Path::Reference).at("out");
    for (Path path : {Path::Fast, Path::Reference}) {
      const Tensor got = forward(r, path).at("out");
      double err = 0, den = 0;
      for (int64_t i = 0; i < got.numel(); ++i) {
        err = std::max(err, double(std::abs(got[i] - float(std::log(2.0)) * want[i])));
        den = std::max(den, double(std::abs(want[i])));
      }
      EXPECT_LE(err / den, 1e-5) << path_name(path) << " causal " << causal;
    }
  }
}

TEST(Spark, ConstantPredictorRowsNeverEmptyOrNaN) {
  // q[:r] = 0: every predictor score is 0, σ = 0. Rows with n > k keep only key 0 (argmax guard,
  // ties to the smaller index), so out_i = softplus(α·q2·k2_0)·v_0; early rows keep all keys.
  for (const char* mode : {"statistical", "exact"}) {
    kt::test::Run r = make_run(
        "spark", {{"seq_len", 50}, {"heads", 1}, {"head_dim", 8}, {"k", 4}, {"topk_mode", mode}});
    Tensor& q = r.in["q"];
    for (int64_t i = 0; i < 50; ++i)
      for (int64_t c = 0; c < 4; ++c) q[i * 8 + c] = 0.0f;
    const float* k = r.in["k"].data();
    const float* v = r.in["v"].data();
    for (Path path : {Path::Fast, Path::Reference}) {
      const Tensor out = forward(r, path).at("out");
      for (int64_t i = 0; i < 50; ++i) {
        for (int64_t c = 0; c < 8; ++c) ASSERT_FALSE(std::isnan(out[i * 8 + c]));
        if (std::string(mode) == "exact" || i < 4) continue;  // exact keeps k keys: 0..3
        double x = 0;
        for (int64_t c = 4; c < 8; ++c) x += double(q[i * 8 + c]) * k[c];
        const double g = std::log1p(std::exp(x / std::sqrt(8.0)));
        for (int64_t c = 0; c < 8; ++c) EXPECT_NEAR(out[i * 8 + c], g * v[c], 1e-5);
      }
    }
  }
}

TEST(Spark, CausalLeakageAndPrefixEqualsFull) {
  // G9/G8: outputs at positions <= t depend on nothing after t, so the first Lp rows of a run
  // on L tokens equal a run on the first Lp tokens (what decoding one token at a time gives).
  // Masked (future) keys are excluded from μ and σ: giving them huge scores changes nothing.
  // Not bitwise: the predictor GEMM's last tile has another shape, which changes float rounding.
  const int64_t L = 120, Lp = 77, H = 2, d = 16;
  for (const char* mode : {"statistical", "exact"}) {
    kt::test::Run full = make_run(
        "spark", {{"seq_len", L}, {"heads", H}, {"head_dim", d}, {"k", 10}, {"topk_mode", mode}});
    for (const char* name : {"k", "v"})  // huge finite garbage in the future
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = Lp; j < L; ++j)
          for (int64_t c = 0; c < d; ++c) full.in[name][(h * L + j) * d + c] = 1e4f;
    kt::test::Run pre = make_run(
        "spark", {{"seq_len", Lp}, {"heads", H}, {"head_dim", d}, {"k", 10}, {"topk_mode", mode}});
    for (const char* name : {"q", "k", "v"})
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < Lp; ++j)
          for (int64_t c = 0; c < d; ++c)
            pre.in[name][(h * Lp + j) * d + c] = full.in[name][(h * L + j) * d + c];
    for (Path path : {Path::Fast, Path::Reference}) {
      const Tensor a = forward(full, path).at("out"), b = forward(pre, path).at("out");
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Lp; ++i)
          for (int64_t c = 0; c < d; ++c)
            ASSERT_NEAR(a[(h * L + i) * d + c], b[(h * Lp + i) * d + c], 1e-5)
                << mode << " " << path_name(path) << " h " << h << " i " << i;
    }
  }
}

TEST(Spark, SliceIsolation) {
  // G10: NaN in every other (b, h) slice leaves slice (0, 0) unchanged.
  kt::test::Run r = make_run("spark", {{"seq_len", 90}, {"heads", 3}, {"head_dim", 16}, {"k", 8}});
  const Tensor base_fast = forward(r, Path::Fast).at("out");
  const Tensor base_ref = forward(r, Path::Reference).at("out");
  for (const char* name : {"q", "k", "v"}) {
    Tensor& t = r.in[name];
    for (int64_t i = 90 * 16; i < t.numel(); ++i) t[i] = NAN;
  }
  const Tensor fast = forward(r, Path::Fast).at("out"), ref = forward(r, Path::Reference).at("out");
  for (int64_t i = 0; i < 90 * 16; ++i) {
    ASSERT_EQ(fast[i], base_fast[i]) << i;
    ASSERT_EQ(ref[i], base_ref[i]) << i;
  }
}

TEST(Spark, WeightsAreNonNegativeAndKeepAboutK) {
  // With v = 1 the output is Σ a_j g_j >= 0 (the gate is not normalised: not 1 in general).
  kt::test::Run r =
      make_run("spark", {{"seq_len", 300}, {"heads", 2}, {"head_dim", 16}, {"k", 32}});
  r.in["v"].fill(1.0f);
  const Tensor out = forward(r, Path::Fast).at("out");
  bool some_not_one = false;
  for (int64_t i = 0; i < out.numel(); ++i) {
    EXPECT_GT(out[i], 0.0f);
    some_not_one = some_not_one || std::abs(out[i] - 1.0f) > 1e-3;
  }
  EXPECT_TRUE(some_not_one);
}

TEST(Spark, BadParameters) {
  for (const auto& given :
       {nlohmann::json{{"r", 0}}, nlohmann::json{{"r", 64}}, nlohmann::json{{"r", 80}},
        nlohmann::json{{"k", 0}}, nlohmann::json{{"topk_mode", "sorted"}},
        nlohmann::json{{"head_dim", 1}}, nlohmann::json{{"heads", 6}, {"kv_heads", 4}}}) {
    SCOPED_TRACE(given.dump());
    EXPECT_THROW(make_run("spark", given), InputError);
  }
  try {
    make_run("spark", {{"r", 64}});
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("0 < r < head_dim = 64"), std::string::npos) << e.what();
  }
  kt::test::Run r = make_run("spark", {{"head_dim", 80}});
  EXPECT_EQ(r.params.i("r"), 40);
  EXPECT_TRUE(r.params.b("causal"));
  EXPECT_EQ(r.params.i("k"), 256);
  EXPECT_EQ(r.params.s("topk_mode"), "statistical");
}

TEST(Spark, FlopCounterMatchesIssuedFlops) {
  for (bool causal : {true, false})
    for (int64_t L : {1, 100, 257}) {
      kt::test::Run r = make_run("spark", {{"seq_len", L},
                                           {"heads", 3},
                                           {"batch", 2},
                                           {"head_dim", 32},
                                           {"k", 16},
                                           {"causal", causal},
                                           {"block_rows", 48}});
      EXPECT_EQ(counted_forward_flops(r), r.mech->cost(r.params, Path::Fast).issued_flops);
    }
  // Algorithmic flops: predictor 2·r·N + (gate + values) 2·(d - r + dv)·M, exact-mode M.
  kt::test::Run r =
      make_run("spark", {{"seq_len", 1000}, {"heads", 1}, {"head_dim", 64}, {"k", 256}});
  const CostModel c = r.mech->cost(r.params, Path::Fast);
  const double N = 1000.0 * 1001 / 2, M = 256.0 * 257 / 2 + (1000 - 256) * 256.0;
  EXPECT_DOUBLE_EQ(c.flops, 2 * 32 * N + 2 * (32 + 64) * M);
}

TEST(Spark, WorkspaceIsLinearInL) {
  // No L x L buffer: the measured peak equals the analytic workspace (per thread block_rows x L
  // predictor scores, plus the packed K/V copies, linear in L).
  kt::test::Run r =
      make_run("spark", {{"seq_len", 4096}, {"heads", 2}, {"head_dim", 32}, {"k", 64}});
  const double analytic = r.mech->cost(r.params, Path::Fast).workspace_bytes,
               peak = forward_workspace_peak(r);
  EXPECT_LE(peak, analytic + 4096);
  EXPECT_GE(peak, analytic);
  EXPECT_LT(peak, 0.1 * 4.0 * 4096 * 4096);
}

TEST(Spark, WorkspaceIsExactForBothPathsAndModes) {
  for (const char* mode : {"statistical", "exact"})
    for (Path path : {Path::Fast, Path::Reference}) {
      kt::test::Run r = make_run("spark", {{"seq_len", 333},
                                           {"heads", 4},
                                           {"kv_heads", 2},
                                           {"head_dim", 40},
                                           {"r", 12},
                                           {"k", 30},
                                           {"block_rows", 100},
                                           {"topk_mode", mode}});
      EXPECT_EQ(forward_workspace_peak(r, path), r.mech->cost(r.params, path).workspace_bytes)
          << mode << " " << path_name(path);
    }
}

}  // namespace
}  // namespace kt::test
