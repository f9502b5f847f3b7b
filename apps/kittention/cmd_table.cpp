// kittention table: the complexity/ops comparison table (the README's table). Per run of the
// config: paper, big-O time and space, exact FLOPs, KV bytes per token, the model's exponent of L;
// unless --analytic-only, measured median time, GFLOP/s and workspace; with --fit-L (or the
// config's "table": {"fit_seq_len": [...]}), the measured exponent of L next to the model's.
#include <fmt/format.h>

#include <memory>

#include "commands.hpp"
#include "kittention/bench.hpp"
#include "kittention/complexity_table.hpp"
#include "kittention/error.hpp"
#include "kittention/report.hpp"
#include "runs.hpp"

namespace kt::cli {

namespace {

struct TableFlags {
  RunFlags runs;
  TimingFlags timing;
  std::string format = "table", out, fit_l;
  bool analytic_only = false;
};

void apply_config(TableFlags& f) {
  const auto& cfg = f.runs.config_json;
  if (!cfg.is_object()) return;
  f.timing.apply_config(cfg);
  if (f.fit_l.empty() && cfg.contains("table") && cfg["table"].is_object() &&
      cfg["table"].contains("fit_seq_len")) {
    const auto& v = cfg["table"]["fit_seq_len"];
    if (!v.is_array()) throw InputError("config.table.fit_seq_len", "expected a list of lengths");
    for (const auto& x : v) {
      if (!x.is_number_integer() || x.get<int64_t>() <= 0)
        throw InputError("config.table.fit_seq_len", "expected positive integers");
      f.fit_l += (f.fit_l.empty() ? "" : ",") + x.dump();
    }
  }
}

}  // namespace

Command add_table(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "table", "the complexity/ops comparison table: big-O, FLOPs, KV bytes, measured time");
  auto f = std::make_shared<TableFlags>();
  f->runs.add_to(*sub, true);
  f->timing.add_to(*sub);
  sub->add_flag("--analytic-only", f->analytic_only,
                "only the cost model's columns: no timing (the output is the same on every run)");
  sub->add_option(
      "--fit-L", f->fit_l,
      "also time each row at these seq_lens (a list or range) and show the fitted "
      "exponent of L next to the model's (config: \"table\": {\"fit_seq_len\": [...]})");
  sub->add_option("--format", f->format, "table | md | json")
      ->check(CLI::IsMember({"table", "md", "json"}));
  sub->add_option("--out", f->out, "write the table to this file");
  return [f] {
    const auto specs = expand_runs(f->runs);
    apply_config(*f);
    std::vector<double> fit_ls;
    if (!f->fit_l.empty())
      for (int64_t l : parse_int_list("fit-L", f->fit_l)) fit_ls.push_back(double(l));
    ComplexityTable t;
    t.analytic_only = f->analytic_only;
    t.min_reps = f->timing.opt.reps;
    int threads = 0;
    for (const auto& s : specs) {
      ComplexityRow row;
      row.mech = s.mech;
      row.params = resolve_params(*s.mech, s.given);
      row.cost = s.mech->cost(row.params, Path::Fast);
      row.model = model_exponent(*s.mech, s.given, fit_ls, &row.model_seq_len);
      threads = std::max<int>(threads, int(row.params.i("threads")));
      t.rows.push_back(std::move(row));
    }
    if (!f->analytic_only) {
      t.context = machine_context(threads);
      int failed = 0;
      for (size_t i = 0; i < t.rows.size(); ++i) {
        ComplexityRow& row = t.rows[i];
        const auto& given = specs[i].given;
        row.measured = run_benchmark(*row.mech, row.params, f->timing.opt);
        failed += !row.measured->ok();
        fmt::print(stderr, "[{}/{}] {} L={}: median {}\n", i + 1, t.rows.size(), row.mech->name(),
                   row.params.i("seq_len"), format_time(row.measured->time.median));
        if (fit_ls.empty()) continue;
        std::vector<double> xs, medians;
        for (double L : fit_ls) {
          nlohmann::json g = given;
          g["seq_len"] = int64_t(L);
          Params p;
          try {
            p = resolve_params(*row.mech, g);
          } catch (const InputError&) {
            continue;  // a length this mechanism does not accept
          }
          const BenchResult r = L == double(row.params.i("seq_len"))
                                    ? *row.measured
                                    : run_benchmark(*row.mech, p, f->timing.opt);
          failed += !r.ok();
          xs.push_back(L);
          medians.push_back(r.time.median);
        }
        row.fit_seq_len = xs;
        row.fitted = fit_power_law(xs, medians);
      }
      if (failed) fmt::print(stderr, "{} run(s) failed the fast-vs-reference check\n", failed);
    } else if (!fit_ls.empty()) {
      fmt::print(stderr, "note: --fit-L measures time; ignored with --analytic-only\n");
    }
    write_output(f->out, render_complexity_table(t, f->format));
    return 0;
  };
}

}  // namespace kt::cli
