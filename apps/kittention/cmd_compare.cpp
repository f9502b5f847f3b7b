// kittention compare BASE.json NEW.json: match results by mechanism and parameters, print the
// ratio of medians per row, and flag a regression only when the slowdown exceeds --threshold AND
// a Mann-Whitney U test over the samples says it is significant (docs/regressions.md). Exit 1 on
// any regression, 0 otherwise, 2 on bad input.
#include <fmt/format.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "kittention/compare.hpp"
#include "kittention/error.hpp"

namespace kt::cli {

namespace {

nlohmann::json read_report(const std::string& field, const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(field, fmt::format("cannot open '{}'", path));
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(field, fmt::format("'{}' is not valid JSON: {}", path, e.what()));
  }
}

}  // namespace

Command add_compare(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "compare", "compare two bench JSON reports; exit 1 on a significant regression");
  struct Flags {
    std::string base, neu, threshold = "10%", normalize = "none", format = "table", out, ignore;
    double alpha = 0.05;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("BASE", f->base, "baseline report (kittention bench --format json)")->required();
  sub->add_option("NEW", f->neu, "new report")->required();
  sub->add_option("--threshold", f->threshold,
                  "flag only slowdowns of the median beyond this (10% or 0.1; default 10%)");
  sub->add_option("--alpha", f->alpha, "significance level of the Mann-Whitney U test")
      ->check(CLI::Range(1e-9, 1.0));
  sub->add_option("--normalize", f->normalize,
                  "none | peak: compare each result's fraction of its own run's sgemm peak "
                  "(both reports from bench --peak)")
      ->check(CLI::IsMember({"none", "peak"}));
  sub->add_option("--ignore", f->ignore,
                  "comma list of parameters left out of the matching (e.g. threads)");
  sub->add_option("--format", f->format, "table | md | json")
      ->check(CLI::IsMember({"table", "md", "json"}));
  sub->add_option("--out", f->out, "write the comparison to this file");
  return [f] {
    CompareOptions opt;
    opt.threshold = parse_fraction("threshold", f->threshold);
    opt.alpha = f->alpha;
    opt.normalize_peak = f->normalize == "peak";
    std::stringstream ss(f->ignore);
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) opt.ignore.push_back(item);
    const auto base = read_report("BASE", f->base);
    const auto neu = read_report("NEW", f->neu);
    const CompareResult c = compare_reports(base, neu, opt);
    write_output(f->out, render_compare(c, f->format));
    if (c.regressions)
      fmt::print(stderr, "{} regression(s) beyond {:.0f}% (p < {})\n", c.regressions,
                 100 * opt.threshold, opt.alpha);
    return c.regressions ? 1 : 0;
  };
}

}  // namespace kt::cli
