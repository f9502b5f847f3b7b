#include "kittention/params.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kittention/error.hpp"
#include "kittention/mechanism.hpp"

namespace kt {

using nlohmann::json;

const Value& Params::at(const std::string& name) const {
  auto it = values_.find(name);
  KT_ASSERT(it != values_.end(), "parameter '" + name + "' was not resolved");
  return it->second;
}

int64_t Params::i(const std::string& name) const {
  return std::get<int64_t>(at(name));
}
double Params::f(const std::string& name) const {
  const Value& v = at(name);
  if (auto* x = std::get_if<int64_t>(&v)) return static_cast<double>(*x);
  return std::get<double>(v);
}
bool Params::b(const std::string& name) const {
  return std::get<bool>(at(name));
}
const std::string& Params::s(const std::string& name) const {
  return std::get<std::string>(at(name));
}

json value_json(const Value& v) {
  return std::visit([](const auto& x) { return json(x); }, v);
}

std::string value_str(const Value& v) {
  struct V {
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const { return fmt::format("{:g}", x); }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& x) const { return x; }
  };
  return std::visit(V{}, v);
}

json Params::to_json() const {
  json j = json::object();
  for (const auto& [k, v] : values_) j[k] = value_json(v);
  return j;
}

std::string param_type_name(ParamType t) {
  switch (t) {
    case ParamType::Int:
      return "int";
    case ParamType::Float:
      return "float";
    case ParamType::Bool:
      return "bool";
    case ParamType::Choice:
      return "choice";
  }
  return "?";
}

namespace {

std::string allowed_text(const ParamSpec& s) {
  switch (s.type) {
    case ParamType::Bool:
      return "true or false";
    case ParamType::Choice:
      return fmt::format("one of {}", fmt::join(s.choices, ", "));
    default: {
      std::string kind = s.type == ParamType::Int ? "an integer" : "a number";
      if (s.min && s.max) return fmt::format("{} in [{:g}, {:g}]", kind, *s.min, *s.max);
      if (s.min) return fmt::format("{} >= {:g}", kind, *s.min);
      if (s.max) return fmt::format("{} <= {:g}", kind, *s.max);
      return kind;
    }
  }
}

[[noreturn]] void bad_value(const ParamSpec& s, const std::string& given) {
  throw InputError(s.name, fmt::format("invalid value '{}' (allowed: {})", given, allowed_text(s)));
}

void check_range(const ParamSpec& s, double x, const std::string& given) {
  if (!std::isfinite(x) || (s.min && x < *s.min) || (s.max && x > *s.max)) bad_value(s, given);
}

}  // namespace

Value parse_param(const ParamSpec& s, const json& given) {
  const std::string text = given.is_string() ? given.get<std::string>() : given.dump();
  switch (s.type) {
    case ParamType::Int: {
      int64_t x = 0;
      if (given.is_number_integer()) {
        x = given.get<int64_t>();
      } else if (given.is_string()) {
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
        if (ec != std::errc() || p != text.data() + text.size()) bad_value(s, text);
      } else {
        bad_value(s, text);
      }
      check_range(s, static_cast<double>(x), text);
      return x;
    }
    case ParamType::Float: {
      double x = 0;
      if (given.is_number()) {
        x = given.get<double>();
      } else if (given.is_string()) {
        size_t used = 0;
        try {
          x = std::stod(text, &used);
        } catch (const std::exception&) {
          bad_value(s, text);
        }
        if (used != text.size()) bad_value(s, text);
      } else {
        bad_value(s, text);
      }
      check_range(s, x, text);
      return x;
    }
    case ParamType::Bool: {
      if (given.is_boolean()) return given.get<bool>();
      if (text == "true" || text == "1" || text == "on" || text == "yes") return true;
      if (text == "false" || text == "0" || text == "off" || text == "no") return false;
      bad_value(s, text);
    }
    case ParamType::Choice: {
      if (!given.is_string() ||
          std::find(s.choices.begin(), s.choices.end(), text) == s.choices.end())
        bad_value(s, text);
      return text;
    }
  }
  bad_value(s, text);
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1,
                           prev[j - 1] + (std::tolower(a[i - 1]) != std::tolower(b[j - 1]))});
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 2) + 1;
  for (const auto& c : candidates) {
    size_t d = distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

Params resolve_params(const Mechanism& mech, const json& given) {
  const auto specs = mech.params();
  std::vector<std::string> names;
  for (const auto& s : specs) names.push_back(s.name);
  if (!given.is_null() && !given.is_object())
    throw InputError("params", "expected an object of name: value pairs");
  Params p;
  for (const auto& [key, value] : given.items()) {
    auto it =
        std::find_if(specs.begin(), specs.end(), [&](const auto& s) { return s.name == key; });
    if (it == specs.end()) {
      std::string hint = closest_match(key, names);
      throw InputError(
          key,
          fmt::format("unknown parameter for mechanism '{}'{} (its parameters: {})", mech.name(),
                      hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                      fmt::join(names, ", ")));
    }
    p.set(key, parse_param(*it, value));
  }
  for (const auto& s : specs)
    if (!p.has(s.name) && s.default_value) p.set(s.name, *s.default_value);
  mech.resolve(p);
  for (const auto& s : specs)
    KT_ASSERT(p.has(s.name), mech.name() + ".resolve left '" + s.name + "' unset");
  return p;
}

ParamSpec choice_param(std::string name, std::string help, std::vector<std::string> choices,
                       std::optional<std::string> def, std::string default_text) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Choice;
  s.help = std::move(help);
  s.choices = std::move(choices);
  if (def) s.default_value = *def;
  s.default_text = std::move(default_text);
  return s;
}

ParamSpec bool_param(std::string name, std::string help, bool def) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Bool;
  s.help = std::move(help);
  s.default_value = def;
  return s;
}

ParamSpec int_param(std::string name, std::string help, std::optional<int64_t> def,
                    std::optional<double> min, std::optional<double> max,
                    std::string default_text) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Int;
  s.help = std::move(help);
  if (def) s.default_value = *def;
  s.default_text = std::move(default_text);
  s.min = min;
  s.max = max;
  return s;
}

ParamSpec float_param(std::string name, std::string help, double def, std::optional<double> min,
                      std::optional<double> max) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Float;
  s.help = std::move(help);
  s.default_value = def;
  s.min = min;
  s.max = max;
  return s;
}

namespace common {

namespace {
ParamSpec int_spec(std::string name, std::string help, std::optional<int64_t> def, double min,
                   std::optional<double> max = std::nullopt) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Int;
  s.help = std::move(help);
  if (def) s.default_value = *def;
  s.min = min;
  s.max = max;
  s.common = true;
  return s;
}
}  // namespace

ParamSpec batch() {
  return int_spec("batch", "B, batch size", 1, 1, 1 << 20);
}
ParamSpec heads() {
  return int_spec("heads", "H, query heads", 8, 1, 1 << 16);
}
ParamSpec kv_heads(const std::string& default_text) {
  ParamSpec s =
      int_spec("kv_heads", "G, key/value heads; must divide heads", std::nullopt, 1, 1 << 16);
  s.default_text = default_text;
  return s;
}
ParamSpec head_dim() {
  return int_spec("head_dim", "d, query/key head dimension", 64, 1, 1 << 14);
}
ParamSpec value_dim() {
  ParamSpec s = int_spec("value_dim", "d_v, value head dimension", std::nullopt, 1, 1 << 14);
  s.default_text = "head_dim";
  return s;
}
ParamSpec seq_len() {
  return int_spec("seq_len", "L, sequence length", 1024, 1, 1 << 24);
}
ParamSpec causal(bool default_value) {
  ParamSpec s;
  s.name = "causal";
  s.type = ParamType::Bool;
  s.help = "causal mask (query i sees keys j <= i)";
  s.default_value = default_value;
  s.common = true;
  return s;
}
ParamSpec scale(const std::string& default_text) {
  ParamSpec s;
  s.name = "scale";
  s.type = ParamType::Float;
  s.help = "score scale";
  s.default_text = default_text;
  s.min = 0;
  s.common = true;
  return s;
}
ParamSpec seed() {
  return int_spec("seed", "seed of the generated inputs", 0, 0);
}
ParamSpec threads() {
  ParamSpec s =
      int_spec("threads", "worker threads (OpenMP and BLAS)", omp_get_num_procs(), 1, 1024);
  s.default_text = "all cores";
  return s;
}

}  // namespace common

}  // namespace kt
