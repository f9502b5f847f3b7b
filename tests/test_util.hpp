// Helpers shared by the test files: resolve a mechanism's parameters, generate its inputs, run a
// path, and compare the fast path with the reference.
#pragma once
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/blas.hpp"
#include "kittention/error.hpp"
#include "kittention/registry.hpp"

namespace kt::test {

// Normwise relative error max|got - want| / max|want| (spec §0.3) of one tensor; infinite when
// got has a non-finite entry.
inline double rel_error(const Tensor& got, const std::vector<double>& want) {
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff = std::max(diff, std::abs(double(got[i]) - want[size_t(i)]));
    ref = std::max(ref, std::abs(want[size_t(i)]));
  }
  return ref > 0 ? diff / ref : diff;
}
inline double rel_error(const Tensor& got, const Tensor& want) {
  return rel_error(got, std::vector<double>(want.data(), want.data() + want.numel()));
}
// max_rel_error (the library's check) of one tensor pair.
inline double max_rel_error(const Tensor& got, const Tensor& want) {
  return kt::max_rel_error(TensorMap{{"t", got}}, TensorMap{{"t", want}});
}

struct Run {
  const Mechanism* mech;
  Params params;
  TensorMap in;
};

// Resolves `given` for mechanism `name` (threads default to 2) and generates its inputs.
inline Run make_run(const std::string& name, nlohmann::json given) {
  if (!given.contains("threads")) given["threads"] = 2;
  const Mechanism& m = find_mechanism(name);
  Run r{&m, resolve_params(m, given), {}};
  m.generate_inputs(r.params, r.in);
  return r;
}

inline TensorMap forward(const Run& r, Path path) {
  Workspace ws;
  return run_forward(*r.mech, r.params, r.in, path, ws);
}

// Flops the kernels report to the BLAS counter during one forward (a fast path's must equal its
// cost model's issued_flops).
inline double counted_forward_flops(const Run& r, Path path = Path::Fast) {
  blas::reset_counted_flops();
  blas::count_flops(true);
  forward(r, path);
  blas::count_flops(false);
  return blas::counted_flops();
}

// The workspace arena's peak during one forward (what the cost model's workspace_bytes states).
inline double forward_workspace_peak(const Run& r, Path path = Path::Fast) {
  Workspace ws;
  run_forward(*r.mech, r.params, r.in, path, ws);
  return double(ws.peak());
}

// The sum of a cost model's flops_parts (they add up to its flops).
inline double flops_parts_sum(const CostModel& c) {
  double sum = 0;
  for (const auto& [name, f] : c.flops_parts) sum += f;
  return sum;
}

inline bool all_finite(const TensorMap& m) {
  for (const auto& [name, t] : m)
    for (int64_t i = 0; i < t.numel(); ++i)
      if (std::isnan(t[i])) return false;  // -inf is legal in lse of an empty row
  return true;
}

// Fast path equals the reference within the mechanism's own tolerance (normwise, see
// Mechanism::tolerance), and neither produces NaN.
inline void expect_fast_matches_reference(const std::string& name, const nlohmann::json& given) {
  SCOPED_TRACE(name + " " + given.dump());
  Run r = make_run(name, given);
  TensorMap fast = forward(r, Path::Fast), ref = forward(r, Path::Reference);
  EXPECT_TRUE(all_finite(fast));
  EXPECT_TRUE(all_finite(ref));
  EXPECT_LE(max_rel_error(fast, ref), r.mech->tolerance(r.params));
}

// A readable, CTest-safe name for a parametrised case: "gqa_seq_len=7_heads=6_causal=true".
inline std::string case_name(const std::string& mech, const nlohmann::json& given) {
  std::string s = mech;
  for (const auto& [k, v] : given.items()) {
    s += "_" + k + "=";
    for (char c : v.is_string() ? v.get<std::string>() : v.dump())
      s += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ? c : '_';
  }
  return s;
}

// The shapes every mechanism is checked on: ragged lengths, L = 1, odd head counts.
inline std::vector<int64_t> test_lengths() {
  return {1, 7, 64, 100, 257};
}

}  // namespace kt::test
