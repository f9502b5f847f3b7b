// kittention list [--format table|md|json]: every mechanism, its paper, parameters and defaults.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "kittention/error.hpp"
#include "kittention/registry.hpp"

namespace kt::cli {

namespace {

std::string default_text(const ParamSpec& s) {
  if (s.default_value) return value_str(*s.default_value);
  return s.default_text.empty() ? "derived" : s.default_text;
}

std::string allowed_text(const ParamSpec& s) {
  if (s.type == ParamType::Choice) return fmt::format("{}", fmt::join(s.choices, " | "));
  if (s.type == ParamType::Bool) return "true | false";
  std::string lo = s.min ? fmt::format("{:g}", *s.min) : "",
              hi = s.max ? fmt::format("{:g}", *s.max) : "";
  return fmt::format("{} [{}, {}]", param_type_name(s.type), lo.empty() ? "-inf" : lo,
                     hi.empty() ? "inf" : hi);
}

nlohmann::json mechanism_json(const Mechanism& m) {
  nlohmann::json params = nlohmann::json::array();
  for (const auto& s : m.params()) {
    nlohmann::json j = {
        {"name", s.name},
        {"type", param_type_name(s.type)},
        {"help", s.help},
        {"default", s.default_value ? value_json(*s.default_value) : nlohmann::json(nullptr)},
        {"common", s.common}};
    if (!s.default_value) j["default_text"] = s.default_text;
    if (!s.choices.empty()) j["allowed"] = s.choices;
    if (s.min) j["min"] = *s.min;
    if (s.max) j["max"] = *s.max;
    params.push_back(j);
  }
  const PaperInfo p = m.paper();
  return {{"name", m.name()},
          {"aliases", m.aliases()},
          {"family", m.family()},
          {"summary", m.summary()},
          {"paper",
           {{"title", p.title},
            {"authors", p.authors},
            {"year", p.year},
            {"arxiv", p.arxiv},
            {"url", p.url()}}},
          {"params", params}};
}

std::string list_text(bool markdown) {
  std::string s;
  for (const Mechanism* m : all_mechanisms()) {
    const PaperInfo p = m->paper();
    if (markdown) {
      s += fmt::format(
          "### `{}` ({})\n{}. [{}]({}), {}, {}.\n\n| parameter | type | default | allowed | "
          "meaning |\n|---|---|---|---|---|\n",
          m->name(), m->family(), m->summary(), p.title, p.url(), p.authors, p.year);
      for (const auto& ps : m->params())
        s += fmt::format("| `{}` | {} | {} | {} | {} |\n", ps.name, param_type_name(ps.type),
                         default_text(ps), allowed_text(ps), ps.help);
      s += "\n";
    } else {
      s += fmt::format(
          "{} ({}){}\n  {}\n  paper: {}, {} {}, arXiv {}\n", m->name(), m->family(),
          m->aliases().empty() ? "" : fmt::format(" aliases: {}", fmt::join(m->aliases(), ", ")),
          m->summary(), p.title, p.authors, p.year, p.arxiv);
      for (const auto& ps : m->params())
        if (!ps.common)
          s += fmt::format("  --param {:<28} {} ({})\n", ps.name + "=" + default_text(ps), ps.help,
                           allowed_text(ps));
      s += "\n";
    }
  }
  return s;
}

}  // namespace

Command add_list(CLI::App& app) {
  auto* sub = app.add_subcommand("list", "list mechanisms, papers, parameters and defaults");
  auto format = std::make_shared<std::string>("table");
  sub->add_option("--format", *format, "table | md | json")
      ->check(CLI::IsMember({"table", "md", "json"}));
  return [format] {
    if (*format == "json") {
      nlohmann::json all = nlohmann::json::array();
      for (const Mechanism* m : all_mechanisms()) all.push_back(mechanism_json(*m));
      write_output("", nlohmann::json{{"schema_version", 1}, {"mechanisms", all}}.dump(2) + "\n");
    } else {
      write_output("", list_text(*format == "md"));
    }
    return 0;
  };
}

}  // namespace kt::cli
