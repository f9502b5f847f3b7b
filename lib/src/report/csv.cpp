// CSV for spreadsheets: a header line, then one line per result (RFC 4180: fields holding a comma,
// a quote or a newline are quoted, quotes doubled). No preamble, unlike google/benchmark's CSV.
#include <fmt/format.h>

#include <cmath>

#include "kittention/report.hpp"

namespace kt {

namespace {

std::string quote(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string num(double x) {
  return std::isfinite(x) ? fmt::format("{}", x) : "";
}

std::string param(const Params& p, const char* name) {
  return p.has(name) ? value_str(p.values().at(name)) : "";
}

}  // namespace

std::string report_csv(const Report& report) {
  std::string s =
      "mechanism,path,batch,heads,kv_heads,seq_len,head_dim,value_dim,causal,threads,params,"
      "flops,issued_flops,transcendentals,iterations,median_s,min_s,mean_s,stddev_s,gflops,"
      "fraction_of_peak,analytic_workspace_bytes,workspace_bytes,peak_rss_bytes,"
      "kv_bytes_per_token,check_passed,max_rel_err\n";
  for (const auto& r : report.results) {
    const Params& p = r.params;
    std::string extra;
    try {
      extra = specific_params(r.mechanism, p);
    } catch (const std::exception&) {
    }
    const double frac =
        report.peak_gflops && *report.peak_gflops > 0 ? r.gflops / *report.peak_gflops : NAN;
    const std::vector<std::string> cells = {
        r.mechanism,
        path_name(r.path),
        param(p, "batch"),
        param(p, "heads"),
        param(p, "kv_heads"),
        param(p, "seq_len"),
        param(p, "head_dim"),
        param(p, "value_dim"),
        param(p, "causal"),
        param(p, "threads"),
        extra,
        num(r.cost.flops),
        num(r.cost.issued_flops),
        num(r.cost.transcendentals),
        std::to_string(r.time.samples.size()),
        num(r.time.median),
        num(r.time.min),
        num(r.time.mean),
        num(r.time.stddev),
        num(r.gflops),
        num(frac),
        num(r.cost.workspace_bytes),
        std::to_string(r.workspace_bytes),
        std::to_string(r.peak_rss_bytes),
        num(r.cost.kv_bytes_per_token),
        !r.check.ran ? "" : (r.ok() ? "true" : "false"),
        r.check.ran ? num(r.check.max_rel_err) : "",
    };
    for (size_t i = 0; i < cells.size(); ++i) s.append(i ? "," : "").append(quote(cells[i]));
    s += "\n";
  }
  return s;
}

}  // namespace kt
