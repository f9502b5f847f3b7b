// Accessors of every mechanism singleton, one per file in this folder; the registry lists them.
#pragma once
#include "kittention/mechanism.hpp"

namespace kt {

const Mechanism& mechanism_self();
const Mechanism& mechanism_mha();
const Mechanism& mechanism_gqa();
const Mechanism& mechanism_mqa();
const Mechanism& mechanism_sparse();
const Mechanism& mechanism_sinkhorn();
const Mechanism& mechanism_spark();
const Mechanism& mechanism_mla();
const Mechanism& mechanism_linear();
const Mechanism& mechanism_kda();
const Mechanism& mechanism_seedfold();

}  // namespace kt
