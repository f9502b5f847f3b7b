// Deterministic input generation: a counter-based stream per (seed, tensor name), so every tensor
// is reproducible on its own and does not depend on which other tensors were generated before it.
#pragma once
#include <cmath>
#include <cstdint>
#include <string_view>

namespace kt {

class Rng {
 public:
  Rng(uint64_t seed, std::string_view stream);
  uint64_t next_u64();
  double uniform();  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();  // N(0, 1), Box-Muller
  double normal(double mean, double sd) { return mean + sd * normal(); }

 private:
  uint64_t state_;
  double spare_ = 0;
  bool has_spare_ = false;
};

class Tensor;
// Fills t with N(mean, sd) (or U(lo, hi)) from the stream (seed, name).
void fill_normal(Tensor& t, uint64_t seed, std::string_view name, double mean = 0, double sd = 1);
void fill_uniform(Tensor& t, uint64_t seed, std::string_view name, double lo, double hi);

}  // namespace kt
