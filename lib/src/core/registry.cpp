#include "kittention/registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <sstream>

#include "kittention/error.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

const std::vector<const Mechanism*>& all_mechanisms() {
  static const std::vector<const Mechanism*> list = {
      &mechanism_self(),
      &mechanism_mha(),
      &mechanism_gqa(),
      &mechanism_mqa(),
      &mechanism_sparse(),
      &mechanism_sinkhorn(),
      &mechanism_spark(),
      &mechanism_mla(),
      &mechanism_linear(),
      &mechanism_kda(),
      &mechanism_seedfold(),
  };
  return list;
}

const Mechanism& find_mechanism(const std::string& name) {
  std::vector<std::string> names, all_names;
  for (const Mechanism* m : all_mechanisms()) {
    names.push_back(m->name());
    all_names.push_back(m->name());
    for (const auto& a : m->aliases()) all_names.push_back(a);
    if (m->name() == name) return *m;
    const auto al = m->aliases();
    if (std::find(al.begin(), al.end(), name) != al.end()) return *m;
  }
  const std::string hint = closest_match(name, all_names);
  throw InputError("mech",
                   fmt::format("unknown mechanism '{}'{} (known: {})", name,
                               hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                               fmt::join(names, ", ")));
}

std::vector<const Mechanism*> find_mechanisms(const std::string& list) {
  if (list == "all") return all_mechanisms();
  std::vector<const Mechanism*> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const Mechanism* m = &find_mechanism(item);
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  if (out.empty()) throw InputError("mech", "no mechanism given (a name, a comma list, or 'all')");
  return out;
}

}  // namespace kt
