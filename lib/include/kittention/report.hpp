// Reporters: one format each behind one entry point. JSON follows contract.md (schema_version 1;
// never NaN or Infinity: null instead); the console table is for people; Markdown for READMEs.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kittention/bench.hpp"

namespace kt {

inline constexpr int kSchemaVersion = 1;

struct Report {
  nlohmann::json context;  // machine_context(), plus peak_gflops when measured
  std::vector<BenchResult> results;
  std::optional<double> peak_gflops;
};

// A finite number, or null.
nlohmann::json json_number(double x);
nlohmann::json result_json(const BenchResult& r, std::optional<double> peak_gflops);
nlohmann::json report_json(const Report& report);
std::string report_table(const Report& report);
std::string report_markdown(const Report& report);

// Google Benchmark's JSON schema (context + benchmarks: one "iteration" row per sample, then
// mean/median/stddev/cv aggregates), so google/benchmark's tools/compare.py and CI actions that
// read that format work unchanged. Times in ms; counters: FLOPS (rate), flops, bytes.
nlohmann::json report_gbench(const Report& report);
// One header line, then one line per result (RFC 4180 quoting; no preamble).
std::string report_csv(const Report& report);

// format: "table" | "md" | "json" | "gbench" | "csv" (InputError otherwise). The table and md
// formats end with a "Scaling with L" section when a group of results has >= 3 seq_len points;
// json then carries the same fits under "scaling".
std::string render_report(const Report& report, const std::string& format);
const std::vector<std::string>& report_formats();

// Mechanism-specific parameters of a result as "k=v k=v" (common and tuning ones left out).
std::string specific_params(const std::string& mechanism, const Params& p);

// Human units: "12.3 ms", "1.5 GiB".
std::string format_time(double seconds);
std::string format_bytes(double bytes);

}  // namespace kt
