#include "core/random.hpp"

#include "kittention/tensor.hpp"

namespace kt {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}
}  // namespace

Rng::Rng(uint64_t seed, std::string_view stream)
    : state_(seed * 0x9E3779B97F4A7C15ull ^ fnv1a(stream)) {
  splitmix64(state_);
}

uint64_t Rng::next_u64() {
  return splitmix64(state_);
}

double Rng::uniform() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  const double r = std::sqrt(-2.0 * std::log(u1)), t = 2.0 * M_PI * u2;
  spare_ = r * std::sin(t);
  has_spare_ = true;
  return r * std::cos(t);
}

void fill_normal(Tensor& t, uint64_t seed, std::string_view name, double mean, double sd) {
  Rng rng(seed, name);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.normal(mean, sd));
}

void fill_uniform(Tensor& t, uint64_t seed, std::string_view name, double lo, double hi) {
  Rng rng(seed, name);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.uniform(lo, hi));
}

}  // namespace kt
