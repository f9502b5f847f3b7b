// The complexity/ops comparison table (`kittention table`, the README's table): per mechanism and
// configuration its paper, big-O time and space, exact FLOPs, KV bytes per token, the exponent of
// L its cost model implies, and optionally measured time, GFLOP/s, workspace and fitted exponent.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kittention/bench.hpp"
#include "kittention/compare.hpp"
#include "kittention/mechanism.hpp"

namespace kt {

struct ComplexityRow {
  const Mechanism* mech = nullptr;
  Params params;
  CostModel cost;                    // fast path at the configuration
  std::vector<double> model_seq_len;  // the L values of the model fit
  PowerFit model;                     // analytic FLOPs vs L
  std::optional<BenchResult> measured;
  std::optional<PowerFit> fitted;  // median time vs L over fit_seq_len (measured)
  std::vector<double> fit_seq_len;
};

struct ComplexityTable {
  std::vector<ComplexityRow> rows;
  nlohmann::json context;  // machine_context() of a measured table
  bool analytic_only = true;
  int min_reps = 0;
};

// The model's exponent in L around a configuration: the power-law fit of the analytic FLOPs over
// seq_lens (default {L/2, L, 2L}); lengths the mechanism rejects are skipped.
PowerFit model_exponent(const Mechanism& m, const nlohmann::json& given,
                        std::vector<double> seq_lens, std::vector<double>* used = nullptr);

// format: "table" | "md" | "json". An analytic-only table holds nothing that varies between runs.
std::string render_complexity_table(const ComplexityTable& t, const std::string& format);

}  // namespace kt
