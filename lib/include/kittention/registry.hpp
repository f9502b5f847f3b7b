// The registry of every mechanism, looked up by canonical name or alias.
#pragma once
#include <string>
#include <vector>

#include "kittention/mechanism.hpp"

namespace kt {

const std::vector<const Mechanism*>& all_mechanisms();
// Throws InputError naming the known mechanisms and the closest match.
const Mechanism& find_mechanism(const std::string& name);
// "all" or a comma list of names; duplicates removed, order kept.
std::vector<const Mechanism*> find_mechanisms(const std::string& list);

}  // namespace kt
