// kittention bench: check, time and measure every run of a sweep; report as table, md or json.
#include <fmt/format.h>

#include <chrono>
#include <memory>

#include "commands.hpp"
#include "kittention/bench.hpp"
#include "kittention/error.hpp"
#include "kittention/registry.hpp"
#include "kittention/report.hpp"
#include "runs.hpp"

namespace kt::cli {

namespace {

struct BenchFlags {
  RunFlags runs;
  TimingFlags timing;
  std::string format = "table", out;
  bool no_check = false, peak = false;
};

std::string describe(const std::string& mech, const Params& p) {
  std::string s = mech;
  for (const char* k : {"seq_len", "heads", "head_dim", "causal"})
    if (p.has(k)) s += fmt::format(" {}={}", k, value_str(p.values().at(k)));
  const std::string extra = specific_params(mech, p);
  return extra.empty() ? s : s + " " + extra;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "check, time and measure mechanisms over a sweep");
  auto f = std::make_shared<BenchFlags>();
  f->runs.add_to(*sub, true);
  f->timing.add_to(*sub);
  sub->add_option("--format", f->format, "table | md | json | gbench | csv")
      ->check(CLI::IsMember(report_formats()));
  sub->add_option("--out", f->out,
                  "write the report to this file (the table still goes to stdout)");
  sub->add_flag("--ref", f->timing.opt.reference, "time the reference instead of the fast path");
  sub->add_flag("--no-check", f->no_check, "skip the fast-vs-reference check");
  sub->add_flag("--peak", f->peak,
                "measure the sgemm peak and report each kernel's fraction of it");
  sub->add_flag("--force", f->timing.opt.force,
                "run even when the memory estimate exceeds available memory");
  return [f] {
    f->timing.opt.check = !f->no_check;
    const auto specs = expand_runs(f->runs);
    f->timing.apply_config(f->runs.config_json);
    // Resolve every run before running any: bad input fails fast, before any allocation.
    std::vector<std::pair<const Mechanism*, Params>> runs;
    for (const auto& s : specs) runs.emplace_back(s.mech, resolve_params(*s.mech, s.given));
    int threads = 0;
    for (const auto& [m, p] : runs) threads = std::max<int>(threads, int(p.i("threads")));

    Report report;
    report.context = machine_context(threads);
    if (f->peak) report.peak_gflops = measure_peak(threads).gflops;
    int failed = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      const auto& [m, p] = runs[i];
      const auto t0 = std::chrono::steady_clock::now();
      BenchResult r = run_benchmark(*m, p, f->timing.opt);
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (took > 1.0 || !r.ok())
        fmt::print(stderr, "[{}/{}] {}: median {}{} ({:.1f} s)\n", i + 1, runs.size(),
                   describe(m->name(), p), format_time(r.time.median),
                   r.ok() ? "" : " CHECK FAILED", took);
      failed += !r.ok();
      report.results.push_back(std::move(r));
    }
    const std::string text = render_report(report, f->format);
    if (f->out.empty()) {
      write_output("", text);
    } else {
      write_output(f->out, text);
      if (f->format != "table") write_output("", report_table(report));
    }
    if (failed) fmt::print(stderr, "{} run(s) failed the fast-vs-reference check\n", failed);
    return failed ? 1 : 0;
  };
}

}  // namespace kt::cli
