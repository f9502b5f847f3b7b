// kittention compare: match two bench reports by mechanism, path and parameters; per row the ratio
// of medians and a Mann-Whitney U test over the samples; a regression is a slowdown beyond the
// threshold that is also significant. docs/regressions.md states the rule.
#include "kittention/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "kittention/error.hpp"
#include "kittention/report.hpp"

namespace kt {

using nlohmann::json;

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Same:
      return "ok";
    case Verdict::Faster:
      return "faster (not significant)";
    case Verdict::Slower:
      return "slower (not significant)";
    case Verdict::Regression:
      return "REGRESSION";
    case Verdict::Improvement:
      return "improvement";
    case Verdict::Missing:
      return "missing in new";
    case Verdict::New:
      return "new";
  }
  return "?";
}

double parse_fraction(const std::string& field, const std::string& text) {
  std::string t = text;
  std::erase(t, ' ');
  const bool percent = !t.empty() && t.back() == '%';
  if (percent) t.pop_back();
  try {
    size_t used = 0;
    const double v = std::stod(t, &used);
    if (used == t.size() && std::isfinite(v) && v >= 0) return percent ? v / 100 : v;
  } catch (const std::exception&) {
  }
  throw InputError(field, fmt::format("invalid value '{}' (allowed: a percentage such as 10% or a "
                                      "non-negative fraction such as 0.1)",
                                      text));
}

namespace {

struct Entry {
  std::string key, label, mechanism, path;
  json params;                  // after --ignore
  std::vector<double> samples;  // seconds, or seconds x peak GFLOP/s when normalized
  double median = 0;
  double flops = 0;
  int64_t threads = 0;
};

// A short, readable label: "L=4096 H=8 G=2 d=64 causal=true T=1 k=v".
std::string label_of(const json& params) {
  static const std::vector<std::pair<const char*, const char*>> common = {
      {"seq_len", "L"},  {"batch", "B"},      {"heads", "H"},       {"kv_heads", "G"},
      {"head_dim", "d"}, {"value_dim", "dv"}, {"causal", "causal"}, {"threads", "T"}};
  std::string s;
  auto str = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  for (const auto& [name, label] : common) {
    if (!params.contains(name)) continue;
    if (std::string(name) == "kv_heads" && params.contains("heads") &&
        params["heads"] == params[name])
      continue;
    if (std::string(name) == "value_dim" && params.contains("head_dim") &&
        params["head_dim"] == params[name])
      continue;
    s += fmt::format("{}{}={}", s.empty() ? "" : " ", label, str(params[name]));
  }
  for (const auto& [name, v] : params.items()) {
    bool known = name == "scale" || name == "seed" || name == "block_rows" || name == "block_k" ||
                 name == "model_dim";
    for (const auto& [c, l] : common) known |= name == c;
    if (!known) s += fmt::format(" {}={}", name, str(v));
  }
  return s;
}

std::vector<Entry> entries_of(const json& doc, const char* which, const CompareOptions& opt,
                              std::vector<std::string>& warnings, double& peak_out) {
  if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_array())
    throw InputError(which,
                     "not a kittention bench JSON report (expected an object with "
                     "\"results\"; write one with `kittention bench --format json`)");
  if (doc.contains("schema_version") && doc["schema_version"] != kSchemaVersion)
    throw InputError(which, fmt::format("unsupported schema_version {} (this build reads {})",
                                        doc["schema_version"].dump(), kSchemaVersion));
  double peak = 0;
  if (doc.contains("context") && doc["context"].is_object() &&
      doc["context"].contains("peak_gflops") && doc["context"]["peak_gflops"].is_number())
    peak = doc["context"]["peak_gflops"].get<double>();
  peak_out = peak;
  if (opt.normalize_peak && !(peak > 0))
    throw InputError("normalize",
                     fmt::format("{} has no measured sgemm peak (context.peak_gflops): run its "
                                 "bench with --peak, or compare without --normalize peak",
                                 which));
  std::vector<Entry> out;
  std::map<std::string, size_t> seen;
  size_t i = 0;
  for (const auto& r : doc["results"]) {
    const std::string where = fmt::format("{}.results[{}]", which, i++);
    if (!r.is_object() || !r.contains("mechanism") || !r["mechanism"].is_string() ||
        !r.contains("params") || !r["params"].is_object())
      throw InputError(where, "expected an object with \"mechanism\" and \"params\"");
    Entry e;
    e.mechanism = r["mechanism"].get<std::string>();
    const std::string path = r.value("path", std::string("fast"));
    json params = r["params"];
    if (params.contains("threads") && params["threads"].is_number_integer())
      e.threads = params["threads"].get<int64_t>();
    for (const auto& ig : opt.ignore) params.erase(ig);
    e.key = e.mechanism + " " + path + " " + params.dump();
    e.path = path;
    e.params = params;
    e.label = e.mechanism + (path == "fast" ? "" : " (" + path + ")") + " " + label_of(params);
    const double scale = opt.normalize_peak ? peak : 1.0;
    if (r.contains("samples") && r["samples"].is_array())
      for (const auto& s : r["samples"])
        if (s.is_number() && s.get<double>() > 0) e.samples.push_back(s.get<double>() * scale);
    if (r.contains("median") && r["median"].is_number())
      e.median = r["median"].get<double>() * scale;
    else if (!e.samples.empty())
      e.median = compute_stats(e.samples).median;
    else
      throw InputError(where, "no \"median\" and no \"samples\"");
    if (r.contains("flops") && r["flops"].is_number()) e.flops = r["flops"].get<double>();
    if (seen.count(e.key)) {
      warnings.push_back(
          fmt::format("{}: {} appears more than once; the first is used", which, e.label));
      continue;
    }
    seen[e.key] = out.size();
    out.push_back(std::move(e));
  }
  return out;
}

std::string ctx_str(const json& doc, const char* key) {
  if (!doc.contains("context") || !doc["context"].is_object() || !doc["context"].contains(key))
    return "";
  const json& v = doc["context"][key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

CompareResult compare_reports(const json& base, const json& neu, const CompareOptions& opt) {
  CompareResult c;
  c.options = opt;
  c.normalized = opt.normalize_peak;
  double peak_base = 0, peak_new = 0;
  const auto b = entries_of(base, "BASE", opt, c.warnings, peak_base);
  const auto n = entries_of(neu, "NEW", opt, c.warnings, peak_new);
  if (!opt.normalize_peak) {
    for (const char* k : {"host_name", "cpu_model"})
      if (ctx_str(base, k) != ctx_str(neu, k)) {
        c.warnings.push_back(fmt::format(
            "the reports come from different machines ({} '{}' vs '{}'): consider --normalize "
            "peak (both runs with --peak)",
            k, ctx_str(base, k), ctx_str(neu, k)));
        break;
      }
  }
  // A row matches the new result with the same key, else the one whose parameters agree on every
  // name both hold: a parameter added since the baseline (at its default) does not break it.
  std::map<std::string, const Entry*> new_by_key;
  for (const auto& e : n) new_by_key[e.key] = &e;
  auto find_match = [&](const Entry& e) {
    auto exact = new_by_key.find(e.key);
    if (exact != new_by_key.end()) return exact;
    for (const auto& x : n) {
      if (x.mechanism != e.mechanism || x.path != e.path) continue;
      bool agree = true;
      for (const auto& [k, v] : e.params.items())
        if (x.params.contains(k) && x.params[k] != v) agree = false;
      if (agree) return new_by_key.find(x.key);
    }
    return new_by_key.end();
  };
  std::map<std::string, bool> matched_new;
  double log_sum = 0;
  int weak = 0, hopeless = 0;
  for (const auto& e : b) {
    CompareRow row;
    row.key = e.label;
    row.mechanism = e.mechanism;
    row.base_median = e.median;
    auto it = find_match(e);
    if (it == new_by_key.end()) {
      row.verdict = Verdict::Missing;
      c.rows.push_back(row);
      continue;
    }
    const Entry& x = *it->second;
    matched_new[x.key] = true;
    row.new_median = x.median;
    row.ratio = e.median > 0 ? x.median / e.median : INFINITY;
    row.utest = mann_whitney_u(x.samples, e.samples);
    row.weak = std::min(e.samples.size(), x.samples.size()) < 5;
    weak += row.weak;
    // The smallest two-sided p-value these sample sizes can give (exact, no ties).
    if (!e.samples.empty() && !x.samples.empty()) {
      const double m = double(e.samples.size()), k = double(x.samples.size());
      const double log_choose = std::lgamma(m + k + 1) - std::lgamma(m + 1) - std::lgamma(k + 1);
      hopeless += 2 * std::exp(-log_choose) >= opt.alpha;
    } else {
      ++hopeless;
    }
    const bool significant = row.utest.p < opt.alpha;
    const double up = 1 + opt.threshold;
    if (row.ratio > up)
      row.verdict = significant ? Verdict::Regression : Verdict::Slower;
    else if (row.ratio < 1 / up)
      row.verdict = significant ? Verdict::Improvement : Verdict::Faster;
    else
      row.verdict = Verdict::Same;
    c.regressions += row.verdict == Verdict::Regression;
    c.improvements += row.verdict == Verdict::Improvement;
    ++c.matched;
    if (row.ratio > 0 && std::isfinite(row.ratio)) log_sum += std::log(row.ratio);
    c.rows.push_back(row);
  }
  for (const auto& e : n)
    if (!matched_new.count(e.key)) {
      CompareRow row;
      row.key = e.label;
      row.mechanism = e.mechanism;
      row.new_median = e.median;
      row.verdict = Verdict::New;
      c.rows.push_back(row);
    }
  if (c.matched == 0)
    throw InputError("NEW",
                     "no result matches one in BASE (results match by mechanism, path and "
                     "every parameter)");
  c.geomean_ratio = std::exp(log_sum / c.matched);
  if (weak)
    c.warnings.push_back(
        fmt::format("{} row(s) have fewer than 5 samples on a side: the U test is weak (9 or more "
                    "repetitions recommended: --reps 9)",
                    weak));
  if (hopeless)
    c.warnings.push_back(fmt::format(
        "{} row(s) have too few samples for any p-value below alpha = {}: they can never be "
        "flagged",
        hopeless, opt.alpha));
  for (const auto& r : c.rows)
    if (r.verdict == Verdict::Missing || r.verdict == Verdict::New) {
      c.warnings.push_back(
          "some results are in only one of the reports (see 'missing in new' / "
          "'new')");
      break;
    }
  return c;
}

namespace {

std::string cell_value(double v, bool normalized) {
  if (!(v > 0)) return "-";
  // Normalized values are seconds x GFLOP/s: GFLOP of peak-equivalent work.
  return normalized ? fmt::format("{:.4g}", v) : format_time(v);
}

std::string change(double ratio) {
  if (!(ratio > 0) || !std::isfinite(ratio)) return "-";
  return fmt::format("{:+.1f}%", 100 * (ratio - 1));
}

}  // namespace

std::string render_compare(const CompareResult& c, const std::string& format) {
  if (format == "json") {
    json rows = json::array();
    for (const auto& r : c.rows) {
      const bool both = r.verdict != Verdict::Missing && r.verdict != Verdict::New;
      rows.push_back({{"name", r.key},
                      {"mechanism", r.mechanism},
                      {"base_median", r.base_median > 0 ? json_number(r.base_median) : json()},
                      {"new_median", r.new_median > 0 ? json_number(r.new_median) : json()},
                      {"ratio", both ? json_number(r.ratio) : json()},
                      {"p_value", both ? json_number(r.utest.p) : json()},
                      {"u", both ? json_number(r.utest.u) : json()},
                      {"exact", r.utest.exact},
                      {"n_base", r.utest.n_b},
                      {"n_new", r.utest.n_a},
                      {"weak", r.weak},
                      {"verdict", verdict_name(r.verdict)},
                      {"regression", r.verdict == Verdict::Regression}});
    }
    return json{{"threshold", c.options.threshold},
                {"alpha", c.options.alpha},
                {"normalize", c.normalized ? "peak" : "none"},
                {"unit", c.normalized ? "s*peak_gflops" : "s"},
                {"rows", rows},
                {"matched", c.matched},
                {"regressions", c.regressions},
                {"improvements", c.improvements},
                {"geomean_ratio", json_number(c.geomean_ratio)},
                {"warnings", c.warnings}}
               .dump(2) +
           "\n";
  }
  const bool md = format == "md";
  if (!md && format != "table")
    throw InputError("format", "unknown format '" + format + "' (allowed: table, md, json)");
  const std::string unit = c.normalized ? " (s x peak GFLOP/s)" : "";
  const std::vector<std::string> header = {"benchmark", "base" + unit, "new" + unit, "change",
                                           "p",         "n",           "verdict"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : c.rows) {
    const bool both = r.verdict != Verdict::Missing && r.verdict != Verdict::New;
    rows.push_back({r.key, cell_value(r.base_median, c.normalized),
                    cell_value(r.new_median, c.normalized), both ? change(r.ratio) : "-",
                    both ? fmt::format("{:.3f}{}", r.utest.p, r.weak ? "*" : "") : "-",
                    both ? fmt::format("{}/{}", r.utest.n_b, r.utest.n_a) : "-",
                    verdict_name(r.verdict)});
  }
  rows.push_back({"geometric mean", "", "", change(c.geomean_ratio), "", "", ""});
  std::string s;
  if (md) {
    s = "|";
    for (const auto& h : header) s += " " + h + " |";
    s += "\n|:---|---:|---:|---:|---:|---:|:---|\n";
    for (const auto& r : rows) {
      s += "|";
      for (const auto& cell : r) {
        std::string e;
        for (char ch : cell) e += ch == '|' ? std::string("\\|") : std::string(1, ch);
        s += " " + e + " |";
      }
      s += "\n";
    }
  } else {
    std::vector<size_t> w(header.size());
    for (size_t k = 0; k < w.size(); ++k) {
      w[k] = header[k].size();
      for (const auto& r : rows) w[k] = std::max(w[k], r[k].size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string l;
      for (size_t k = 0; k < cells.size(); ++k) {
        if (k) l += "  ";
        l += (k == 0 || k == 6) ? fmt::format("{:<{}}", cells[k], w[k])
                                : fmt::format("{:>{}}", cells[k], w[k]);
      }
      while (!l.empty() && l.back() == ' ') l.pop_back();
      return l + "\n";
    };
    s = line(header);
    size_t total = 0;
    for (size_t k = 0; k < w.size(); ++k) total += w[k] + (k ? 2 : 0);
    s += std::string(total, '-') + "\n";
    for (const auto& r : rows) s += line(r);
  }
  s += fmt::format(
      "\n{} matched, {} regression(s), {} improvement(s). Rule: a regression is a slowdown of the "
      "median by more than {:.0f}% with a Mann-Whitney U p-value below {}{}.\n",
      c.matched, c.regressions, c.improvements, 100 * c.options.threshold, c.options.alpha,
      c.normalized ? ", on time x each run's own sgemm peak (fraction of peak)" : "");
  bool any_weak = false;
  for (const auto& r : c.rows) any_weak |= r.weak;
  if (any_weak) s += "* fewer than 5 samples on a side: the test is weak\n";
  for (const auto& w : c.warnings) s += (md ? "\n> warning: " : "warning: ") + w + "\n";
  return s;
}

}  // namespace kt
