// The Mann-Whitney U test and power-law fits (empirical complexity of time versus seq_len).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "kittention/compare.hpp"
#include "kittention/report.hpp"

namespace kt {

namespace {

// Number of arrangements of m a's and n b's with U_a = u, for every u in [0, m·n] (exact null
// distribution of U without ties): c(i, j, u) = c(i-1, j, u-j) + c(i, j-1, u).
std::vector<double> u_distribution(size_t m, size_t n) {
  std::vector<std::vector<double>> prev(m + 1), cur(m + 1);
  for (size_t i = 0; i <= m; ++i) prev[i] = {1.0};  // j = 0: U is always 0
  for (size_t j = 1; j <= n; ++j) {
    cur[0] = {1.0};
    for (size_t i = 1; i <= m; ++i) {
      cur[i].assign(i * j + 1, 0.0);
      for (size_t u = 0; u < prev[i].size(); ++u) cur[i][u] += prev[i][u];
      for (size_t u = 0; u < cur[i - 1].size(); ++u) cur[i][u + j] += cur[i - 1][u];
    }
    std::swap(prev, cur);
  }
  return prev[m];
}

}  // namespace

UTest mann_whitney_u(const std::vector<double>& a, const std::vector<double>& b) {
  UTest t;
  t.n_a = a.size();
  t.n_b = b.size();
  if (a.empty() || b.empty()) return t;
  const size_t m = a.size(), n = b.size(), N = m + n;
  // Ranks of the pooled sample, ties given their average rank.
  std::vector<std::pair<double, int>> pooled;
  for (double x : a) pooled.push_back({x, 0});
  for (double x : b) pooled.push_back({x, 1});
  std::sort(pooled.begin(), pooled.end());
  double rank_sum_a = 0, tie_term = 0;
  bool ties = false;
  for (size_t i = 0; i < N;) {
    size_t j = i;
    while (j < N && pooled[j].first == pooled[i].first) ++j;
    const double avg_rank = 0.5 * double(i + 1 + j);  // ranks i+1 .. j
    const double tcount = double(j - i);
    if (j - i > 1) ties = true;
    tie_term += tcount * tcount * tcount - tcount;
    for (size_t k = i; k < j; ++k)
      if (pooled[k].second == 0) rank_sum_a += avg_rank;
    i = j;
  }
  t.u = rank_sum_a - double(m) * double(m + 1) / 2;
  const double mu = double(m) * double(n) / 2;
  if (!ties && N <= 40) {
    const std::vector<double> c = u_distribution(m, n);
    const double total = std::accumulate(c.begin(), c.end(), 0.0);
    const auto u = size_t(std::llround(t.u));
    double le = 0, ge = 0;
    for (size_t k = 0; k < c.size(); ++k) {
      if (k <= u) le += c[k];
      if (k >= u) ge += c[k];
    }
    t.p = std::min(1.0, 2 * std::min(le, ge) / total);
    t.exact = true;
    return t;
  }
  const double var =
      double(m) * double(n) / 12 * (double(N + 1) - tie_term / (double(N) * double(N - 1)));
  if (var <= 0) return t;  // every value equal: no evidence of a difference
  const double diff = t.u - mu;
  const double corrected = std::max(0.0, std::abs(diff) - 0.5);  // continuity correction
  t.z = (diff < 0 ? -1 : 1) * corrected / std::sqrt(var);
  t.p = std::min(1.0, std::erfc(std::abs(t.z) / std::sqrt(2.0)));
  return t;
}

PowerFit fit_power_law(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<std::pair<double, double>> pts;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)
    if (x[i] > 0 && y[i] > 0 && std::isfinite(x[i]) && std::isfinite(y[i]))
      pts.push_back({std::log(x[i]), std::log(y[i])});
  std::sort(pts.begin(), pts.end());
  PowerFit f;
  f.n = pts.size();
  if (f.n < 2) return f;
  double mx = 0, my = 0;
  for (auto [lx, ly] : pts) mx += lx, my += ly;
  mx /= double(f.n), my /= double(f.n);
  double sxx = 0, sxy = 0, syy = 0;
  for (auto [lx, ly] : pts) {
    sxx += (lx - mx) * (lx - mx);
    sxy += (lx - mx) * (ly - my);
    syy += (ly - my) * (ly - my);
  }
  if (sxx <= 0) return f;  // a single distinct x
  f.exponent = sxy / sxx;
  f.intercept = my - f.exponent * mx;
  double sse = 0;
  for (auto [lx, ly] : pts) {
    const double r = ly - (f.intercept + f.exponent * lx);
    sse += r * r;
  }
  f.stderr_ = f.n > 2 ? std::sqrt(sse / double(f.n - 2) / sxx) : 0.0;
  f.r2 = syy > 0 ? 1 - sse / syy : 1.0;
  f.local_min = INFINITY, f.local_max = -INFINITY;
  for (size_t i = 1; i < f.n; ++i) {
    const double dx = pts[i].first - pts[i - 1].first;
    if (dx <= 0) continue;
    const double s = (pts[i].second - pts[i - 1].second) / dx;
    f.local_min = std::min(f.local_min, s);
    f.local_max = std::max(f.local_max, s);
  }
  if (!std::isfinite(f.local_min)) f.local_min = f.local_max = f.exponent;
  return f;
}

namespace {

// "B=1 H=8 G=2 d=64 causal=true k=v": what identifies a group besides L.
std::string fixed_params(const std::string& mechanism, const Params& p) {
  std::string s;
  auto add = [&](const char* label, const char* name) {
    if (!p.has(name)) return;
    if (!s.empty()) s += ' ';
    s += fmt::format("{}={}", label, value_str(p.values().at(name)));
  };
  add("B", "batch");
  add("H", "heads");
  if (p.has("kv_heads") && p.has("heads") && p.i("kv_heads") != p.i("heads")) add("G", "kv_heads");
  add("d", "head_dim");
  add("causal", "causal");
  std::string extra;
  try {
    extra = specific_params(mechanism, p);
  } catch (const std::exception&) {
  }
  if (!extra.empty()) s += (s.empty() ? "" : " ") + extra;
  return s;
}

}  // namespace

std::vector<ScalingFit> fit_scaling(const std::vector<BenchResult>& results, size_t min_points) {
  std::vector<std::string> order;
  std::map<std::string, ScalingFit> groups;
  for (const auto& r : results) {
    if (!r.params.has("seq_len")) continue;
    std::string key = r.mechanism + "|" + path_name(r.path);
    for (const auto& [name, v] : r.params.values())
      if (name != "seq_len" && name != "seed") key += "|" + name + "=" + value_str(v);
    auto [it, inserted] = groups.try_emplace(key);
    ScalingFit& g = it->second;
    if (inserted) {
      order.push_back(key);
      g.mechanism = r.mechanism;
      g.path = path_name(r.path);
      g.fixed = fixed_params(r.mechanism, r.params);
      g.big_o = r.cost.time_complexity;
    }
    g.seq_len.push_back(double(r.params.i("seq_len")));
    g.median.push_back(r.time.median);
    g.flops.push_back(r.cost.flops);
  }
  std::vector<ScalingFit> out;
  for (const auto& key : order) {
    ScalingFit g = groups.at(key);
    std::vector<double> distinct = g.seq_len;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    if (distinct.size() < min_points) continue;
    g.time = fit_power_law(g.seq_len, g.median);
    g.model = fit_power_law(g.seq_len, g.flops);
    out.push_back(std::move(g));
  }
  return out;
}

nlohmann::json scaling_json(const std::vector<ScalingFit>& fits) {
  nlohmann::json a = nlohmann::json::array();
  auto fit = [](const PowerFit& f) {
    return nlohmann::json{{"exponent", json_number(f.exponent)},
                          {"stderr", json_number(f.stderr_)},
                          {"r2", json_number(f.r2)},
                          {"local_min", json_number(f.local_min)},
                          {"local_max", json_number(f.local_max)},
                          {"points", f.n}};
  };
  for (const auto& g : fits)
    a.push_back({{"mechanism", g.mechanism},
                 {"path", g.path},
                 {"params", g.fixed},
                 {"big_o", g.big_o},
                 {"seq_len", g.seq_len},
                 {"fitted", fit(g.time)},
                 {"model", fit(g.model)}});
  return a;
}

std::string scaling_text(const std::vector<ScalingFit>& fits, bool markdown) {
  if (fits.empty()) return "";
  const std::vector<std::string> header = {"mechanism", "path",   "params", "L",
                                           "fitted exponent", "local", "R²",
                                           "model exponent",  "big-O"};
  std::vector<std::vector<std::string>> rows;
  const std::string pm = markdown ? " ± " : " +- ";
  for (const auto& g : fits) {
    auto [lo, hi] = std::minmax_element(g.seq_len.begin(), g.seq_len.end());
    rows.push_back({g.mechanism, g.path, g.fixed, fmt::format("{:.0f}..{:.0f}", *lo, *hi),
                    fmt::format("{:.2f}{}{:.2f}", g.time.exponent, pm, g.time.stderr_),
                    fmt::format("{:.2f}..{:.2f}", g.time.local_min, g.time.local_max),
                    fmt::format("{:.3f}", g.time.r2), fmt::format("{:.2f}", g.model.exponent),
                    g.big_o});
  }
  const std::string title =
      "Scaling with L: exponent of median time vs L (least squares on log-log, ± its standard "
      "error; local = slopes between consecutive points) next to the model's exponent (the same "
      "fit on the analytic FLOPs).";
  std::string s;
  if (markdown) {
    s = title + "\n\n|";
    for (const auto& h : header) s += " " + h + " |";
    s += "\n|:---|:---|:---|---:|---:|---:|---:|---:|:---|\n";
    for (const auto& r : rows) {
      s += "|";
      for (const auto& c : r) s += " " + c + " |";
      s += "\n";
    }
    return s;
  }
  std::vector<size_t> w(header.size());
  auto width = [](const std::string& x) {  // code points, for the UTF-8 in big-O and R²
    size_t n = 0;
    for (unsigned char c : x) n += (c & 0xC0) != 0x80;
    return n;
  };
  for (size_t c = 0; c < w.size(); ++c) {
    w[c] = width(header[c]);
    for (const auto& r : rows) w[c] = std::max(w[c], width(r[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) l += "  ";
      l += cells[c] + std::string(w[c] - width(cells[c]), ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    return l + "\n";
  };
  s = title + "\n" + line(header);
  for (const auto& r : rows) s += line(r);
  return s;
}

}  // namespace kt
