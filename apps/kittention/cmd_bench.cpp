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
  int rounds = 1;
  CLI::Option* rounds_flag = nullptr;
  std::string format = "table", out;
  bool no_check = false, peak = false;
};

// A config's "options": {"rounds": N} applies unless --rounds was given.
void apply_config_rounds(BenchFlags& f) {
  const auto& cfg = f.runs.config_json;
  if (f.rounds_flag->count() || !cfg.is_object() || !cfg.contains("options") ||
      !cfg["options"].contains("rounds"))
    return;
  const auto& v = cfg["options"]["rounds"];
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1000)
    throw InputError("config.options.rounds", "expected an integer from 1 to 1000");
  f.rounds = int(v.get<int64_t>());
}

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
  f->rounds_flag =
      sub->add_option("--rounds", f->rounds,
                      "time the sweep this many times over, in order, pooling each run's samples "
                      "(reps and min-time shared out): drift reaches every run alike")
          ->check(CLI::Range(1, 1000));
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
    apply_config_rounds(*f);
    // Resolve every run before running any: bad input fails fast, before any allocation.
    std::vector<std::pair<const Mechanism*, Params>> runs;
    for (const auto& s : specs) runs.emplace_back(s.mech, resolve_params(*s.mech, s.given));
    int threads = 0;
    for (const auto& [m, p] : runs) threads = std::max<int>(threads, int(p.i("threads")));

    Report report;
    report.context = machine_context(threads);
    report.context["rounds"] = f->rounds;
    if (f->peak) report.peak_gflops = measure_peak(threads).gflops;
    for (int round = 0; round < f->rounds; ++round) {
      const BenchOptions opt = round_options(f->timing.opt, f->rounds, round);
      const std::string of =
          f->rounds > 1 ? fmt::format(" (round {}/{})", round + 1, f->rounds) : "";
      for (size_t i = 0; i < runs.size(); ++i) {
        const auto& [m, p] = runs[i];
        const auto t0 = std::chrono::steady_clock::now();
        BenchResult r = run_benchmark(*m, p, opt);
        const double took =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (took > 1.0 || !r.ok())
          fmt::print(stderr, "[{}/{}]{} {}: median {}{} ({:.1f} s)\n", i + 1, runs.size(), of,
                     describe(m->name(), p), format_time(r.time.median),
                     r.ok() ? "" : " CHECK FAILED", took);
        if (round == 0)
          report.results.push_back(std::move(r));
        else
          pool_round(report.results[i], r);
      }
    }
    int failed = 0;
    for (const BenchResult& r : report.results) failed += !r.ok();
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
