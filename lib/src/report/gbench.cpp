// Google Benchmark's JSON schema (src/json_reporter.cc of google/benchmark, json_schema_version 1):
// {"context": {...}, "benchmarks": [...]}, one "iteration" row per timed sample (iterations = 1)
// and the mean / median / stddev / cv aggregates, so tools/compare.py (which runs its U test on the
// iteration rows) and CI actions reading that format work unchanged. Names are
// "<mechanism>[/ref]/B:1/H:8/G:2/L:4096/d:64/causal:1/<param>:<value>..."; times are in ms.
#include <fmt/format.h>

#include <cmath>
#include <unistd.h>

#include "kittention/report.hpp"

namespace kt {

using nlohmann::json;

namespace {

std::string gbench_name(const BenchResult& r) {
  const Params& p = r.params;
  std::string s = r.mechanism;
  if (r.path == Path::Reference) s += "/ref";
  auto add = [&](const char* label, const char* name) {
    if (!p.has(name)) return;
    const Value& v = p.values().at(name);
    s += fmt::format("/{}:{}", label,
                     std::holds_alternative<bool>(v) ? (std::get<bool>(v) ? "1" : "0")
                                                     : value_str(v));
  };
  add("B", "batch");
  add("H", "heads");
  if (p.has("kv_heads") && p.has("heads") && p.i("kv_heads") != p.i("heads")) add("G", "kv_heads");
  add("L", "seq_len");
  add("d", "head_dim");
  add("causal", "causal");
  std::string extra;
  try {
    extra = specific_params(r.mechanism, p);
  } catch (const std::exception&) {
  }
  for (char& c : extra) c = c == ' ' ? '/' : c == '=' ? ':' : c;
  if (!extra.empty()) s += "/" + extra;
  return s;
}

std::string str(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

json report_gbench(const Report& report) {
  json ctx = json::object();
  const json& c = report.context;
  ctx["date"] = c.value("date", std::string());
  ctx["host_name"] = c.value("host_name", std::string());
  ctx["executable"] = "kittention";
  ctx["num_cpus"] = c.value("num_cpus", 0);
  ctx["mhz_per_cpu"] = 0;  // not measured
  ctx["caches"] = json::array();
  double load[3] = {0, 0, 0};
  const int nload = getloadavg(load, 3);
  ctx["load_avg"] = json::array();
  for (int i = 0; i < nload; ++i) ctx["load_avg"].push_back(load[i]);
  ctx["library_version"] = c.value("kittention_version", std::string());
  std::string bt = c.value("build_type", std::string("release"));
  for (char& ch : bt) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  ctx["library_build_type"] = bt == "debug" ? "debug" : "release";
  ctx["json_schema_version"] = 1;
  // The rest of kittention's context as custom context strings (AddCustomContext).
  for (const auto& [k, v] : c.items())
    if (!ctx.contains(k)) ctx[k] = str(v);
  if (report.peak_gflops) ctx["peak_gflops"] = fmt::format("{}", *report.peak_gflops);

  json benchmarks = json::array();
  int64_t family = 0;
  for (const auto& r : report.results) {
    const std::string name = gbench_name(r);
    const int64_t threads = r.params.has("threads") ? r.params.i("threads") : 1;
    const auto reps = int64_t(r.time.samples.size());
    auto counters = [&](json& row, double seconds) {
      row["FLOPS"] = json_number(seconds > 0 ? r.cost.flops / seconds : NAN);
      row["flops"] = json_number(r.cost.flops);
      row["transcendentals"] = json_number(r.cost.transcendentals);
      if (report.peak_gflops && *report.peak_gflops > 0 && seconds > 0)
        row["fraction_of_peak"] = json_number(r.cost.flops / seconds / 1e9 / *report.peak_gflops);
      row["workspace_bytes"] = double(r.workspace_bytes);
      row["analytic_workspace_bytes"] = json_number(r.cost.workspace_bytes);
      row["peak_rss_bytes"] = double(r.peak_rss_bytes);
      row["max_rel_err"] = json_number(r.check.ran ? r.check.max_rel_err : NAN);
      // The MemoryManager fields, so tools that track memory find it under their names.
      row["allocs_per_iter"] = 0;
      row["max_bytes_used"] = int64_t(r.workspace_bytes);
    };
    auto base = [&](const std::string& run_type) {
      return json{{"name", name},
                  {"family_index", family},
                  {"per_family_instance_index", 0},
                  {"run_name", name},
                  {"run_type", run_type},
                  {"repetitions", reps},
                  {"threads", threads}};
    };
    int64_t index = 0;
    for (double s : r.time.samples) {
      json row = base("iteration");
      row["repetition_index"] = index++;
      row["iterations"] = 1;
      row["real_time"] = json_number(s * 1e3);
      row["cpu_time"] = json_number(s * 1e3);  // wall time: kernels run on `threads` threads
      row["time_unit"] = "ms";
      counters(row, s);
      if (!r.ok()) {
        row["error_occurred"] = true;
        row["error_message"] = r.finite ? "fast path disagrees with the reference"
                                        : "non-finite output";
      }
      benchmarks.push_back(row);
    }
    if (reps >= 2) {  // google/benchmark writes aggregates only with at least 2 repetitions
      const double cv = r.time.mean > 0 ? r.time.stddev / r.time.mean : NAN;
      for (auto [agg, value] : {std::pair<const char*, double>{"mean", r.time.mean},
                                {"median", r.time.median},
                                {"stddev", r.time.stddev},
                                {"cv", cv}}) {
        json row = base("aggregate");
        row["name"] = name + "_" + agg;
        row["aggregate_name"] = agg;
        row["aggregate_unit"] = std::string(agg) == "cv" ? "percentage" : "time";
        row["iterations"] = reps;
        const double v = std::string(agg) == "cv" ? value : value * 1e3;
        row["real_time"] = json_number(v);
        row["cpu_time"] = json_number(v);
        row["time_unit"] = "ms";
        if (std::string(agg) == "mean" || std::string(agg) == "median") counters(row, value);
        benchmarks.push_back(row);
      }
    }
    ++family;
  }
  return {{"context", ctx}, {"benchmarks", benchmarks}};
}

}  // namespace kt
