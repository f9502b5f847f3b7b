// From flags and JSON configs to the list of runs a command executes: a run is one mechanism with
// its given (unresolved) parameters. Lists and ranges in flags, and lists in a config's "sweep",
// form a cross product that runs in order (mechanism outermost, then the axes as given).
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kittention/bench.hpp"
#include "kittention/mechanism.hpp"

namespace kt::cli {

struct RunSpec {
  const Mechanism* mech;
  nlohmann::json given;  // {param: value}
};

// Flags shared by bench, run and table.
struct RunFlags {
  std::string mech;
  std::string seq_len, heads, kv_heads, head_dim, batch, threads, seed, causal;
  std::vector<std::string> params;  // k=v
  std::string config;
  nlohmann::ordered_json config_json;  // parsed config, keys in file order (null when none)
  void add_to(CLI::App& app, bool lists_allowed);
};

// Timing flags shared by bench and table: --warmup, --reps, --min-time into opt; a config's
// "options" object sets those the command line did not give.
class TimingFlags {
 public:
  BenchOptions opt;
  void add_to(CLI::App& app);
  void apply_config(const nlohmann::ordered_json& config);

 private:
  CLI::Option *warmup_ = nullptr, *reps_ = nullptr, *min_time_ = nullptr;
};

// "1024,2048" | "512..8192*2" (geometric) | "512..2048+512" (arithmetic) | "4096".
std::vector<int64_t> parse_int_list(const std::string& field, const std::string& text);

// Loads and validates a JSON config: InputError naming file, line and column on a syntax error.
nlohmann::ordered_json load_config(const std::string& path);

// Every run, in order. Each flag and --param applies to the mechanisms that declare that parameter
// (an error when none of them does).
std::vector<RunSpec> expand_runs(RunFlags& flags);

}  // namespace kt::cli
