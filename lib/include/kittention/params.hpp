// Typed parameters: each mechanism declares ParamSpecs (name, type, default, allowed values);
// resolve_params() turns user-given values (CLI strings or JSON) into a validated Params.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kt {

enum class ParamType { Int, Float, Bool, Choice };
using Value = std::variant<int64_t, double, bool, std::string>;

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::Int;
  std::string help;
  std::optional<Value> default_value;  // empty: derived from other parameters by Mechanism::resolve
  std::string default_text;            // how a derived default is computed, for `list`
  std::vector<std::string> choices;    // ParamType::Choice only
  std::optional<double> min, max;      // inclusive bounds for Int and Float
  bool common = false;                 // one of the contract's common parameters
};

class Mechanism;

class Params {
 public:
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  int64_t i(const std::string& name) const;
  double f(const std::string& name) const;  // also accepts an Int value
  bool b(const std::string& name) const;
  const std::string& s(const std::string& name) const;
  void set(const std::string& name, Value v) { values_[name] = std::move(v); }
  const std::map<std::string, Value>& values() const { return values_; }
  nlohmann::json to_json() const;

 private:
  const Value& at(const std::string& name) const;
  std::map<std::string, Value> values_;
};

std::string value_str(const Value& v);
nlohmann::json value_json(const Value& v);
std::string param_type_name(ParamType t);

// Parses and validates one value for spec (from a JSON scalar or a string such as "128" or "true").
Value parse_param(const ParamSpec& spec, const nlohmann::json& given);

// given: {name: value}. Unknown names are rejected with the closest known name; missing values take
// their defaults; the mechanism then derives and cross-checks the rest. Throws InputError.
Params resolve_params(const Mechanism& mech, const nlohmann::json& given);

// The closest candidate by edit distance, or "" when nothing is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// Builders for a mechanism's own parameters. A derived default: def = std::nullopt plus the
// default_text that `list` shows (Mechanism::resolve then fills the value).
ParamSpec choice_param(std::string name, std::string help, std::vector<std::string> choices,
                       std::optional<std::string> def, std::string default_text = "");
ParamSpec bool_param(std::string name, std::string help, bool def);
ParamSpec int_param(std::string name, std::string help, std::optional<int64_t> def,
                    std::optional<double> min, std::optional<double> max,
                    std::string default_text = "");
ParamSpec float_param(std::string name, std::string help, double def,
                      std::optional<double> min = std::nullopt,
                      std::optional<double> max = std::nullopt);

// The contract's common parameters (contract.md), with their static defaults.
namespace common {
ParamSpec batch();
ParamSpec heads();
ParamSpec kv_heads(const std::string& default_text);  // derived default
ParamSpec head_dim();
ParamSpec value_dim();
ParamSpec seq_len();
ParamSpec causal(bool default_value);
ParamSpec scale(const std::string& default_text = "1/sqrt(head_dim)");
ParamSpec seed();
ParamSpec threads();
}  // namespace common

}  // namespace kt
