// Statistics for reading benchmark results: the Mann-Whitney U test, power-law fits of time
// against seq_len (empirical complexity), and the comparison of two bench JSON reports that
// `kittention compare` and the CI smoke check use (docs/regressions.md states the rule).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kittention/bench.hpp"

namespace kt {

// Two-sided Mann-Whitney U test of "a and b come from the same distribution". Exact p-value when
// there are no ties and n_a + n_b <= 40; otherwise the normal approximation with tie correction
// and continuity correction. p = 1 when either sample is empty or every value is equal.
struct UTest {
  double u = 0;  // U of sample a: the number of pairs (x in a, y in b) with x > y, ties count 1/2
  double z = 0;  // standardised U (0 when exact)
  double p = 1;  // two-sided p-value
  bool exact = false;
  size_t n_a = 0, n_b = 0;
};
UTest mann_whitney_u(const std::vector<double>& a, const std::vector<double>& b);

// Least squares of log(y) = intercept + exponent·log(x). Points with x <= 0 or y <= 0 are skipped.
struct PowerFit {
  size_t n = 0;            // points used
  double exponent = 0;     // slope on log-log axes
  double stderr_ = 0;      // standard error of the slope (0 with 2 points)
  double intercept = 0;    // natural log
  double r2 = 0;           // coefficient of determination on log-log axes
  double local_min = 0;    // smallest and largest slope between consecutive points (sorted by x)
  double local_max = 0;
};
PowerFit fit_power_law(const std::vector<double>& x, const std::vector<double>& y);

// Empirical complexity of a report: results grouped by (mechanism, path, every parameter except
// seq_len and seed); a group with >= min_points distinct seq_len values gets the fitted exponent
// of its median time against L and the model's exponent (the same fit on its analytic flops).
struct ScalingFit {
  std::string mechanism;
  std::string path;
  std::string fixed;       // the group's parameters, "H=8 d=64 causal=true ..."
  std::string big_o;       // the cost model's time complexity string
  std::vector<double> seq_len, median, flops;
  PowerFit time;           // measured: median seconds vs L
  PowerFit model;          // claimed: analytic flops vs L
};
std::vector<ScalingFit> fit_scaling(const std::vector<BenchResult>& results, size_t min_points = 3);
nlohmann::json scaling_json(const std::vector<ScalingFit>& fits);
// Console ("table") or Markdown ("md") section: empty when there is no fit.
std::string scaling_text(const std::vector<ScalingFit>& fits, bool markdown);

// ---- kittention compare ----

struct CompareOptions {
  double threshold = 0.10;  // flag only when new/base - 1 exceeds this (fraction: 0.10 = 10%)
  double alpha = 0.05;      // ... and the U test's p-value is below this
  bool normalize_peak = false;  // compare time x own run's sgemm peak (fraction of peak)
  std::vector<std::string> ignore = {};  // parameters left out of the matching key
};

enum class Verdict { Same, Faster, Slower, Regression, Improvement, Missing, New };
const char* verdict_name(Verdict v);

struct CompareRow {
  std::string key;        // "self fast L=4096 H=8 ... causal=true"
  std::string mechanism;
  double base_median = 0, new_median = 0;  // seconds (x peak GFLOP/s when normalized)
  double ratio = 0;                        // new / base: > 1 is slower
  UTest utest;
  bool weak = false;  // fewer than 5 samples on a side
  Verdict verdict = Verdict::Same;
};

struct CompareResult {
  std::vector<CompareRow> rows;
  std::vector<std::string> warnings;
  double geomean_ratio = 1;  // over matched rows
  int regressions = 0, improvements = 0, matched = 0;
  bool normalized = false;
  CompareOptions options;
};

// base and neu are kittention bench JSON documents (schema_version 1). InputError on a document
// that is not one, on --normalize peak without a measured peak, or when no result matches.
CompareResult compare_reports(const nlohmann::json& base, const nlohmann::json& neu,
                              const CompareOptions& opt);
// format: "table" | "md" | "json".
std::string render_compare(const CompareResult& c, const std::string& format);
// "10%", "0.1", "10 %" -> 0.1 (InputError otherwise).
double parse_fraction(const std::string& field, const std::string& text);

}  // namespace kt
