#include "runs.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "kittention/error.hpp"
#include "kittention/registry.hpp"

namespace kt::cli {

using nlohmann::json;
using ordered = nlohmann::ordered_json;

void TimingFlags::add_to(CLI::App& app) {
  warmup_ = app.add_option("--warmup", opt.warmup, "untimed runs before timing")
                ->check(CLI::Range(0, 1000));
  reps_ = app.add_option("--reps", opt.reps, "minimum timed runs")->check(CLI::Range(1, 100000));
  min_time_ = app.add_option("--min-time", opt.min_time, "minimum seconds of timed runs")
                  ->check(CLI::Range(0.0, 3600.0));
}

void TimingFlags::apply_config(const nlohmann::ordered_json& config) {
  if (!config.is_object() || !config.contains("options")) return;
  const auto& o = config["options"];
  auto num = [&](const char* key) {
    if (!o[key].is_number())
      throw InputError(std::string("config.options.") + key, "expected a number");
    return o[key].get<double>();
  };
  if (o.contains("warmup") && !warmup_->count()) opt.warmup = int(num("warmup"));
  if (o.contains("reps") && !reps_->count()) opt.reps = int(num("reps"));
  if (o.contains("min_time") && !min_time_->count()) opt.min_time = num("min_time");
}

void RunFlags::add_to(CLI::App& app, bool lists) {
  const std::string many = lists ? " (a value, a comma list, or a range a..b*k / a..b+k)" : "";
  app.add_option("--mech,-m", mech,
                 lists ? "mechanism(s): a name, a comma list, or 'all'" : "mechanism name");
  app.add_option("--L,--seq-len", seq_len, "sequence length L" + many);
  app.add_option("--heads", heads, "query heads H" + many);
  app.add_option("--kv-heads", kv_heads, "key/value heads G (gqa)" + many);
  app.add_option("--head-dim", head_dim, "head dimension d" + many);
  app.add_option("--batch", batch, "batch size B" + many);
  app.add_option("--threads", threads, "threads (OpenMP and BLAS); default all cores" + many);
  app.add_option("--seed", seed, "seed of the generated inputs");
  app.add_flag(
      "--causal{true}", causal,
      "causal mask: --causal, --causal=false" + std::string(lists ? ", --causal=both" : ""));
  app.add_option("--param,-p", params, "mechanism parameter k=v (repeatable; k=v1,v2 sweeps)");
  app.add_option("--config", config, "JSON config: {\"runs\": [...]} or {\"sweep\": {...}}");
}

std::vector<int64_t> parse_int_list(const std::string& field, const std::string& text) {
  auto to_int = [&](const std::string& s) {
    try {
      size_t used = 0;
      const long long v = std::stoll(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return int64_t(v);
    } catch (const std::exception&) {
      throw InputError(field, fmt::format("invalid value '{}' (allowed: an integer, a comma list "
                                          "such as 1024,2048, or a range such as 512..8192*2)",
                                          text));
    }
  };
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto dots = item.find("..");
    if (dots == std::string::npos) {
      out.push_back(to_int(item));
      continue;
    }
    const int64_t a = to_int(item.substr(0, dots));
    std::string rest = item.substr(dots + 2);
    const auto op = rest.find_first_of("*+");
    const int64_t b = to_int(rest.substr(0, op));
    const int64_t step = op == std::string::npos ? 1 : to_int(rest.substr(op + 1));
    const bool geometric = op != std::string::npos && rest[op] == '*';
    if (a > b || step < (geometric ? 2 : 1) || a <= 0)
      throw InputError(field, fmt::format("invalid range '{}' (allowed: a..b*k with 0 < a <= b, "
                                          "k >= 2; or a..b+k with k >= 1)",
                                          item));
    for (int64_t v = a; v <= b; v = geometric ? v * step : v + step) out.push_back(v);
  }
  if (out.empty()) throw InputError(field, "empty list");
  return out;
}

ordered load_config(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError("config", fmt::format("cannot open '{}'", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  try {
    return ordered::parse(text);  // keeps the sweep's axis order as written
  } catch (const ordered::parse_error& e) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n')
        ++line, col = 1;
      else
        ++col;
    }
    throw InputError("config",
                     fmt::format("{}:{}:{}: invalid JSON: {}", path, line, col, e.what()));
  }
}

namespace {

json plain(const ordered& o) {
  return json::parse(o.dump());
}
std::vector<json> values_of(const ordered& v) {
  std::vector<json> out;
  if (v.is_array())
    for (const auto& x : v) out.push_back(plain(x));
  else
    out.push_back(plain(v));
  return out;
}

// The ordered axes of a sweep: (param name, values).
using Axes = std::vector<std::pair<std::string, std::vector<json>>>;

void set_axis(Axes& axes, const std::string& name, std::vector<json> values) {
  for (auto& [n, v] : axes)
    if (n == name) {
      v = std::move(values);
      return;
    }
  axes.emplace_back(name, std::move(values));
}

std::vector<json> json_ints(const std::string& field, const std::string& text) {
  std::vector<json> v;
  for (int64_t x : parse_int_list(field, text)) v.push_back(x);
  return v;
}

std::vector<json> split_values(const std::string& text) {
  std::vector<json> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(item);
  return v;
}

bool declares(const Mechanism& m, const std::string& param) {
  for (const auto& s : m.params())
    if (s.name == param) return true;
  return false;
}

std::vector<const Mechanism*> mechanisms_of(const ordered& v) {
  if (v.is_string()) return find_mechanisms(v.get<std::string>());
  std::vector<const Mechanism*> out;
  if (!v.is_array()) throw InputError("mech", "expected a name or a list of names");
  for (const auto& x : v) {
    if (!x.is_string()) throw InputError("mech", "expected a name or a list of names");
    for (auto* m : find_mechanisms(x.get<std::string>())) out.push_back(m);
  }
  return out;
}

// Cross product of axes for each mechanism; keys a mechanism does not declare are skipped for it.
void cross(const Mechanism* m, const Axes& axes, size_t k, json& cur, std::vector<RunSpec>& out) {
  if (k == axes.size()) {
    out.push_back({m, cur});
    return;
  }
  const auto& [name, values] = axes[k];
  if (!declares(*m, name)) return cross(m, axes, k + 1, cur, out);
  for (const auto& v : values) {
    cur[name] = v;
    cross(m, axes, k + 1, cur, out);
  }
  cur.erase(name);
}

}  // namespace

std::vector<RunSpec> expand_runs(RunFlags& f) {
  if (!f.config.empty()) f.config_json = load_config(f.config);
  const ordered& cfg = f.config_json;
  if (!cfg.is_null() && !cfg.is_object())
    throw InputError("config", "the top level must be an object with \"runs\" or \"sweep\"");

  // Axes from flags (they override the config's values of the same name).
  Axes flag_axes;
  if (!f.seq_len.empty()) set_axis(flag_axes, "seq_len", json_ints("seq_len", f.seq_len));
  if (!f.heads.empty()) set_axis(flag_axes, "heads", json_ints("heads", f.heads));
  if (!f.kv_heads.empty()) set_axis(flag_axes, "kv_heads", json_ints("kv_heads", f.kv_heads));
  if (!f.head_dim.empty()) set_axis(flag_axes, "head_dim", json_ints("head_dim", f.head_dim));
  if (!f.batch.empty()) set_axis(flag_axes, "batch", json_ints("batch", f.batch));
  if (!f.threads.empty()) set_axis(flag_axes, "threads", json_ints("threads", f.threads));
  if (!f.seed.empty()) set_axis(flag_axes, "seed", json_ints("seed", f.seed));
  if (!f.causal.empty()) {
    if (f.causal == "both")
      set_axis(flag_axes, "causal", {false, true});
    else
      set_axis(flag_axes, "causal", {f.causal});
  }
  for (const auto& kv : f.params) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw InputError("param", fmt::format("'{}' is not of the form name=value", kv));
    set_axis(flag_axes, kv.substr(0, eq), split_values(kv.substr(eq + 1)));
  }

  // Base runs: explicit "runs", or a "sweep", or the flags alone.
  std::vector<std::pair<std::vector<const Mechanism*>, Axes>> groups;
  if (cfg.contains("runs")) {
    if (!cfg["runs"].is_array()) throw InputError("config.runs", "expected a list of run objects");
    for (const auto& run : cfg["runs"]) {
      if (!run.is_object() || !run.contains("mech"))
        throw InputError("config.runs", "each run needs \"mech\" and its parameters");
      Axes axes;
      for (const auto& [k, v] : run.items())
        if (k != "mech") set_axis(axes, k, values_of(v));
      groups.emplace_back(mechanisms_of(run["mech"]), axes);
    }
  } else {
    Axes axes;
    ordered mech = f.mech.empty() ? ordered() : ordered(f.mech);
    if (cfg.contains("sweep")) {
      const ordered& s = cfg["sweep"];
      if (!s.is_object()) throw InputError("config.sweep", "expected an object of axes");
      for (const auto& [k, v] : s.items()) {
        if (k == "mech") {
          if (mech.is_null()) mech = v;
          continue;
        }
        set_axis(axes, k, values_of(v));
      }
    }
    if (mech.is_null())
      throw InputError("mech", "no mechanism given (use --mech NAME, a comma list, or 'all')");
    groups.emplace_back(mechanisms_of(mech), axes);
  }
  if (!f.mech.empty() && cfg.contains("runs")) {
    // --mech restricts the config's runs to those mechanisms.
    const auto keep = find_mechanisms(f.mech);
    for (auto& g : groups)
      std::erase_if(g.first, [&](const Mechanism* m) {
        return std::find(keep.begin(), keep.end(), m) == keep.end();
      });
    // Runs left without a mechanism drop out with their keys (other mechanisms' parameters).
    std::erase_if(groups, [](const auto& g) { return g.first.empty(); });
  }

  std::vector<RunSpec> out;
  std::vector<std::string> used;  // flag keys some mechanism declares
  for (auto& [mechs, axes] : groups) {
    for (const auto& [name, values] : flag_axes) set_axis(axes, name, values);
    for (const Mechanism* m : mechs) {
      for (const auto& [name, values] : axes)
        if (declares(*m, name)) used.push_back(name);
      json cur = json::object();
      cross(m, axes, 0, cur, out);
    }
  }
  // A key no mechanism declares is a mistake (a typo or the wrong mechanism): say so.
  std::vector<std::string> all_keys;
  for (const auto& [name, v] : flag_axes) all_keys.push_back(name);
  for (const auto& [mechs, axes] : groups)
    for (const auto& [name, v] : axes) all_keys.push_back(name);
  for (const auto& k : all_keys)
    if (std::find(used.begin(), used.end(), k) == used.end()) {
      std::vector<std::string> known;
      for (const auto& [mechs, axes] : groups)
        for (const Mechanism* m : mechs)
          for (const auto& s : m->params()) known.push_back(s.name);
      std::sort(known.begin(), known.end());
      known.erase(std::unique(known.begin(), known.end()), known.end());
      const std::string hint = closest_match(k, known);
      if (hint == k)  // declared, but not by the mechanism(s) of the run that sets it
        throw InputError(k, "not a parameter of the mechanism(s) of the run that sets it");
      throw InputError(k, fmt::format("unknown parameter for the selected mechanism(s){} (their "
                                      "parameters: {})",
                                      hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                                      fmt::join(known, ", ")));
    }
  if (out.empty()) throw InputError("mech", "no run selected");
  return out;
}

}  // namespace kt::cli
