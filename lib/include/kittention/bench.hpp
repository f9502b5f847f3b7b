// The benchmark harness: check the fast path against the reference, then time repeated forwards
// and measure memory, for one mechanism at one resolved configuration.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kittention/mechanism.hpp"

namespace kt {

struct BenchOptions {
  int warmup = 1;         // untimed runs first
  int reps = 5;           // at least this many timed runs ...
  double min_time = 0.5;  // ... and at least this many seconds of them
  int max_reps = 1000;
  bool reference = false;  // time the reference instead of the fast path
  bool check = true;       // compare fast with reference before timing
  bool force = false;      // run even when the memory estimate exceeds what is available
  // The check runs on the configuration itself when the reference costs at most this many
  // FLOPs, otherwise on Mechanism::check_params (reduced seq_len).
  double check_flops_budget = 2e9;
};

struct Stats {
  std::vector<double> samples;  // seconds
  double min = 0, median = 0, mean = 0, stddev = 0;
};
Stats compute_stats(std::vector<double> samples);

struct CheckResult {
  bool ran = false;
  bool passed = true;
  double max_rel_err = 0;
  double tolerance = 0;
  bool reduced = false;  // checked on check_params() rather than the timed configuration
  nlohmann::json checked_params;
};

struct BenchResult {
  std::string mechanism;
  Params params;
  Path path = Path::Fast;
  CostModel cost;
  Stats time;
  double gflops = 0;           // cost.flops / median
  size_t workspace_bytes = 0;  // arena peak of one forward
  size_t peak_rss_bytes = 0;   // VmHWM during the timed runs (reset before when possible)
  bool rss_reset = false;      // whether the high-water mark could be reset before the run
  CheckResult check;
  bool finite = true;  // outputs held no NaN/Inf (a non-finite output fails the run)
  bool ok() const { return check.passed && finite; }
};

// Estimated bytes a benchmark of p needs (inputs, outputs, workspace, and the check's reference).
double estimate_run_bytes(const Mechanism& m, const Params& p, const BenchOptions& opt);
size_t available_memory_bytes();  // MemAvailable from /proc/meminfo

// Throws InputError when the estimate exceeds available memory (unless opt.force).
BenchResult run_benchmark(const Mechanism& m, const Params& p, const BenchOptions& opt);

// Rounds (as asv's `rounds`; google/benchmark's random interleaving shuffles instead): a sweep's
// runs are timed `rounds` times over, in order, and each run's samples pooled, so that a drift of
// the machine's speed during the sweep reaches every run alike and ratios between runs stay
// comparable. round_options: the options of round `round` of `rounds`: ceil(reps / rounds)
// samples and min_time / rounds seconds each, the check only in round 0 (warmup in every round:
// the other runs evicted this one's data). pool_round: a later round's timing of the same run
// merged into r (samples pooled, statistics recomputed, memory figures the larger, finite only
// if both were).
BenchOptions round_options(const BenchOptions& opt, int rounds, int round);
void pool_round(BenchResult& r, const BenchResult& later);

// The machine and build: host, CPU, cores, BLAS, compiler, build type, git commit, date.
nlohmann::json machine_context(int threads);

// sgemm GFLOP/s of this machine: square n x n products with `threads` BLAS threads (median of
// reps).
struct PeakResult {
  double gflops = 0;
  int64_t n = 0;
  int threads = 0;
  Stats time;
};
PeakResult measure_peak(int threads, int64_t n = 3072, int reps = 5);

}  // namespace kt
