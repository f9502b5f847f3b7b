#include <cmath>

#include "kittention/report.hpp"

namespace kt {

using nlohmann::json;

json json_number(double x) {
  return std::isfinite(x) ? json(x) : json(nullptr);
}

json result_json(const BenchResult& r, std::optional<double> peak) {
  json samples = json::array();
  for (double s : r.time.samples) samples.push_back(json_number(s));
  json parts = json::object();
  for (const auto& [name, f] : r.cost.flops_parts) parts[name] = json_number(f);
  json j = {
      {"mechanism", r.mechanism},
      {"path", path_name(r.path)},
      {"params", r.params.to_json()},
      {"form", r.cost.form},
      {"flops", json_number(r.cost.flops)},
      {"issued_flops", json_number(r.cost.issued_flops)},
      {"flops_parts", parts},
      {"elementwise", json_number(r.cost.elementwise)},
      {"transcendentals", json_number(r.cost.transcendentals)},
      {"complexity", {{"time", r.cost.time_complexity}, {"space", r.cost.space_complexity}}},
      {"time_unit", "s"},
      {"samples", samples},
      {"iterations", r.time.samples.size()},
      {"min", json_number(r.time.min)},
      {"median", json_number(r.time.median)},
      {"mean", json_number(r.time.mean)},
      {"stddev", json_number(r.time.stddev)},
      {"gflops", json_number(r.gflops)},
      {"fraction_of_peak", peak && *peak > 0 ? json_number(r.gflops / *peak) : json(nullptr)},
      {"memory",
       {{"analytic_bytes", json_number(r.cost.workspace_bytes)},
        {"workspace_bytes", r.workspace_bytes},
        {"peak_rss_bytes", r.peak_rss_bytes},
        {"peak_rss_reset", r.rss_reset},
        {"io_bytes", json_number(r.cost.io_bytes)},
        {"kv_bytes_per_token", json_number(r.cost.kv_bytes_per_token)}}},
      {"check",
       {{"ran", r.check.ran},
        {"passed", r.check.passed},
        {"max_rel_err", r.check.ran ? json_number(r.check.max_rel_err) : json(nullptr)},
        {"tolerance", r.check.ran ? json_number(r.check.tolerance) : json(nullptr)},
        {"reduced", r.check.reduced},
        {"params", r.check.ran ? r.check.checked_params : json(nullptr)}}},
      {"outputs_finite", r.finite},
  };
  return j;
}

json report_json(const Report& report) {
  json results = json::array();
  for (const auto& r : report.results) results.push_back(result_json(r, report.peak_gflops));
  json context = report.context;
  context["peak_gflops"] = report.peak_gflops ? json_number(*report.peak_gflops) : json(nullptr);
  return {{"schema_version", kSchemaVersion}, {"context", context}, {"results", results}};
}

}  // namespace kt
