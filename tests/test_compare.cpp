// The statistics behind `kittention compare` and the empirical-complexity fits: the Mann-Whitney U
// test against known values, the regression rule on synthetic samples (identical distributions
// never flag; a 30% slowdown with 10 samples flags; a 5% slowdown under a 10% threshold does not),
// normalisation by the sgemm peak, and the CLI's exit codes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "kittention/compare.hpp"
#include "kittention/error.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<double> noisy(std::mt19937& rng, int n, double center, double rel_sd = 0.03) {
  std::normal_distribution<double> d(center, center * rel_sd);
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(std::max(1e-6, d(rng)));
  return v;
}

json result(const std::string& mech, int64_t L, const std::vector<double>& samples,
            double flops = 1e9) {
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  return {{"mechanism", mech},
          {"path", "fast"},
          {"params",
           {{"seq_len", L}, {"heads", 8}, {"head_dim", 64}, {"causal", true}, {"threads", 1}}},
          {"flops", flops},
          {"samples", samples},
          {"median", median}};
}

json report(std::vector<json> results, std::optional<double> peak = std::nullopt) {
  json ctx = {{"host_name", "h"}, {"cpu_model", "c"}};
  ctx["peak_gflops"] = peak ? json(*peak) : json(nullptr);
  return {{"schema_version", 1}, {"context", ctx}, {"results", results}};
}

}  // namespace

TEST(MannWhitney, KnownValues) {
  // Fully separated samples of 5 and 5: U = 25 (a above b), exact two-sided p = 2 / C(10,5).
  auto t = kt::mann_whitney_u({6, 7, 8, 9, 10}, {1, 2, 3, 4, 5});
  EXPECT_TRUE(t.exact);
  EXPECT_DOUBLE_EQ(t.u, 25);
  EXPECT_NEAR(t.p, 2.0 / 252, 1e-12);
  // Symmetric: swapping the samples gives U' = m·n - U and the same p.
  auto s = kt::mann_whitney_u({1, 2, 3, 4, 5}, {6, 7, 8, 9, 10});
  EXPECT_DOUBLE_EQ(s.u, 0);
  EXPECT_NEAR(s.p, t.p, 1e-12);
  // Interleaved samples: U = 10, exact p = 2·P(U <= 10) = 0.690476... (enumerating all C(10,5)).
  auto m = kt::mann_whitney_u({1, 3, 5, 7, 9}, {2, 4, 6, 8, 10});
  EXPECT_DOUBLE_EQ(m.u, 10);
  EXPECT_NEAR(m.p, 0.6904761904761905, 1e-12);
  // Ties: normal approximation, variance m·n/12·((N+1) - Σ(t³-t)/(N(N-1))), continuity 0.5:
  // U = 9.5, z = (|9.5 - 21| - 0.5) / sqrt(var), p = erfc(z/√2) = 0.111559...
  auto n = kt::mann_whitney_u({1, 2, 2, 3, 4, 5}, {2, 3, 3, 5, 6, 7, 8});
  EXPECT_FALSE(n.exact);
  EXPECT_DOUBLE_EQ(n.u, 9.5);
  EXPECT_NEAR(n.p, 0.11155930545078227, 1e-9);
  // All equal: no evidence.
  EXPECT_DOUBLE_EQ(kt::mann_whitney_u({1, 1, 1}, {1, 1, 1}).p, 1.0);
  EXPECT_DOUBLE_EQ(kt::mann_whitney_u({}, {1, 2}).p, 1.0);
}

TEST(MannWhitney, LargeSamplesUseTheNormalApproximation) {
  std::mt19937 rng(1);
  const auto a = noisy(rng, 30, 1.0), b = noisy(rng, 30, 1.0);
  const auto t = kt::mann_whitney_u(a, b);
  EXPECT_FALSE(t.exact);
  EXPECT_GT(t.p, 0.001);
  const auto shifted = noisy(rng, 30, 1.3);
  EXPECT_LT(kt::mann_whitney_u(shifted, a).p, 1e-6);
}

TEST(Compare, IdenticalDistributionsNeverFlag) {
  std::mt19937 rng(42);
  int flagged = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const json base = report({result("self", 1024, noisy(rng, 10, 1e-2))});
    const json neu = report({result("self", 1024, noisy(rng, 10, 1e-2))});
    flagged += kt::compare_reports(base, neu, {}).regressions;
  }
  EXPECT_EQ(flagged, 0);
  // The very same samples: ratio 1, p = 1.
  const json same = report({result("self", 1024, noisy(rng, 10, 1e-2))});
  const auto c = kt::compare_reports(same, same, {});
  ASSERT_EQ(c.rows.size(), 1u);
  EXPECT_DOUBLE_EQ(c.rows[0].ratio, 1.0);
  EXPECT_GT(c.rows[0].utest.p, 0.9);
  EXPECT_EQ(c.rows[0].verdict, kt::Verdict::Same);
}

TEST(Compare, ThirtyPercentSlowdownWithTenSamplesFlags) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const json base = report({result("self", 1024, noisy(rng, 10, 1e-2))});
    const json neu = report({result("self", 1024, noisy(rng, 10, 1.3e-2))});
    const auto c = kt::compare_reports(base, neu, {});
    ASSERT_EQ(c.regressions, 1);
    EXPECT_EQ(c.rows[0].verdict, kt::Verdict::Regression);
    EXPECT_NEAR(c.rows[0].ratio, 1.3, 0.08);
    EXPECT_FALSE(c.rows[0].weak);
    // The other way round it is an improvement, never a regression.
    const auto back = kt::compare_reports(neu, base, {});
    EXPECT_EQ(back.regressions, 0);
    EXPECT_EQ(back.improvements, 1);
  }
}

TEST(Compare, FivePercentSlowdownUnderTenPercentThresholdDoesNotFlag) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    // Tight noise: the 5% slowdown is significant, but under the threshold.
    const json base = report({result("self", 1024, noisy(rng, 10, 1e-2, 0.005))});
    const json neu = report({result("self", 1024, noisy(rng, 10, 1.05e-2, 0.005))});
    const auto c = kt::compare_reports(base, neu, {});
    EXPECT_EQ(c.regressions, 0);
    EXPECT_LT(c.rows[0].utest.p, 0.05);
    // With a 3% threshold the same data is a regression.
    kt::CompareOptions tight;
    tight.threshold = 0.03;
    EXPECT_EQ(kt::compare_reports(base, neu, tight).regressions, 1);
  }
}

TEST(Compare, BigButInsignificantSlowdownIsNotARegression) {
  // Two samples a side cannot reach p < 0.05 (exact minimum is 1/3): shown, warned, not flagged.
  const json base = report({result("self", 1024, {1.0, 1.01})});
  const json neu = report({result("self", 1024, {2.0, 2.02})});
  const auto c = kt::compare_reports(base, neu, {});
  EXPECT_EQ(c.regressions, 0);
  EXPECT_EQ(c.rows[0].verdict, kt::Verdict::Slower);
  EXPECT_TRUE(c.rows[0].weak);
  bool warned = false;
  for (const auto& w : c.warnings) warned |= w.find("weak") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(Compare, MatchesByMechanismAndParameters) {
  std::mt19937 rng(5);
  const json base =
      report({result("self", 1024, noisy(rng, 5, 1.0)), result("gqa", 1024, noisy(rng, 5, 1.0)),
              result("mqa", 512, noisy(rng, 5, 1.0))});
  const json neu =
      report({result("gqa", 1024, noisy(rng, 5, 1.0)), result("self", 1024, noisy(rng, 5, 1.0)),
              result("mqa", 2048, noisy(rng, 5, 1.0))});
  const auto c = kt::compare_reports(base, neu, {});
  EXPECT_EQ(c.matched, 2);
  int missing = 0, added = 0;
  for (const auto& r : c.rows) {
    missing += r.verdict == kt::Verdict::Missing;
    added += r.verdict == kt::Verdict::New;
  }
  EXPECT_EQ(missing, 1);
  EXPECT_EQ(added, 1);
  // Nothing in common is bad input.
  EXPECT_THROW(kt::compare_reports(report({result("self", 1, {1.0})}),
                                   report({result("self", 2, {1.0})}), {}),
               kt::InputError);
  EXPECT_THROW(kt::compare_reports(json::object(), base, {}), kt::InputError);
}

// A parameter added to a mechanism after the baseline was recorded does not break the baseline:
// rows match when every parameter both sides hold agrees.
TEST(Compare, ParameterAddedSinceTheBaselineStillMatches) {
  std::mt19937 rng(6);
  json with_new = result("self", 1024, noisy(rng, 5, 1.0));
  with_new["params"]["kv_heads"] = 8;
  json other_l = result("self", 2048, noisy(rng, 5, 1.0));
  other_l["params"]["kv_heads"] = 8;
  const auto c = kt::compare_reports(report({result("self", 1024, noisy(rng, 5, 1.0))}),
                                     report({other_l, with_new}), {});
  EXPECT_EQ(c.matched, 1);
  for (const auto& r : c.rows) {
    if (r.verdict != kt::Verdict::New) {
      EXPECT_NE(r.verdict, kt::Verdict::Missing);
    }
  }
}

TEST(Compare, NormalizeByPeakCancelsAMachineTwiceAsFast) {
  std::mt19937 rng(11);
  // NEW ran on a machine with twice the sgemm peak and the kernel took half the time: the same
  // fraction of peak, so no regression with --normalize peak (but a 2x "improvement" without).
  const json base = report({result("self", 1024, noisy(rng, 10, 2e-2))}, 50.0);
  const json neu = report({result("self", 1024, noisy(rng, 10, 1e-2))}, 100.0);
  kt::CompareOptions norm;
  norm.normalize_peak = true;
  const auto c = kt::compare_reports(base, neu, norm);
  EXPECT_EQ(c.regressions, 0);
  EXPECT_EQ(c.improvements, 0);
  EXPECT_NEAR(c.rows[0].ratio, 1.0, 0.1);
  EXPECT_EQ(kt::compare_reports(base, neu, {}).improvements, 1);
  // Same time on the faster machine: half the fraction of peak, a 2x regression.
  const json slow = report({result("self", 1024, noisy(rng, 10, 2e-2))}, 100.0);
  EXPECT_EQ(kt::compare_reports(base, slow, norm).regressions, 1);
  // Normalising needs a measured peak on both sides.
  EXPECT_THROW(kt::compare_reports(report({result("self", 1024, {1.0})}), neu, norm),
               kt::InputError);
}

TEST(Compare, ParseFractionAndRender) {
  EXPECT_DOUBLE_EQ(kt::parse_fraction("t", "10%"), 0.10);
  EXPECT_DOUBLE_EQ(kt::parse_fraction("t", "0.25"), 0.25);
  EXPECT_DOUBLE_EQ(kt::parse_fraction("t", "100 %"), 1.0);
  EXPECT_THROW(kt::parse_fraction("t", "ten"), kt::InputError);
  EXPECT_THROW(kt::parse_fraction("t", "-5%"), kt::InputError);
  std::mt19937 rng(2);
  const json base = report({result("self", 1024, noisy(rng, 10, 1.0))});
  const json neu = report({result("self", 1024, noisy(rng, 10, 1.3))});
  const auto c = kt::compare_reports(base, neu, {});
  EXPECT_NE(kt::render_compare(c, "table").find("REGRESSION"), std::string::npos);
  EXPECT_NE(kt::render_compare(c, "md").find("| benchmark |"), std::string::npos);
  const auto j = json::parse(kt::render_compare(c, "json"));
  EXPECT_EQ(j["regressions"], 1);
  EXPECT_TRUE(j["rows"][0]["regression"].get<bool>());
}

TEST(PowerFit, RecoversExponents) {
  std::vector<double> L = {512, 1024, 2048, 4096}, t2, t1;
  for (double l : L) t2.push_back(3e-9 * l * l), t1.push_back(5e-6 * l);
  const auto q = kt::fit_power_law(L, t2);
  EXPECT_EQ(q.n, 4u);
  EXPECT_NEAR(q.exponent, 2.0, 1e-12);
  EXPECT_NEAR(q.stderr_, 0.0, 1e-9);
  EXPECT_NEAR(q.r2, 1.0, 1e-12);
  EXPECT_NEAR(kt::fit_power_law(L, t1).exponent, 1.0, 1e-12);
  // Noise gives a spread; the local slopes bracket the fit.
  std::vector<double> noisy_t = {1.0, 3.7, 16.5, 63.0};
  const auto f = kt::fit_power_law(L, noisy_t);
  EXPECT_GT(f.stderr_, 0);
  EXPECT_LE(f.local_min, f.exponent);
  EXPECT_GE(f.local_max, f.exponent);
}

// ---- the CLI: exit codes and formats ----

namespace {

struct CliResult {
  int code;
  std::string out;
};

CliResult run_cli(const std::string& args) {
  const fs::path out =
      fs::temp_directory_path() / ("kittention-compare-" + std::to_string(::getpid()) + ".out");
  const std::string cmd = std::string(KITTENTION_CLI) + " " + args + " >" + out.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream f(out);
  std::stringstream ss;
  ss << f.rdbuf();
  fs::remove(out);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
}

}  // namespace

TEST(CompareCli, ExitCodes) {
  const fs::path dir =
      fs::temp_directory_path() / ("kittention-compare-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::mt19937 rng(9);
  const auto b = noisy(rng, 10, 1e-2);
  std::ofstream(dir / "base.json") << report({result("self", 1024, b)}, 50.0).dump();
  std::ofstream(dir / "same.json")
      << report({result("self", 1024, noisy(rng, 10, 1e-2))}, 50.0).dump();
  std::ofstream(dir / "slow.json")
      << report({result("self", 1024, noisy(rng, 10, 1.3e-2))}, 50.0).dump();
  std::ofstream(dir / "bad.json") << "{not json";
  const std::string base = (dir / "base.json").string();
  auto r = run_cli("compare " + base + " " + (dir / "same.json").string());
  EXPECT_EQ(r.code, 0) << r.out;
  r = run_cli("compare " + base + " " + (dir / "slow.json").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("REGRESSION"), std::string::npos);
  // A generous threshold (the CI smoke check's 2x) lets a 30% slowdown through.
  r = run_cli("compare " + base + " " + (dir / "slow.json").string() +
              " --threshold 100% --normalize peak --format json");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(run_cli("compare " + base + " " + (dir / "bad.json").string()).code, 2);
  EXPECT_EQ(run_cli("compare " + base + " " + (dir / "missing.json").string()).code, 2);
  EXPECT_EQ(run_cli("compare " + base + " " + base + " --threshold abc").code, 2);
  EXPECT_EQ(run_cli("compare " + base).code, 2);
  fs::remove_all(dir);
}
