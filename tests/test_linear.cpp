// linear (Katharopoulos et al. 2020): every form against the float64 quadratic reference, the
// reference against an independent float64 recurrent oracle, the spec §1 tests (causal = chunked =
// recurrent for several chunk sizes, last causal row = last non-causal row, L = 1, convexity,
// permutation equivariance, split-and-carry), the analytic FLOP model and bad inputs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/blas.hpp"
#include "test_util.hpp"

namespace kt::test {
namespace {

using json = nlohmann::json;
using LRun = kt::test::Run;  // inside TEST bodies `Run` names testing::Test::Run

TEST(Linear, FastMatchesReferenceOverShapes) {
  const int64_t dims[] = {16, 64, 80};
  for (int64_t L : test_lengths())
    for (int di = 0; di < 3; ++di)
      for (bool causal : {false, true})
        for (const char* form : {"chunked", "recurrent"})
          for (const char* kernel : {"fused", "blas"}) {  // the chunked form's two kernels
            if (!causal && std::string(form) == "recurrent") continue;  // one non-causal form
            if (std::string(kernel) == "blas" && (!causal || std::string(form) != "chunked"))
              continue;
            expect_fast_matches_reference("linear", {{"batch", 2},
                                                     {"heads", di == 1 ? 5 : 3},
                                                     {"head_dim", dims[di]},
                                                     {"value_dim", di == 2 ? 48 : dims[di]},
                                                     {"seq_len", L},
                                                     {"causal", causal},
                                                     {"form", form},
                                                     {"kernel", kernel}});
          }
}

// Spec §1 test 1: chunk sizes 1, 16, 64 and >= L with a ragged L (200 = 3·64 + 8).
TEST(Linear, ChunkSizesAndRaggedLength) {
  for (int64_t C : {1, 16, 64, 256})
    for (const char* kernel : {"fused", "blas"})
      expect_fast_matches_reference("linear", {{"heads", 2},
                                               {"seq_len", 200},
                                               {"causal", true},
                                               {"chunk_size", C},
                                               {"kernel", kernel}});
}

TEST(Linear, FeatureMapsScaleAndNormalize) {
  for (bool causal : {false, true})
    for (const char* form : {"chunked", "recurrent"}) {
      for (const char* fm : {"elu", "relu"})
        for (bool norm : {true, false})
          expect_fast_matches_reference("linear", {{"heads", 3},
                                                   {"seq_len", 100},
                                                   {"causal", causal},
                                                   {"form", form},
                                                   {"feature_map", fm},
                                                   {"normalize", norm},
                                                   {"scale", 0.125},
                                                   {"chunk_size", 32}});
      // identity with normalize = true can divide by ~0 (documented); fla pairs it with false.
      expect_fast_matches_reference("linear", {{"heads", 3},
                                               {"seq_len", 100},
                                               {"causal", causal},
                                               {"form", form},
                                               {"feature_map", "identity"},
                                               {"normalize", false}});
    }
}

// Independent oracle: the RNN form of the paper in float64, written from the equations.
void oracle(const Run& r, std::vector<double>& o, std::vector<double>& S, std::vector<double>& z) {
  const auto& p = r.params;
  const int64_t BH = p.i("batch") * p.i("heads"), L = p.i("seq_len"), dk = p.i("head_dim"),
                dv = p.i("value_dim");
  const bool init = p.b("initial_state"), norm = p.b("normalize");
  const double scale = p.f("scale"), eps = p.f("eps");
  const std::string fm = p.s("feature_map");
  auto phi = [&](double x) {
    if (fm == "elu") return x > 0 ? x + 1 : std::exp(x);
    if (fm == "relu") return std::max(x, 0.0);
    return x;
  };
  o.assign(BH * L * dv, 0);
  S.assign(BH * dk * dv, 0);
  z.assign(BH * dk, 0);
  for (int64_t bh = 0; bh < BH; ++bh) {
    double* Sb = &S[bh * dk * dv];
    double* zb = &z[bh * dk];
    if (init) {
      for (int64_t i = 0; i < dk * dv; ++i) Sb[i] = r.in.at("initial_state")[bh * dk * dv + i];
      if (norm)
        for (int64_t i = 0; i < dk; ++i) zb[i] = r.in.at("initial_normalizer")[bh * dk + i];
    }
    for (int64_t t = 0; t < L; ++t) {
      std::vector<double> fq(dk), fk(dk);
      for (int64_t x = 0; x < dk; ++x) {
        fq[x] = phi(scale * r.in.at("q")[(bh * L + t) * dk + x]);
        fk[x] = phi(r.in.at("k")[(bh * L + t) * dk + x]);
      }
      for (int64_t x = 0; x < dk; ++x) {
        zb[x] += fk[x];
        for (int64_t y = 0; y < dv; ++y)
          Sb[x * dv + y] += fk[x] * r.in.at("v")[(bh * L + t) * dv + y];
      }
      double den = eps;
      for (int64_t x = 0; x < dk; ++x) den += fq[x] * zb[x];
      for (int64_t y = 0; y < dv; ++y) {
        double num = 0;
        for (int64_t x = 0; x < dk; ++x) num += fq[x] * Sb[x * dv + y];
        o[(bh * L + t) * dv + y] = norm ? num / den : num;
      }
    }
  }
}

TEST(Linear, ReferenceMatchesFloat64RecurrentOracle) {
  for (bool init : {false, true})
    for (bool norm : {true, false}) {
      LRun r = make_run("linear", {{"batch", 2},
                                   {"heads", 3},
                                   {"head_dim", 16},
                                   {"value_dim", 8},
                                   {"seq_len", 37},
                                   {"causal", true},
                                   {"normalize", norm},
                                   {"scale", 0.5},
                                   {"initial_state", init}});
      std::vector<double> o, S, z;
      oracle(r, o, S, z);
      for (Path path : {Path::Reference, Path::Fast}) {
        TensorMap out = forward(r, path);
        // float32 inputs, float64 arithmetic (reference) or float32 (fast): 1e-6 / 1e-5.
        const double tol = path == Path::Reference ? 1e-6 : 1e-5;
        EXPECT_LE(rel_error(out.at("out"), o), tol) << path_name(path);
        EXPECT_LE(rel_error(out.at("final_state"), S), tol) << path_name(path);
        if (norm) {
          EXPECT_LE(rel_error(out.at("final_normalizer"), z), tol) << path_name(path);
        } else {
          EXPECT_EQ(out.count("final_normalizer"), 0u);
        }
      }
    }
}

// Spec §1 test 2 / §5: the last causal row sees every key, as the non-causal rows do.
TEST(Linear, LastCausalRowEqualsNonCausal) {
  const int64_t L = 77, dv = 64;
  LRun c = make_run("linear", {{"heads", 3}, {"seq_len", L}, {"causal", true}});
  LRun n = make_run("linear", {{"heads", 3}, {"seq_len", L}, {"causal", false}});
  for (Path path : {Path::Reference, Path::Fast}) {
    TensorMap oc = forward(c, path), on = forward(n, path);
    double diff = 0, mx = 0;
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t y = 0; y < dv; ++y) {
        const int64_t i = (h * L + L - 1) * dv + y;
        diff = std::max(diff, double(std::abs(oc.at("out")[i] - on.at("out")[i])));
        mx = std::max(mx, double(std::abs(on.at("out")[i])));
      }
    EXPECT_LE(diff / mx, 1e-5) << path_name(path);
  }
}

// Spec §1 test 3: with one token, o = a·v / (a + eps) with a = φ(q)·φ(k) > 0, so o ≈ v.
TEST(Linear, SingleTokenReturnsValue) {
  for (bool causal : {false, true}) {
    LRun r = make_run("linear", {{"heads", 4}, {"seq_len", 1}, {"causal", causal}});
    TensorMap out = forward(r, Path::Fast);
    EXPECT_LE(max_rel_error(out.at("out"), r.in.at("v")), 1e-5);
  }
}

// Spec §1 test 4: positive weights make every output a convex combination of the visible values.
TEST(Linear, OutputIsConvexCombination) {
  const int64_t H = 3, L = 90, dv = 64;
  for (bool causal : {false, true}) {
    LRun r = make_run("linear", {{"heads", H}, {"seq_len", L}, {"causal", causal}});
    TensorMap out = forward(r, Path::Fast);
    const Tensor& v = r.in.at("v");
    for (int64_t h = 0; h < H; ++h)
      for (int64_t y = 0; y < dv; ++y) {
        float lo = INFINITY, hi = -INFINITY;
        if (!causal)
          for (int64_t j = 0; j < L; ++j) {
            lo = std::min(lo, v[(h * L + j) * dv + y]);
            hi = std::max(hi, v[(h * L + j) * dv + y]);
          }
        for (int64_t i = 0; i < L; ++i) {
          if (causal) {
            lo = std::min(lo, v[(h * L + i) * dv + y]);
            hi = std::max(hi, v[(h * L + i) * dv + y]);
          }
          const float o = out.at("out")[(h * L + i) * dv + y];
          // The eps shrink pulls toward 0, which lies inside [lo, hi] or within 1e-5 of it.
          EXPECT_GE(o, std::min(lo, 0.0f) - 1e-5f);
          EXPECT_LE(o, std::max(hi, 0.0f) + 1e-5f);
        }
      }
  }
}

// Spec §1 test 5: permuting keys with their values changes nothing; permuting queries permutes
// rows.
TEST(Linear, NonCausalPermutationEquivariance) {
  const int64_t L = 50, d = 64;
  LRun r = make_run("linear", {{"heads", 1}, {"seq_len", L}});
  TensorMap base = forward(r, Path::Fast);
  std::vector<int64_t> perm(L);
  std::iota(perm.begin(), perm.end(), 0);
  std::reverse(perm.begin(), perm.end());
  std::rotate(perm.begin(), perm.begin() + 13, perm.end());
  LRun s = r;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t x = 0; x < d; ++x) {
      s.in["k"][i * d + x] = r.in["k"][perm[i] * d + x];
      s.in["v"][i * d + x] = r.in["v"][perm[i] * d + x];
      s.in["q"][i * d + x] = r.in["q"][perm[i] * d + x];
    }
  TensorMap got = forward(s, Path::Fast);
  double diff = 0;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t y = 0; y < d; ++y)
      diff = std::max(diff,
                      double(std::abs(got.at("out")[i * d + y] - base.at("out")[perm[i] * d + y])));
  EXPECT_LE(diff, 1e-5);
}

// Spec §1 test 6: [0, t) then [t, L) with the carried (S, z) equals one run, t not aligned to C.
TEST(Linear, SplitAndCarryEqualsOneRun) {
  const int64_t H = 2, L = 200, t = 77, d = 32;
  for (const char* form : {"chunked", "chunked-blas", "recurrent"})
    for (bool norm : {true, false}) {
      SCOPED_TRACE(std::string(form) + (norm ? " normalised" : " raw"));
      const bool use_blas = std::string(form) == "chunked-blas";
      json base = {{"heads", H},
                   {"head_dim", d},
                   {"causal", true},
                   {"form", use_blas ? "chunked" : form},
                   {"kernel", use_blas ? "blas" : "fused"},
                   {"normalize", norm},
                   {"chunk_size", 64}};
      json g = base;
      g["seq_len"] = L;
      LRun full = make_run("linear", g);
      TensorMap whole = forward(full, Path::Fast);
      auto slice = [&](const Tensor& src, int64_t a, int64_t n) {
        Tensor out({1, H, n, d});
        for (int64_t h = 0; h < H; ++h)
          std::copy(src.data() + (h * L + a) * d, src.data() + (h * L + a + n) * d,
                    out.data() + h * n * d);
        return out;
      };
      g["seq_len"] = t;
      LRun first = make_run("linear", g);
      for (const char* n : {"q", "k", "v"}) first.in[n] = slice(full.in[n], 0, t);
      TensorMap o1 = forward(first, Path::Fast);
      g["seq_len"] = L - t;
      g["initial_state"] = true;
      LRun second = make_run("linear", g);
      for (const char* n : {"q", "k", "v"}) second.in[n] = slice(full.in[n], t, L - t);
      second.in["initial_state"] = o1.at("final_state");
      if (norm) second.in["initial_normalizer"] = o1.at("final_normalizer");
      TensorMap o2 = forward(second, Path::Fast);
      EXPECT_LE(max_rel_error(o1.at("out"), slice(whole.at("out"), 0, t)), 1e-5);
      EXPECT_LE(max_rel_error(o2.at("out"), slice(whole.at("out"), t, L - t)), 1e-5);
      EXPECT_LE(max_rel_error(o2.at("final_state"), whole.at("final_state")), 1e-5);
      if (norm) {
        EXPECT_LE(max_rel_error(o2.at("final_normalizer"), whole.at("final_normalizer")), 1e-5);
      }
      // The reference carries the same state.
      EXPECT_LE(max_rel_error(forward(second, Path::Reference), o2), 1e-4);
    }
}

TEST(Linear, NoNonFiniteOnExtremeInputs) {
  for (bool causal : {false, true})
    for (const char* form : {"chunked", "recurrent"})
      for (const char* fm : {"elu", "relu"}) {
        LRun r = make_run("linear", {{"heads", 2},
                                     {"seq_len", 130},
                                     {"causal", causal},
                                     {"form", form},
                                     {"feature_map", fm}});
        for (const char* n : {"q", "k"})
          for (int64_t i = 0; i < r.in[n].numel(); ++i) r.in[n][i] *= 60.0f;  // exp(-60·|x|)
        TensorMap out = forward(r, Path::Fast);
        for (const auto& [name, t] : out)
          for (int64_t i = 0; i < t.numel(); ++i) ASSERT_TRUE(std::isfinite(t[i])) << name;
      }
}

// Spec §1 / §6 per-token numbers at dk = dv = 128, C = 64 (L a multiple of C).
TEST(Linear, AnalyticFlopsMatchSpec) {
  auto per_token = [](json g) {
    g["head_dim"] = 128;
    g["seq_len"] = 1024;
    g["heads"] = 1;
    LRun r = make_run("linear", g);
    return r.mech->cost(r.params, Path::Fast).flops / 1024;
  };
  EXPECT_DOUBLE_EQ(per_token({{"causal", true}}), 99010);
  EXPECT_DOUBLE_EQ(per_token({{"causal", true}, {"form", "recurrent"}}), 66049);
  EXPECT_DOUBLE_EQ(per_token({{"causal", false}}), 66049);
  // Unnormalised with scaled q (fla's default).
  EXPECT_DOUBLE_EQ(per_token({{"causal", true}, {"normalize", false}, {"scale", 0.0883883}}),
                   98560);
  EXPECT_DOUBLE_EQ(
      per_token(
          {{"causal", true}, {"normalize", false}, {"scale", 0.0883883}, {"form", "recurrent"}}),
      65664);
  // Ragged: the sum over chunks, f(c) of spec §1, by hand for L = 100 = 64 + 36, dk = dv = 8.
  LRun r = make_run("linear", {{"heads", 1}, {"head_dim", 8}, {"seq_len", 100}, {"causal", true}});
  auto f = [](double c) {
    const double d = 8;
    return 2 * c * c * d + 2 * c * c * d + 4 * c * d * d + 2 * c * d + 3 * c * d + c * c + 2 * c;
  };
  EXPECT_DOUBLE_EQ(r.mech->cost(r.params, Path::Fast).flops, f(64) + f(36));
}

TEST(Linear, IssuedFlopsMatchCounter) {
  for (bool causal : {false, true})
    for (bool norm : {true, false})
      for (const char* form : {"chunked", "recurrent"})
        for (const char* kernel : {"fused", "blas"}) {
          LRun r = make_run("linear", {{"batch", 2},
                                       {"heads", 3},
                                       {"head_dim", 24},
                                       {"value_dim", 40},
                                       {"seq_len", 300},
                                       {"causal", causal},
                                       {"normalize", norm},
                                       {"form", form},
                                       {"kernel", kernel},
                                       {"chunk_size", 64}});
          EXPECT_DOUBLE_EQ(counted_forward_flops(r),
                           r.mech->cost(r.params, Path::Fast).issued_flops)
              << causal << norm << form << kernel;
        }
}

TEST(Linear, WorkspaceWithinModel) {
  for (const char* kernel : {"fused", "blas"}) {
    LRun r =
        make_run("linear", {{"heads", 4}, {"seq_len", 300}, {"causal", true}, {"kernel", kernel}});
    const double peak = forward_workspace_peak(r);
    EXPECT_GT(peak, 0);
    EXPECT_LE(peak, r.mech->cost(r.params, Path::Fast).workspace_bytes + 64 * 2) << kernel;
  }
}

TEST(Linear, BadInputsAreRejected) {
  const Mechanism& m = find_mechanism("linear");
  auto rejects = [&](json g, const std::string& needle) {
    try {
      resolve_params(m, g);
      ADD_FAILURE() << "accepted " << g.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  rejects({{"feature_map", "gelu"}}, "gelu");
  rejects({{"form", "parallel"}}, "parallel");
  rejects({{"chunk_size", 0}}, "chunk_size");
  rejects({{"eps", -1}}, "eps");
  rejects({{"initial_state", true}, {"causal", false}}, "causal");
  // A wrong initial-state shape is reported by name.
  LRun r =
      make_run("linear", {{"heads", 2}, {"seq_len", 8}, {"causal", true}, {"initial_state", true}});
  r.in["initial_state"] = Tensor({1, 2, 3, 3});
  Workspace ws;
  EXPECT_THROW(run_forward(*r.mech, r.params, r.in, Path::Fast, ws), InputError);
}

}  // namespace
}  // namespace kt::test
