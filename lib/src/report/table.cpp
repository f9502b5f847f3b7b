// The complexity/ops comparison table: what each mechanism costs by its model, and (unless
// analytic only) what it costs on this machine.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kittention/complexity_table.hpp"
#include "kittention/error.hpp"
#include "kittention/report.hpp"

namespace kt {

using nlohmann::json;

PowerFit model_exponent(const Mechanism& m, const json& given, std::vector<double> seq_lens,
                        std::vector<double>* used) {
  if (seq_lens.empty()) {
    const Params p = resolve_params(m, given);
    const double L = double(p.i("seq_len"));
    seq_lens = {std::max(1.0, std::floor(L / 2)), L, 2 * L};
  }
  std::vector<double> xs, flops;
  for (double L : seq_lens) {
    json g = given;
    g["seq_len"] = int64_t(L);
    try {
      const Params p = resolve_params(m, g);
      const double f = m.cost(p, Path::Fast).flops;
      if (f > 0) xs.push_back(L), flops.push_back(f);
    } catch (const InputError&) {
      // a length this mechanism does not accept (e.g. not a multiple of its block): skip it
    }
  }
  if (used) *used = xs;
  return fit_power_law(xs, flops);
}

namespace {

std::string config_of(const ComplexityRow& r) {
  const Params& p = r.params;
  std::vector<std::string> parts;
  if (p.has("causal")) parts.push_back(p.b("causal") ? "causal" : "full");
  if (p.has("kv_heads") && p.has("heads") && p.i("kv_heads") != p.i("heads"))
    parts.push_back(fmt::format("G={}", p.i("kv_heads")));
  const std::string extra = specific_params(r.mech->name(), p);
  if (!extra.empty()) parts.push_back(extra);
  std::string s;
  for (const auto& x : parts) s += (s.empty() ? "" : " ") + x;
  return s;
}

// A quantity that every row shares, as "L = 4096", or "" when rows differ.
std::string shared(const std::vector<ComplexityRow>& rows, const char* name, const char* label) {
  std::string v;
  for (const auto& r : rows) {
    if (!r.params.has(name)) continue;
    const std::string x = value_str(r.params.values().at(name));
    if (!v.empty() && v != x) return "";
    v = x;
  }
  return v.empty() ? "" : fmt::format("{} = {}", label, v);
}

std::string seq_list(const std::vector<double>& ls) {
  std::string s;
  for (double l : ls) s += (s.empty() ? "" : ", ") + fmt::format("{:.0f}", l);
  return s;
}

std::string bytes_cell(double b) { return b == 0 ? "0 (constant state)" : format_bytes(b); }

}  // namespace

std::string render_complexity_table(const ComplexityTable& t, const std::string& format) {
  bool any_fit = false;
  for (const auto& r : t.rows) any_fit |= r.fitted.has_value();
  if (format == "json") {
    json rows = json::array();
    for (const auto& r : t.rows) {
      json j = {{"mechanism", r.mech->name()},
                {"paper",
                 {{"title", r.mech->paper().title},
                  {"authors", r.mech->paper().authors},
                  {"year", r.mech->paper().year},
                  {"url", r.mech->paper().url()}}},
                {"params", r.params.to_json()},
                {"time_complexity", r.cost.time_complexity},
                {"space_complexity", r.cost.space_complexity},
                {"flops", json_number(r.cost.flops)},
                {"kv_bytes_per_token", json_number(r.cost.kv_bytes_per_token)},
                {"analytic_workspace_bytes", json_number(r.cost.workspace_bytes)},
                {"model_exponent", json_number(r.model.exponent)},
                {"model_seq_len", r.model_seq_len}};
      if (r.measured) {
        j["median"] = json_number(r.measured->time.median);
        j["gflops"] = json_number(r.measured->gflops);
        j["workspace_bytes"] = r.measured->workspace_bytes;
        j["check_passed"] = r.measured->ok();
      }
      if (r.fitted)
        j["fitted_exponent"] = {{"exponent", json_number(r.fitted->exponent)},
                                {"stderr", json_number(r.fitted->stderr_)},
                                {"r2", json_number(r.fitted->r2)},
                                {"seq_len", r.fit_seq_len}};
      rows.push_back(j);
    }
    json out = {{"schema_version", kSchemaVersion}, {"rows", rows}};
    if (!t.analytic_only) out["context"] = t.context;
    return out.dump(2) + "\n";
  }
  const bool md = format == "md";
  if (!md && format != "table")
    throw InputError("format", "unknown format '" + format + "' (allowed: table, md, json)");

  std::vector<std::string> header = {"mechanism", "config",           "paper",
                                     "time",      "space",            "GFLOP",
                                     "KV cache / token", "L-exponent (model)"};
  if (any_fit) header.push_back("L-exponent (measured)");
  if (!t.analytic_only) {
    header.push_back("median time (ms)");
    header.push_back("GFLOP/s");
    header.push_back("workspace");
  }
  std::vector<bool> right = {false, false, false, false, false, true, true, true};
  for (size_t i = right.size(); i < header.size(); ++i) right.push_back(true);
  const std::string pm = md ? " ± " : " +- ";
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : t.rows) {
    const PaperInfo paper = r.mech->paper();
    const std::string who = fmt::format("{} {}", paper.authors, paper.year);
    std::string paper_cell = who;
    if (md) {
      const std::string title = paper.title.empty() ? who : paper.title;
      paper_cell =
          paper.url().empty() ? who : fmt::format("{}, [{}]({})", who, title, paper.url());
    }
    std::vector<std::string> row = {
        md ? "`" + r.mech->name() + "`" : r.mech->name(),
        config_of(r),
        paper_cell,
        r.cost.time_complexity,
        r.cost.space_complexity,
        fmt::format("{:.2f}", r.cost.flops / 1e9),
        bytes_cell(r.cost.kv_bytes_per_token),
        r.model.n >= 2 ? fmt::format("{:.2f}", r.model.exponent) : "-"};
    if (any_fit)
      row.push_back(r.fitted && r.fitted->n >= 2
                        ? fmt::format("{:.2f}{}{:.2f}", r.fitted->exponent, pm, r.fitted->stderr_)
                        : "-");
    if (!t.analytic_only) {
      if (r.measured) {
        row.push_back(fmt::format("{:.2f}{}", r.measured->time.median * 1e3,
                                  r.measured->ok() ? "" : " (FAILED CHECK)"));
        row.push_back(fmt::format("{:.1f}", r.measured->gflops));
        row.push_back(format_bytes(double(r.measured->workspace_bytes)));
      } else {
        row.insert(row.end(), {"-", "-", "-"});
      }
    }
    rows.push_back(row);
  }

  // Notes under the table: shared shapes, definitions, and the machine of a measured table.
  std::vector<std::string> shapes;
  for (auto [name, label] : {std::pair{"batch", "B"}, {"heads", "H"}, {"head_dim", "d"},
                             {"seq_len", "L"}}) {
    const std::string s = shared(t.rows, name, label);
    if (!s.empty()) shapes.push_back(s);
  }
  std::string notes;
  if (!shapes.empty()) {
    std::string s;
    for (const auto& x : shapes) s += (s.empty() ? "" : ", ") + x;
    notes += "Every row at " + s + ", float32. ";
  }
  std::string model_ls;
  if (!t.rows.empty()) {
    model_ls = seq_list(t.rows.front().model_seq_len);
    for (const auto& r : t.rows)
      if (seq_list(r.model_seq_len) != model_ls) model_ls = "";
  }
  notes +=
      "GFLOP: the exact matmul FLOPs of one forward (multiply-add = 2, only the pairs the "
      "algorithm visits). KV cache: bytes per token per layer. L-exponent (model): the slope of "
      "log FLOPs against log L" +
      (model_ls.empty() ? std::string(" around each row's L") : " over L = " + model_ls) + ".";
  if (any_fit)
    notes += " L-exponent (measured): the same fit on the median time (± its standard error)" +
             (t.rows.empty() ? std::string() : " over L = " + seq_list(t.rows.front().fit_seq_len)) +
             ".";
  if (!t.analytic_only) {
    const json& c = t.context;
    auto get = [&](const char* k) {
      return c.contains(k) ? (c[k].is_string() ? c[k].get<std::string>() : c[k].dump()) : "?";
    };
    notes += fmt::format(
        "\n\nMeasured on {} ({} cores, {} threads), OpenBLAS {}, {}, kittention {} ({}), {}; "
        "median of at least {} timed runs, fast path.",
        get("cpu_model"), get("num_cpus"), get("threads"), get("blas_version"), get("compiler"),
        get("kittention_version"), get("git_commit"), get("date"), t.min_reps);
  } else {
    notes += " Analytic only: no measurement, the same on every machine.";
  }

  std::string s;
  if (md) {
    s = "|";
    for (const auto& h : header) s += " " + h + " |";
    s += "\n|";
    for (size_t c = 0; c < header.size(); ++c) s += right[c] ? "---:|" : ":---|";
    s += "\n";
    for (const auto& row : rows) {
      s += "|";
      for (const auto& cell : row) {
        std::string e;
        for (char ch : cell) e += ch == '|' ? std::string("\\|") : std::string(1, ch);
        s += " " + e + " |";
      }
      s += "\n";
    }
    return s + "\n" + notes + "\n";
  }
  auto width = [](const std::string& x) {
    size_t n = 0;
    for (unsigned char c : x) n += (c & 0xC0) != 0x80;
    return n;
  };
  std::vector<size_t> w(header.size());
  for (size_t c = 0; c < w.size(); ++c) {
    w[c] = width(header[c]);
    for (const auto& row : rows) w[c] = std::max(w[c], width(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) l += "  ";
      const std::string pad(w[c] - width(cells[c]), ' ');
      l += right[c] ? pad + cells[c] : cells[c] + pad;
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    return l + "\n";
  };
  s = line(header);
  size_t total = 0;
  for (size_t c = 0; c < w.size(); ++c) total += w[c] + (c ? 2 : 0);
  s += std::string(total, '-') + "\n";
  for (const auto& row : rows) s += line(row);
  return s + "\n" + notes + "\n";
}

}  // namespace kt
