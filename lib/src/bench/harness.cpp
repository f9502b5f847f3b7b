// run_benchmark: (1) refuse a run whose memory estimate exceeds what is available, (2) check the
// fast path against the reference, (3) warm up, (4) time forwards until both reps and min_time are
// met, recording the arena peak and the RSS high-water mark. round_options and pool_round: the
// same run timed in several rounds of a sweep, its samples pooled.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "bench/memory.hpp"
#include "kittention/bench.hpp"
#include "kittention/error.hpp"

namespace kt {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool outputs_finite(const TensorMap& out) {
  for (const auto& [name, t] : out) {
    if (name == "lse") continue;  // -inf is the defined lse of an empty row
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t[i])) return false;
  }
  return true;
}

bool reference_is_cheap(const Mechanism& m, const Params& p, const BenchOptions& opt) {
  return m.cost(p, Path::Reference).flops <= opt.check_flops_budget;
}

std::string gib(double bytes) {
  return fmt::format("{:.2f} GiB", bytes / (1u << 30));
}

}  // namespace

size_t available_memory_bytes() {
  return read_available_memory();
}

double estimate_run_bytes(const Mechanism& m, const Params& p, const BenchOptions& opt) {
  const Path path = opt.reference ? Path::Reference : Path::Fast;
  const CostModel c = m.cost(p, path);
  double bytes = c.io_bytes + c.workspace_bytes;
  if (opt.check) {
    const Params q = reference_is_cheap(m, p, opt) ? p : m.check_params(p);
    const CostModel r = m.cost(q, Path::Reference), f = m.cost(q, Path::Fast);
    // The check holds inputs, both outputs and the larger workspace, after the timed run's
    // buffers are freed.
    bytes = std::max(bytes, r.io_bytes * 1.5 + std::max(r.workspace_bytes, f.workspace_bytes));
  }
  return bytes;
}

BenchResult run_benchmark(const Mechanism& m, const Params& p, const BenchOptions& opt) {
  const double need = estimate_run_bytes(m, p, opt);
  const double avail = double(available_memory_bytes());
  if (!opt.force && avail > 0 && need > 0.9 * avail)
    throw InputError("seq_len", fmt::format("{} needs about {} but {} is available (use --force "
                                            "to run anyway)",
                                            m.name(), gib(need), gib(avail)));
  BenchResult r;
  r.mechanism = m.name();
  r.params = p;
  r.path = opt.reference ? Path::Reference : Path::Fast;
  r.cost = m.cost(p, r.path);

  // Check: fast against reference, on p or on a reduced configuration.
  if (opt.check) {
    r.check.ran = true;
    r.check.reduced = !reference_is_cheap(m, p, opt);
    const Params q = r.check.reduced ? m.check_params(p) : p;
    r.check.checked_params = q.to_json();
    TensorMap in;
    m.generate_inputs(q, in);
    Workspace ws;
    const TensorMap fast = run_forward(m, q, in, Path::Fast, ws);
    const TensorMap ref = run_forward(m, q, in, Path::Reference, ws);
    r.check.max_rel_err = max_rel_error(fast, ref);
    r.check.tolerance = m.tolerance(q);
    r.check.passed = std::isfinite(r.check.max_rel_err) &&
                     r.check.max_rel_err <= r.check.tolerance && outputs_finite(fast);
  }

  // Timing. Outputs are allocated once; each sample is one call of the path.
  TensorMap in;
  m.generate_inputs(p, in);
  check_inputs(m, p, in);
  TensorMap out;
  for (const auto& spec : m.outputs(p)) out[spec.name] = Tensor(spec.shape);
  Workspace ws;
  auto call = [&] {
    if (r.path == Path::Fast)
      m.fast(p, in, out, ws);
    else
      m.reference(p, in, out, ws);
  };
  r.rss_reset = reset_peak_rss();
  for (int i = 0; i < opt.warmup; ++i) call();
  std::vector<double> samples;
  const auto start = std::chrono::steady_clock::now();
  while ((int(samples.size()) < opt.reps || seconds_since(start) < opt.min_time) &&
         int(samples.size()) < opt.max_reps) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    samples.push_back(seconds_since(t0));
  }
  r.peak_rss_bytes = peak_rss_bytes();
  r.workspace_bytes = ws.peak();
  r.time = compute_stats(std::move(samples));
  r.gflops = r.time.median > 0 ? r.cost.flops / r.time.median / 1e9 : 0;
  r.finite = outputs_finite(out);
  return r;
}

BenchOptions round_options(const BenchOptions& opt, int rounds, int round) {
  BenchOptions o = opt;
  rounds = std::max(1, rounds);
  o.reps = std::max(1, (opt.reps + rounds - 1) / rounds);
  o.min_time = opt.min_time / rounds;
  o.max_reps = std::max(1, (opt.max_reps + rounds - 1) / rounds);
  o.check = opt.check && round == 0;
  return o;
}

void pool_round(BenchResult& r, const BenchResult& later) {
  std::vector<double> samples = r.time.samples;
  samples.insert(samples.end(), later.time.samples.begin(), later.time.samples.end());
  r.time = compute_stats(std::move(samples));
  r.gflops = r.time.median > 0 ? r.cost.flops / r.time.median / 1e9 : 0;
  r.workspace_bytes = std::max(r.workspace_bytes, later.workspace_bytes);
  r.peak_rss_bytes = std::max(r.peak_rss_bytes, later.peak_rss_bytes);
  r.rss_reset = r.rss_reset && later.rss_reset;
  r.finite = r.finite && later.finite;
}

}  // namespace kt
