// Reporters beyond the contract JSON: Google Benchmark's schema, CSV, the "Scaling with L" fits,
// the complexity table (`kittention table`), and scripts/update-readme-table's block rewrite.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "kittention/compare.hpp"
#include "kittention/complexity_table.hpp"
#include "kittention/registry.hpp"
#include "kittention/report.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A synthetic result of mechanism `name` at seq_len L whose median grows as L^exponent.
kt::BenchResult fake(const std::string& name, int64_t L, double exponent, bool causal = true) {
  const kt::Mechanism& m = kt::find_mechanism(name);
  kt::BenchResult r;
  r.mechanism = name;
  r.params = kt::resolve_params(m, {{"seq_len", L}, {"causal", causal}, {"threads", 1}});
  r.cost = m.cost(r.params, kt::Path::Fast);
  const double t = 1e-3 * std::pow(double(L) / 1024, exponent);
  r.time = kt::compute_stats({t * 0.99, t, t * 1.01});
  r.gflops = r.cost.flops / r.time.median / 1e9;
  r.workspace_bytes = 4096;
  r.check.ran = true;
  r.check.max_rel_err = 1e-6;
  return r;
}

kt::Report fake_report() {
  kt::Report rep;
  rep.context = {{"host_name", "h"}, {"cpu_model", "cpu"},      {"num_cpus", 2},
                 {"date", "d"},      {"build_type", "Release"}, {"kittention_version", "0.1.0"}};
  rep.peak_gflops = 100.0;
  for (int64_t L : {256, 512, 1024, 2048}) rep.results.push_back(fake("self", L, 1.9));
  rep.results.push_back(fake("gqa", 512, 2.0));
  return rep;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int sh(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(Gbench, FollowsGoogleBenchmarksSchema) {
  const json j = json::parse(kt::render_report(fake_report(), "gbench"));
  ASSERT_TRUE(j.contains("context"));
  ASSERT_TRUE(j.contains("benchmarks"));
  for (const char* k : {"date", "host_name", "executable", "num_cpus", "mhz_per_cpu", "caches",
                        "load_avg", "library_build_type", "json_schema_version"})
    EXPECT_TRUE(j["context"].contains(k)) << k;
  EXPECT_EQ(j["context"]["library_build_type"], "release");
  // 5 results x (3 iterations + 4 aggregates).
  ASSERT_EQ(j["benchmarks"].size(), 35u);
  const json& first = j["benchmarks"][0];
  const std::string name = first["name"];
  EXPECT_EQ(name.rfind("self/B:1/H:8/L:256/d:64/causal:1", 0), 0u) << name;
  for (const char* k : {"name", "run_name", "run_type", "repetitions", "repetition_index",
                        "threads", "iterations", "real_time", "cpu_time", "time_unit", "FLOPS"})
    EXPECT_TRUE(first.contains(k)) << k;
  EXPECT_EQ(first["run_type"], "iteration");
  EXPECT_EQ(first["time_unit"], "ms");
  EXPECT_EQ(first["iterations"], 1);
  const json& median = j["benchmarks"][4];
  EXPECT_EQ(median["run_type"], "aggregate");
  EXPECT_EQ(median["aggregate_name"], "median");
  EXPECT_EQ(median["name"], name + "_median");
  EXPECT_NEAR(median["real_time"].get<double>(), 1e3 * fake_report().results[0].time.median, 1e-9);
  // Names are unique per result, as compare.py matches by name.
  std::set<std::string> names;
  for (const auto& b : j["benchmarks"])
    if (b["run_type"] == "aggregate") {
      EXPECT_TRUE(names.insert(b["name"]).second) << b["name"];
    }
  EXPECT_EQ(j["benchmarks"][28]["name"].get<std::string>().rfind("gqa/B:1/H:8/G:", 0), 0u);
}

TEST(Rounds, ShareOutTheTimingAndPoolTheSamples) {
  kt::BenchOptions opt;
  opt.reps = 5, opt.min_time = 0.9, opt.max_reps = 1000;
  const kt::BenchOptions first = kt::round_options(opt, 3, 0), later = kt::round_options(opt, 3, 2);
  EXPECT_EQ(first.reps, 2);  // ceil(5 / 3): the rounds together take at least reps samples
  EXPECT_DOUBLE_EQ(first.min_time, 0.3);
  EXPECT_TRUE(first.check);
  EXPECT_FALSE(later.check);  // checked once
  EXPECT_EQ(later.warmup, opt.warmup);
  EXPECT_EQ(kt::round_options(opt, 1, 0).reps, 5);
  kt::BenchResult a = fake("self", 512, 2.0), b = fake("self", 512, 2.0);
  b.time = kt::compute_stats({1.0, 2.0});
  b.workspace_bytes = 8192;
  b.finite = false;
  kt::pool_round(a, b);
  EXPECT_EQ(a.time.samples.size(), 5u);
  EXPECT_DOUBLE_EQ(a.time.median, kt::compute_stats(a.time.samples).median);
  EXPECT_DOUBLE_EQ(a.gflops, a.cost.flops / a.time.median / 1e9);
  EXPECT_EQ(a.workspace_bytes, 8192u);
  EXPECT_FALSE(a.ok());  // a round with a non-finite output fails the run
}

TEST(Csv, HeaderAndOneLinePerResult) {
  const std::string csv = kt::render_report(fake_report(), "csv");
  std::stringstream ss(csv);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(ss, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0].rfind("mechanism,path,batch,heads,kv_heads,seq_len", 0), 0u);
  const auto commas = [](const std::string& s) { return std::count(s.begin(), s.end(), ','); };
  for (const auto& l : lines) EXPECT_EQ(commas(l), commas(lines[0])) << l;
  EXPECT_EQ(lines[1].rfind("self,fast,1,8,8,256,64,64,true,1,", 0), 0u) << lines[1];
}

TEST(Scaling, FitsGroupsWithThreeOrMoreLengths) {
  const auto fits = kt::fit_scaling(fake_report().results);
  ASSERT_EQ(fits.size(), 1u);  // gqa has one point only
  EXPECT_EQ(fits[0].mechanism, "self");
  EXPECT_NEAR(fits[0].time.exponent, 1.9, 1e-9);
  // Causal self: pairs L(L+1)/2, so the model exponent is just above 2 at small L.
  EXPECT_NEAR(fits[0].model.exponent, 2.0, 0.01);
  const std::string md = kt::render_report(fake_report(), "md");
  EXPECT_NE(md.find("Scaling with L"), std::string::npos);
  EXPECT_NE(md.find("1.90 ± 0.00"), std::string::npos);
  const std::string table = kt::render_report(fake_report(), "table");
  EXPECT_NE(table.find("model exponent"), std::string::npos);
  const json j = json::parse(kt::render_report(fake_report(), "json"));
  ASSERT_EQ(j["scaling"].size(), 1u);
  EXPECT_NEAR(j["scaling"][0]["fitted"]["exponent"].get<double>(), 1.9, 1e-9);
  // Fewer than three lengths: no section.
  kt::Report two = fake_report();
  two.results.resize(2);
  EXPECT_EQ(kt::render_report(two, "md").find("Scaling"), std::string::npos);
}

TEST(ComplexityTable, AnalyticRowsAndModelExponent) {
  const kt::Mechanism& self = kt::find_mechanism("self");
  std::vector<double> used;
  const json given = {{"seq_len", 4096}, {"causal", false}};
  const kt::PowerFit f = kt::model_exponent(self, given, {}, &used);
  EXPECT_EQ(used, (std::vector<double>{2048, 4096, 8192}));
  EXPECT_NEAR(f.exponent, 2.0, 1e-9);  // full attention: exactly L²
  kt::ComplexityTable t;
  kt::ComplexityRow row;
  row.mech = &self;
  row.params = kt::resolve_params(self, given);
  row.cost = self.cost(row.params, kt::Path::Fast);
  row.model = f;
  row.model_seq_len = used;
  t.rows.push_back(row);
  const std::string md = kt::render_complexity_table(t, "md");
  EXPECT_NE(
      md.find("Vaswani et al. 2017, [Attention Is All You Need](https://arxiv.org/abs/1706.03762)"),
      std::string::npos);
  EXPECT_NE(md.find("O(B·H·L²·d)"), std::string::npos);
  EXPECT_NE(md.find("| 2.00 |"), std::string::npos);
  EXPECT_NE(md.find("34.36"), std::string::npos);    // 4·8·4096²·64 FLOPs = 34.36 GFLOP
  EXPECT_EQ(md.find("GFLOP/s"), std::string::npos);  // analytic only
  EXPECT_EQ(md, kt::render_complexity_table(t, "md"));
}

// ---- the CLI and the README script ----

class ReportCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kittention-report-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ReportCli, BenchRoundsPoolEachRunsSamples) {
  const std::string k = KITTENTION_CLI;
  ASSERT_EQ(
      sh(k + " bench --mech sparse,linear --L 16 --rounds 3 --reps 2 --min-time 0 --warmup 0 " +
         "--format json --out " + (dir_ / "r.json").string() + " > /dev/null"),
      0);
  const json j = json::parse(slurp(dir_ / "r.json"));
  EXPECT_EQ(j["context"]["rounds"], 3);
  ASSERT_EQ(j["results"].size(), 2u);
  for (const auto& r : j["results"]) {
    EXPECT_EQ(r["iterations"], 3);  // one sample (ceil(2 / 3)) per round
    EXPECT_TRUE(r["check"]["passed"].get<bool>());
  }
  EXPECT_EQ(sh(k + " bench --mech sparse --L 16 --rounds 0 > /dev/null 2>&1"), 2);
  // A config's options.rounds: used unless --rounds is given; a bad value names the field.
  std::ofstream(dir_ / "c.json")
      << R"({"options": {"rounds": 2, "reps": 1, "min_time": 0, "warmup": 0},
             "runs": [{"mech": "sparse", "seq_len": 16}]})";
  ASSERT_EQ(sh(k + " bench --config " + (dir_ / "c.json").string() + " --format json --out " +
               (dir_ / "c-out.json").string() + " > /dev/null"),
            0);
  const json c = json::parse(slurp(dir_ / "c-out.json"));
  EXPECT_EQ(c["context"]["rounds"], 2);
  EXPECT_EQ(c["results"][0]["iterations"], 2);
  std::ofstream(dir_ / "bad.json")
      << R"({"options": {"rounds": "x"}, "runs": [{"mech": "sparse"}]})";
  ASSERT_EQ(
      sh(k + " bench --config " + (dir_ / "bad.json").string() + " 2> " + (dir_ / "err").string()),
      2);
  EXPECT_NE(slurp(dir_ / "err").find("config.options.rounds"), std::string::npos);
}

TEST_F(ReportCli, BenchWritesGbenchAndCsv) {
  const std::string cli = KITTENTION_CLI;
  const std::string tiny = " --reps 2 --min-time 0 --warmup 0 --heads 2 --head-dim 8";
  ASSERT_EQ(sh(cli + " bench --mech self --L 16,32,64 --format gbench --out " +
               (dir_ / "g.json").string() + tiny + " >/dev/null"),
            0);
  const json g = json::parse(slurp(dir_ / "g.json"));
  EXPECT_EQ(g["benchmarks"].size(), 3u * (2 + 4));
  ASSERT_EQ(sh(cli + " bench --mech self --L 16,32,64 --format csv --out " +
               (dir_ / "r.csv").string() + tiny + " >" + (dir_ / "stdout").string()),
            0);
  const std::string csv = slurp(dir_ / "r.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  // Three lengths: the console table ends with the scaling fit.
  EXPECT_NE(slurp(dir_ / "stdout").find("Scaling with L"), std::string::npos);
}

TEST_F(ReportCli, TableAnalyticOnlyIsStableAndTheReadmeScriptIsIdempotent) {
  const std::string cli = KITTENTION_CLI;
  const std::string src = KITTENTION_SOURCE_DIR;
  const std::string cmd = cli + " table --config " + src + "/configs/readme.json --analytic-only";
  ASSERT_EQ(sh(cmd + " --format md >" + (dir_ / "a.md").string()), 0);
  ASSERT_EQ(sh(cmd + " --format md >" + (dir_ / "b.md").string()), 0);
  EXPECT_EQ(slurp(dir_ / "a.md"), slurp(dir_ / "b.md"));
  EXPECT_NE(slurp(dir_ / "a.md").find("| `self` |"), std::string::npos);
  ASSERT_EQ(sh(cmd + " --format json >" + (dir_ / "a.json").string()), 0);
  EXPECT_FALSE(json::parse(slurp(dir_ / "a.json"))["rows"].empty());

  // The script rewrites only the block between the markers, byte for byte elsewhere.
  const std::string before =
      "# T\r\n\nintro ü\n<!-- kittention:table:begin -->\nold\n"
      "<!-- kittention:table:end -->\ntail\n\n";
  std::ofstream(dir_ / "README.md", std::ios::binary) << before;
  const std::string script = "python3 " + src + "/scripts/update-readme-table --bin " + cli +
                             " --readme " + (dir_ / "README.md").string() + " -- --analytic-only";
  ASSERT_EQ(sh(script + " >/dev/null 2>&1"), 0);
  const std::string once = slurp(dir_ / "README.md");
  EXPECT_EQ(once.rfind("# T\r\n\nintro ü\n<!-- kittention:table:begin -->\n", 0), 0u);
  EXPECT_NE(once.find("<!-- kittention:table:end -->\ntail\n\n"), std::string::npos);
  EXPECT_EQ(once.find("old\n"), std::string::npos);
  EXPECT_NE(once.find(slurp(dir_ / "a.md")), std::string::npos);
  ASSERT_EQ(sh(script + " >/dev/null 2>&1"), 0);
  EXPECT_EQ(slurp(dir_ / "README.md"), once);
  // No markers: an error, and the file is untouched.
  std::ofstream(dir_ / "README.md", std::ios::binary) << "no markers\n";
  EXPECT_NE(sh(script + " >/dev/null 2>&1"), 0);
  EXPECT_EQ(slurp(dir_ / "README.md"), "no markers\n");
}
