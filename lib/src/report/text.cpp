// Console table and Markdown: the same columns; Markdown escapes pipes and states units in the
// header, one unit per column (hyperfine / llama-bench conventions).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kittention/compare.hpp"
#include "kittention/error.hpp"
#include "kittention/registry.hpp"
#include "kittention/report.hpp"

namespace kt {

std::string format_time(double s) {
  if (!std::isfinite(s)) return "-";
  if (s >= 1) return fmt::format("{:.3f} s", s);
  if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.2f} us", s * 1e6);
}

std::string format_bytes(double b) {
  if (!std::isfinite(b)) return "-";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

std::string specific_params(const std::string& mechanism, const Params& p) {
  std::string s;
  for (const auto& spec : find_mechanism(mechanism).params()) {
    if (spec.common || spec.name == "model_dim" || !p.has(spec.name)) continue;
    const bool tuning =
        spec.name == "block_rows" || spec.name == "block_k" || spec.name == "kernel";
    // Tuning knobs show only when set away from a static default (derived ones never).
    if (tuning && (!spec.default_value || *spec.default_value == p.values().at(spec.name)))
      continue;
    if (!s.empty()) s += ' ';
    s += spec.name + "=" + value_str(p.values().at(spec.name));
  }
  return s;
}

namespace {

struct Table {
  std::vector<std::string> header;
  std::vector<bool> right;  // right-aligned (numbers)
  std::vector<std::vector<std::string>> rows;
};

std::string int_or_dash(const Params& p, const char* name) {
  return p.has(name) ? value_str(p.values().at(name)) : "-";
}

// Pick one time unit for a whole column: the one that suits the smallest median.
std::pair<double, std::string> time_unit(const std::vector<BenchResult>& rs) {
  double smallest = INFINITY;
  for (const auto& r : rs)
    if (r.time.median > 0) smallest = std::min(smallest, r.time.median);
  if (smallest >= 1) return {1.0, "s"};
  if (smallest >= 1e-3 || !std::isfinite(smallest)) return {1e3, "ms"};
  return {1e6, "us"};
}

Table build_table(const Report& report, bool markdown) {
  const auto [tscale, tunit] = time_unit(report.results);
  Table t;
  t.header = {"mechanism", "path",
              "B",         "H",
              "G",         "L",
              "d",         "causal",
              "params",    fmt::format("time ({})", tunit),
              "GFLOP/s",   "% peak",
              "GFLOP",     "workspace (MiB)",
              "RSS (MiB)", "check"};
  t.right = {false, false, true, true, true, true, true, false,
             false, true,  true, true, true, true, true, false};
  for (const auto& r : report.results) {
    const Params& p = r.params;
    std::string check = !r.check.ran     ? "skipped"
                        : r.check.passed ? fmt::format("ok {:.1e}{}", r.check.max_rel_err,
                                                       r.check.reduced ? "*" : "")
                                         : fmt::format("FAIL {:.1e}", r.check.max_rel_err);
    if (!r.finite) check = "FAIL non-finite";
    const std::string pm = markdown ? " ± " : " +- ";
    t.rows.push_back({
        r.mechanism,
        path_name(r.path),
        int_or_dash(p, "batch"),
        int_or_dash(p, "heads"),
        int_or_dash(p, "kv_heads"),
        int_or_dash(p, "seq_len"),
        int_or_dash(p, "head_dim"),
        int_or_dash(p, "causal"),
        specific_params(r.mechanism, p),
        fmt::format("{:.3f}{}{:.3f}", r.time.median * tscale, pm, r.time.stddev * tscale),
        fmt::format("{:.1f}", r.gflops),
        report.peak_gflops ? fmt::format("{:.0f}%", 100 * r.gflops / *report.peak_gflops) : "-",
        fmt::format("{:.3f}", r.cost.flops / 1e9),
        fmt::format("{:.2f}", double(r.workspace_bytes) / (1 << 20)),
        fmt::format("{:.0f}", double(r.peak_rss_bytes) / (1 << 20)),
        check,
    });
  }
  return t;
}

std::string escape_md(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string report_table(const Report& report) {
  Table t = build_table(report, false);
  std::vector<size_t> w(t.header.size());
  for (size_t c = 0; c < w.size(); ++c) {
    w[c] = t.header[c].size();
    for (const auto& row : t.rows) w[c] = std::max(w[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) s += "  ";
      s += t.right[c] ? fmt::format("{:>{}}", cells[c], w[c])
                      : fmt::format("{:<{}}", cells[c], w[c]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string s = line(t.header);
  size_t total = 0;
  for (size_t c = 0; c < w.size(); ++c) total += w[c] + (c ? 2 : 0);
  s += std::string(total, '-') + "\n";
  for (const auto& row : t.rows) s += line(row);
  if (report.peak_gflops) s += fmt::format("sgemm peak: {:.1f} GFLOP/s\n", *report.peak_gflops);
  bool reduced = false;
  for (const auto& r : report.results) reduced |= r.check.reduced;
  if (reduced) s += "* checked against the reference at a reduced seq_len\n";
  const std::string scaling = scaling_text(fit_scaling(report.results), false);
  if (!scaling.empty()) s += "\n" + scaling;
  return s;
}

std::string report_markdown(const Report& report) {
  Table t = build_table(report, true);
  std::string s = "|";
  for (const auto& h : t.header) s.append(" ").append(escape_md(h)).append(" |");
  s += "\n|";
  for (size_t c = 0; c < t.header.size(); ++c) s += t.right[c] ? "---:|" : ":---|";
  s += "\n";
  for (const auto& row : t.rows) {
    s += "|";
    for (const auto& cell : row) s.append(" ").append(escape_md(cell)).append(" |");
    s += "\n";
  }
  const std::string scaling = scaling_text(fit_scaling(report.results), true);
  if (!scaling.empty()) s += "\n" + scaling;
  return s;
}

const std::vector<std::string>& report_formats() {
  static const std::vector<std::string> f = {"table", "md", "json", "gbench", "csv"};
  return f;
}

std::string render_report(const Report& report, const std::string& format) {
  if (format == "table") return report_table(report);
  if (format == "md") return report_markdown(report);
  if (format == "json") {
    nlohmann::json j = report_json(report);
    const auto fits = fit_scaling(report.results);
    if (!fits.empty()) j["scaling"] = scaling_json(fits);
    return j.dump(2) + "\n";
  }
  if (format == "gbench") return report_gbench(report).dump(2) + "\n";
  if (format == "csv") return report_csv(report);
  throw InputError("format",
                   "unknown format '" + format + "' (allowed: table, md, json, gbench, csv)");
}

}  // namespace kt
