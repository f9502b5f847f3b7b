// The kittention executable: list, bench, run --dump round trip, and every bad-input path
// (exit 2 with a message naming the field).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kittention/npy.hpp"
#include "kittention/registry.hpp"

namespace fs = std::filesystem;

namespace {

struct Result {
  int code;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kittention-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& args) {
    const std::string cmd = std::string(KITTENTION_CLI) + " " + args + " >" +
                            (dir_ / "out").string() + " 2>" + (dir_ / "err").string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir_ / "out"), slurp(dir_ / "err")};
  }
  fs::path dir_;
};

constexpr const char* kTiny = "--reps 1 --min-time 0 --warmup 0";

TEST_F(Cli, ListJsonHasEveryMechanismWithPaperAndParams) {
  Result r = run("list --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["mechanisms"].size(), kt::all_mechanisms().size());
  for (const auto& m : j["mechanisms"]) {
    EXPECT_FALSE(m["paper"]["title"].get<std::string>().empty());
    EXPECT_FALSE(m["params"].empty());
  }
  EXPECT_EQ(run("list").code, 0);
  EXPECT_EQ(run("list --format md").code, 0);
}

TEST_F(Cli, BenchJsonFollowsTheContract) {
  Result r =
      run(std::string("bench --mech self,gqa --L 16,33 --heads 4 --causal=both --format json ") +
          kTiny);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schema_version"], 1);
  for (const char* k : {"host_name", "cpu_model", "num_cpus", "threads", "blas_version", "compiler",
                        "build_type", "git_commit", "date"})
    EXPECT_TRUE(j["context"].contains(k)) << k;
  ASSERT_EQ(j["results"].size(), 8u);  // 2 mechanisms x 2 lengths x 2 causal
  const auto& first = j["results"][0];
  EXPECT_EQ(first["mechanism"], "self");
  EXPECT_EQ(first["params"]["seq_len"], 16);
  EXPECT_EQ(first["params"]["causal"], false);
  EXPECT_EQ(j["results"][1]["params"]["causal"], true);
  for (const auto& res : j["results"]) {
    for (const char* k :
         {"flops", "transcendentals", "samples", "min", "median", "mean", "stddev", "gflops"})
      EXPECT_TRUE(res.contains(k)) << k;
    for (const char* k : {"analytic_bytes", "workspace_bytes", "peak_rss_bytes"})
      EXPECT_TRUE(res["memory"].contains(k)) << k;
    EXPECT_TRUE(res["check"]["passed"].get<bool>());
    EXPECT_TRUE(res["check"]["max_rel_err"].is_number());
  }
  EXPECT_EQ(r.out.find("NaN"), std::string::npos);
}

TEST_F(Cli, BenchMarkdownAndOutFile) {
  Result r = run(std::string("bench --mech self --L 8 --format md --out ") +
                 (dir_ / "t.md").string() + " " + kTiny);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string md = slurp(dir_ / "t.md");
  EXPECT_NE(md.find("| mechanism |"), std::string::npos);
  EXPECT_NE(md.find(" ± "), std::string::npos);
  EXPECT_NE(r.out.find("mechanism"), std::string::npos);  // the console table on stdout
}

TEST_F(Cli, BenchConfigSweepAndRanges) {
  std::ofstream(dir_ / "c.json") << R"({"options": {"reps": 1, "min_time": 0, "warmup": 0},
    "sweep": {"mech": ["self"], "seq_len": [8, 16], "heads": [2, 3]}})";
  Result r = run("bench --config " + (dir_ / "c.json").string() + " --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 4u);
  EXPECT_EQ(j["results"][1]["params"]["heads"], 3);  // the last axis varies fastest
  // A flag overrides the config's axis; a geometric range expands.
  r = run("bench --config " + (dir_ / "c.json").string() + " --L 4..16*2 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 6u);
  EXPECT_EQ(j["results"][4]["params"]["seq_len"], 16);
}

TEST_F(Cli, MechFlagSelectsAConfigsRuns) {
  // The other runs' parameters (here causal and kv_heads, which only self's run sets) go with
  // them; a parameter no selected run's mechanism declares is still an error.
  std::ofstream(dir_ / "r.json") << R"({"options": {"reps": 1, "min_time": 0, "warmup": 0},
    "runs": [{"mech": "self", "seq_len": 8, "causal": [false, true], "kv_heads": 1},
             {"mech": "sparse", "seq_len": 16}, {"mech": "linear", "seq_len": 8}]})";
  Result r = run("bench --config " + (dir_ / "r.json").string() + " --mech sparse --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 1u);
  EXPECT_EQ(j["results"][0]["mechanism"], "sparse");
  r = run("bench --config " + (dir_ / "r.json").string() + " --mech sparse -p feature_map=elu");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("feature_map"), std::string::npos) << r.err;
  // A run setting a parameter only another run's mechanism has: named, without a "did you mean".
  std::ofstream(dir_ / "x.json") << R"({"runs": [{"mech": "self", "seq_len": 8, "stride": 4},
                                                {"mech": "sparse", "seq_len": 8}]})";
  r = run("bench --config " + (dir_ / "x.json").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("stride: not a parameter of the mechanism(s) of the run"), std::string::npos)
      << r.err;
}

TEST_F(Cli, RunDumpRoundTrip) {
  const fs::path d1 = dir_ / "d1", d2 = dir_ / "d2";
  Result r = run("run --mech gqa --L 17 --heads 4 --kv-heads 2 --head-dim 8 --dump " + d1.string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto manifest = nlohmann::json::parse(slurp(d1 / "manifest.json"));
  EXPECT_EQ(manifest["mechanism"], "gqa");
  EXPECT_EQ(manifest["path"], "fast");
  EXPECT_EQ(manifest["params"]["kv_heads"], 2);
  for (const char* t : {"x", "w_q", "w_k", "w_v", "w_o"}) {
    ASSERT_TRUE(manifest["inputs"].contains(t)) << t;
    EXPECT_TRUE(fs::exists(d1 / (std::string(t) + ".npy")));
  }
  EXPECT_EQ(manifest["outputs"]["out"]["shape"], nlohmann::json({1, 17, 32}));
  // Feeding the dumped inputs back (with another seed, so generation would differ) reproduces out.
  r = run("run --mech gqa --L 17 --heads 4 --kv-heads 2 --head-dim 8 --seed 9 --inputs " +
          d1.string() + " --dump " + d2.string());
  ASSERT_EQ(r.code, 0) << r.err;
  const kt::Tensor a = kt::read_npy((d1 / "out.npy").string()),
                   b = kt::read_npy((d2 / "out.npy").string());
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a[i], b[i]);
  // The reference path on the same inputs agrees to rounding.
  r = run("run --mech gqa --L 17 --heads 4 --kv-heads 2 --head-dim 8 --ref --inputs " +
          d1.string() + " --dump " + (dir_ / "d3").string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(dir_ / "d3" / "manifest.json"))["path"], "reference");
  const kt::Tensor c = kt::read_npy((dir_ / "d3" / "out.npy").string());
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_NEAR(a[i], c[i], 1e-5);
}

TEST_F(Cli, RunInputsShapeMismatchIsAClearError) {
  Result r = run("run --mech self --L 8 --dump " + (dir_ / "d").string());
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("run --mech self --L 9 --inputs " + (dir_ / "d").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("q: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[1, 8, 9, 64]"), std::string::npos) << r.err;
}

struct BadInput {
  std::string args, fragment;
};

TEST_F(Cli, BadInputExitsTwoWithAClearMessage) {
  std::ofstream(dir_ / "bad.json")
      << "{\n  \"sweep\": {\"mech\": \"self\",\n   \"seq_len\": [1, 2,]\n}}";
  const std::vector<BadInput> cases = {
      {"bench --mech slef --L 8", "unknown mechanism 'slef'; did you mean 'self'?"},
      {"bench --mech self --L 0", "seq_len: invalid value '0'"},
      {"bench --mech self --L abc", "seq_len: invalid value 'abc'"},
      {"bench --mech gqa --heads 8 --kv-heads 3 --L 8",
       "kv_heads: kv_heads = 3 must divide heads = 8"},
      {"bench --mech self --L 8 --param strde=3", "strde: unknown parameter"},
      {"bench --config " + (dir_ / "bad.json").string(), "bad.json:3:"},
      {"bench --config " + (dir_ / "missing.json").string(), "cannot open"},
      {"bench --mech self --L 8 --format xml", "format"},
      {"run --mech self,mha --L 8", "exactly one configuration"},
      {"bench --mech self --L 8 --causal=maybe", "causal: invalid value 'maybe'"},
  };
  for (const auto& c : cases) {
    Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << c.args << "\nstderr: " << r.err;
  }
}

TEST_F(Cli, RefusesARunThatCannotFitInMemory) {
  Result r = run("bench --mech self --L 16777216 --heads 64 --no-check");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("available"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
}

TEST_F(Cli, PeakReportsGflops) {
  Result r = run("peak --n 256 --reps 1 --threads 1 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["peak"][0]["gflops"].get<double>(), 0.0);
}

}  // namespace
