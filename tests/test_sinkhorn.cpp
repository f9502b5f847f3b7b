// Tests of `sinkhorn` (Sparse Sinkhorn attention, mechanisms-softmax.md §4, decisions.md): the
// Sinkhorn operator (balance, convergence, shift invariance at convergence, low-temperature
// limit, causal rows), fast path vs the reference over many shapes and options, both vs a float64
// oracle written here from the spec, planted sorts (a permutation with a padded block: padding
// masked; n_B = 1: full attention), the FLOP counter, measured workspace, the cost model at
// L = 8192, and the generic tests G3, G4, G9, G10, G11 and bad inputs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/blas.hpp"
#include "test_util.hpp"

namespace kt::sinkhorn_detail {
// Defined in lib/src/mechanisms/sinkhorn.cpp (the operator the fast path and reference use).
void balance(float* z, int64_t n, int64_t iters, bool causal, float* scratch);
void balance_reference(double* z, int64_t n, int64_t iters, bool causal);
}  // namespace kt::sinkhorn_detail

namespace kt::test {
namespace {

using SRun = kt::test::Run;  // inside TEST bodies `Run` names testing::Test::Run
using sinkhorn_detail::balance;
using sinkhorn_detail::balance_reference;

std::vector<double> random_matrix(int64_t n, uint64_t seed, double lo, double hi) {
  std::vector<double> z(n * n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& e : z) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    e = lo + (hi - lo) * double(x >> 11) / double(1ull << 53);
  }
  return z;
}

std::vector<float> balanced_float(const std::vector<double>& z, int64_t n, int64_t iters,
                                  bool causal = false) {
  std::vector<float> f(z.begin(), z.end()), scr(2 * n);
  balance(f.data(), n, iters, causal, scr.data());
  return f;
}
std::vector<double> balanced_double(std::vector<double> z, int64_t n, int64_t iters,
                                    bool causal = false) {
  balance_reference(z.data(), n, iters, causal);
  return z;
}

template <class T>
double max_row_error(const std::vector<T>& s, int64_t n) {
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += s[i * n + j];
    e = std::max(e, std::abs(sum - 1));
  }
  return e;
}
template <class T>
double max_col_error(const std::vector<T>& s, int64_t n) {
  double e = 0;
  for (int64_t j = 0; j < n; ++j) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += s[i * n + j];
    e = std::max(e, std::abs(sum - 1));
  }
  return e;
}

TEST(SinkhornOperator, ColumnsSumToOneAndRowsConverge) {
  // §4 tests: random 16x16 Z in [-2, 2]: after the final column normalisation every column sums
  // to 1; the row error after 50 iterations < 1e-4 and below the error after 1 iteration; S > 0.
  const int64_t n = 16;
  const auto z = random_matrix(n, 7, -2, 2);
  for (int64_t iters : {1, 7, 50}) {
    const auto sd = balanced_double(z, n, iters);
    const auto sf = balanced_float(z, n, iters);
    EXPECT_LT(max_col_error(sd, n), 1e-12) << iters;
    EXPECT_LT(max_col_error(sf, n), 2e-6) << iters;
    for (int64_t t = 0; t < n * n; ++t) {
      ASSERT_GT(sd[t], 0);
      ASSERT_GT(sf[t], 0);
      ASSERT_NEAR(sf[t], sd[t], 1e-6);
    }
  }
  const double e1 = max_row_error(balanced_double(z, n, 1), n),
               e50 = max_row_error(balanced_double(z, n, 50), n);
  EXPECT_LT(e50, 1e-4);
  EXPECT_LT(e50, e1);
  EXPECT_LT(max_row_error(balanced_float(z, n, 50), n), 1e-4);
}

TEST(SinkhornOperator, ShiftInvarianceAtConvergence) {
  // S(Z + a·1ᵀ + 1·cᵀ) = S(Z) holds at convergence (decisions.md: many iterations, not 7).
  // Row shifts alone are removed exactly by the first row normalisation at any iteration count.
  const int64_t n = 12;
  const auto z = random_matrix(n, 3, -2, 2);
  auto shifted = z, row_only = z;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double ai = 3.0 * std::sin(double(i)) + 5, cj = 2.0 * std::cos(3.0 * j) - 7;
      shifted[i * n + j] += ai + cj;
      row_only[i * n + j] += ai;
    }
  const auto base = balanced_double(z, n, 2000), got = balanced_double(shifted, n, 2000);
  const auto basef = balanced_float(z, n, 2000), gotf = balanced_float(shifted, n, 2000);
  for (int64_t t = 0; t < n * n; ++t) {
    EXPECT_NEAR(got[t], base[t], 1e-9);
    EXPECT_NEAR(gotf[t], basef[t], 2e-5);
  }
  const auto b7 = balanced_double(z, n, 7), r7 = balanced_double(row_only, n, 7);
  for (int64_t t = 0; t < n * n; ++t) EXPECT_NEAR(r7[t], b7[t], 1e-12);
  // With 7 iterations a column shift is generally not removed (why the test needs many).
  const auto s7 = balanced_double(shifted, n, 7);
  double diff = 0;
  for (int64_t t = 0; t < n * n; ++t) diff = std::max(diff, std::abs(s7[t] - b7[t]));
  EXPECT_GT(diff, 1e-6);
}

TEST(SinkhornOperator, LowTemperatureGivesThePlantedPermutation) {
  // Z = (4·P_π + U[0, 0.5]) / τ with τ = 0.05, 500 iterations: S within 1e-3 of P_π, and π is the
  // maximum-weight assignment (brute force over all permutations for n <= 6).
  for (int64_t n : {3, 5, 6}) {
    std::vector<int> pi(n);
    std::iota(pi.begin(), pi.end(), 0);
    std::rotate(pi.begin(), pi.begin() + 1, pi.end());
    std::swap(pi[0], pi[n - 1]);
    auto z = random_matrix(n, 11 + n, 0, 0.5);
    for (int64_t i = 0; i < n; ++i) z[i * n + pi[i]] += 4;
    std::vector<int> perm(n), best;
    std::iota(perm.begin(), perm.end(), 0);
    double best_w = -1;
    do {
      double w = 0;
      for (int64_t i = 0; i < n; ++i) w += z[i * n + perm[i]];
      if (w > best_w) best_w = w, best = perm;
    } while (std::next_permutation(perm.begin(), perm.end()));
    ASSERT_EQ(best, pi);
    for (auto& e : z) e /= 0.05;
    const auto sd = balanced_double(z, n, 500);
    const auto sf = balanced_float(z, n, 500);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double want = pi[i] == j ? 1 : 0;
        EXPECT_NEAR(sd[i * n + j], want, 1e-3);
        EXPECT_NEAR(sf[i * n + j], want, 1e-3);
      }
  }
}

TEST(SinkhornOperator, CausalRowsOverEarlierBlocks) {
  // Causal: row i is a softmax over j < i (sums to 1, entries j >= i exactly 0, row 0 empty).
  const int64_t n = 9;
  const auto z = random_matrix(n, 2, -3, 3);
  const auto sd = balanced_double(z, n, 7, true);
  const auto sf = balanced_float(z, n, 7, true);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0, m = -INFINITY;
    for (int64_t j = 0; j < i; ++j) m = std::max(m, z[i * n + j]);
    double l = 0;
    for (int64_t j = 0; j < i; ++j) l += std::exp(z[i * n + j] - m);
    for (int64_t j = 0; j < n; ++j) {
      const double want = j < i ? std::exp(z[i * n + j] - m) / l : 0.0;
      EXPECT_NEAR(sd[i * n + j], want, 1e-12);
      EXPECT_NEAR(sf[i * n + j], want, 1e-6);
      if (j >= i) {
        EXPECT_EQ(sd[i * n + j], 0.0);
        EXPECT_EQ(sf[i * n + j], 0.0f);
      }
      sum += sf[i * n + j];
    }
    EXPECT_NEAR(sum, i == 0 ? 0.0 : 1.0, 1e-6);
  }
}

// ---- Float64 oracle of the whole mechanism, written from the spec (decisions.md). ----
Tensor oracle(const SRun& r) {
  const Params& p = r.params;
  const int64_t B = p.i("batch"), H = p.i("heads"), L = p.i("seq_len"), d = p.i("head_dim"),
                dv = p.i("value_dim"), b = p.i("block_size"), nB = (L + b - 1) / b,
                hid = p.i("sortnet_hidden"), iters = p.i("sinkhorn_iters"), ns = p.i("sortcut_k");
  const bool causal = p.b("causal"), gumbel = p.b("gumbel");
  const std::string combine = p.s("combine");
  const double scale = p.f("scale"), tau = p.f("temperature");
  const Tensor &q = r.in.at("q"), &k = r.in.at("k"), &v = r.in.at("v");
  const Tensor &w1 = r.in.at("sort_w1"), &b1 = r.in.at("sort_b1"), &w2 = r.in.at("sort_w2"),
               &b2 = r.in.at("sort_b2");
  Tensor out({B, H, L, dv});
  for (int64_t s = 0; s < B * H; ++s) {
    const int64_t h = s % H;
    auto K = [&](int64_t i, int64_t c) -> double { return k[(s * L + i) * d + c]; };
    auto V = [&](int64_t i, int64_t c) -> double { return v[(s * L + i) * dv + c]; };
    // Sort net and logits.
    std::vector<double> Z(nB * nB);
    for (int64_t i = 0; i < nB; ++i) {
      std::vector<double> u(d, 0), hd(hid);
      for (int64_t c = 0; c < d; ++c) {
        if (causal)
          u[c] = K(i * b, c);
        else
          for (int64_t t = i * b; t < std::min(L, i * b + b); ++t) u[c] += K(t, c);
      }
      for (int64_t e = 0; e < hid; ++e) {
        double a = b1[h * hid + e];
        for (int64_t c = 0; c < d; ++c) a += u[c] * w1[(h * d + c) * hid + e];
        hd[e] = std::max(0.0, a);
      }
      for (int64_t j = 0; j < nB; ++j) {
        double a = b2[h * nB + j];
        for (int64_t e = 0; e < hid; ++e) a += hd[e] * w2[(h * hid + e) * nB + j];
        a = std::max(0.0, a);
        if (gumbel) a += r.in.at("gumbel_noise")[(s * nB + i) * nB + j];
        Z[i * nB + j] = a / tau;
      }
    }
    // Sinkhorn (own loops).
    std::vector<double> S(nB * nB, 0);
    if (causal) {
      for (int64_t i = 1; i < nB; ++i) {
        double m = -INFINITY, l = 0;
        for (int64_t j = 0; j < i; ++j) m = std::max(m, Z[i * nB + j]);
        for (int64_t j = 0; j < i; ++j) l += std::exp(Z[i * nB + j] - m);
        for (int64_t j = 0; j < i; ++j) S[i * nB + j] = std::exp(Z[i * nB + j] - m) / l;
      }
    } else {
      for (int64_t it = 0; it < iters; ++it) {
        for (int64_t i = 0; i < nB; ++i) {
          double m = -INFINITY, l = 0;
          for (int64_t j = 0; j < nB; ++j) m = std::max(m, Z[i * nB + j]);
          for (int64_t j = 0; j < nB; ++j) l += std::exp(Z[i * nB + j] - m);
          for (int64_t j = 0; j < nB; ++j) Z[i * nB + j] -= m + std::log(l);
        }
        for (int64_t j = 0; j < nB; ++j) {
          double m = -INFINITY, l = 0;
          for (int64_t i = 0; i < nB; ++i) m = std::max(m, Z[i * nB + j]);
          for (int64_t i = 0; i < nB; ++i) l += std::exp(Z[i * nB + j] - m);
          for (int64_t i = 0; i < nB; ++i) Z[i * nB + j] -= m + std::log(l);
        }
      }
      for (int64_t t = 0; t < nB * nB; ++t) S[t] = std::exp(Z[t]);
    }
    // Sorted key/value t of sorted block sb, and whether it is masked (no weight on real keys).
    auto sorted = [&](int64_t sb, int64_t t, std::vector<double>& kk, std::vector<double>& vv) {
      kk.assign(d, 0);
      vv.assign(dv, 0);
      double w = 0;
      for (int64_t j = 0; j < nB; ++j) {
        if (j * b + t >= L) continue;  // padding: zero vector
        const double sij = S[sb * nB + j];
        w += sij;
        for (int64_t c = 0; c < d; ++c) kk[c] += sij * K(j * b + t, c);
        for (int64_t c = 0; c < dv; ++c) vv[c] += sij * V(j * b + t, c);
      }
      return w > 0;
    };
    for (int64_t i = 0; i < L; ++i) {
      const int64_t bi = i / b;
      std::vector<std::vector<double>> sk, sv, lk, lv;
      const bool use_sorted = !(causal && bi == 0);
      const bool use_local = combine != "sorted_only" || (causal && bi == 0);
      if (use_sorted) {
        std::vector<int64_t> blocks;
        if (ns > 0)
          for (int64_t x = 0; x < ns; ++x) blocks.push_back(x);
        else
          blocks.push_back(bi);
        for (int64_t sb : blocks)
          for (int64_t t = 0; t < b; ++t) {
            std::vector<double> kk, vv;
            if (sorted(sb, t, kk, vv)) sk.push_back(kk), sv.push_back(vv);
          }
      }
      if (use_local)
        for (int64_t j = bi * b; j < std::min(L, bi * b + b); ++j) {
          if (causal && j > i) continue;
          std::vector<double> kk(d), vv(dv);
          for (int64_t c = 0; c < d; ++c) kk[c] = K(j, c);
          for (int64_t c = 0; c < dv; ++c) vv[c] = V(j, c);
          lk.push_back(kk), lv.push_back(vv);
        }
      auto attend = [&](const std::vector<std::vector<double>>& ks,
                        const std::vector<std::vector<double>>& vs, std::vector<double>& acc) {
        if (ks.empty()) return;
        std::vector<double> sc(ks.size());
        double m = -INFINITY, l = 0;
        for (size_t j = 0; j < ks.size(); ++j) {
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += double(q[(s * L + i) * d + c]) * ks[j][c];
          sc[j] = dot * scale;
          m = std::max(m, sc[j]);
        }
        for (auto x : sc) l += std::exp(x - m);
        for (size_t j = 0; j < ks.size(); ++j)
          for (int64_t c = 0; c < dv; ++c) acc[c] += std::exp(sc[j] - m) / l * vs[j][c];
      };
      std::vector<double> acc(dv, 0);
      if (combine == "sum") {
        attend(sk, sv, acc);
        attend(lk, lv, acc);
      } else {
        sk.insert(sk.end(), lk.begin(), lk.end());
        sv.insert(sv.end(), lv.begin(), lv.end());
        attend(sk, sv, acc);
      }
      for (int64_t c = 0; c < dv; ++c) out[(s * L + i) * dv + c] = float(acc[c]);
    }
  }
  return out;
}

void expect_match(const nlohmann::json& given) {
  SCOPED_TRACE(given.dump());
  SRun r = make_run("sinkhorn", given);
  const TensorMap fast = forward(r, Path::Fast), ref = forward(r, Path::Reference);
  ASSERT_TRUE(all_finite(fast));
  ASSERT_TRUE(all_finite(ref));
  EXPECT_LE(rel_error(fast.at("out"), ref.at("out")), r.mech->tolerance(r.params));
}

TEST(Sinkhorn, FastMatchesReferenceOverShapes) {
  for (const char* combine : {"concat", "sum", "sorted_only"})
    for (bool causal : {false, true})
      for (int64_t L : test_lengths())
        for (int64_t block : {64, 16, 7}) {
          if (L < 64 && block != 7) continue;
          const int64_t H = L % 2 ? 3 : 5, d = L == 64 ? 80 : (L == 100 ? 64 : 16);
          expect_match({{"batch", 2},
                        {"heads", H},
                        {"head_dim", d},
                        {"seq_len", L},
                        {"block_size", block},
                        {"combine", combine},
                        {"causal", causal},
                        {"seed", L + block}});
        }
}

TEST(Sinkhorn, FastMatchesReferenceOptions) {
  // SortCut, Gumbel noise, other hidden widths, temperatures and iteration counts, dv != d.
  const nlohmann::json base = {
      {"batch", 2}, {"heads", 3}, {"head_dim", 16}, {"seq_len", 150}, {"block_size", 16}};
  for (const nlohmann::json& extra : {
           nlohmann::json{{"sortcut_k", 1}},
           nlohmann::json{{"sortcut_k", 3}, {"combine", "sorted_only"}},
           nlohmann::json{{"sortcut_k", 10}, {"combine", "sum"}},
           nlohmann::json{{"gumbel", true}},
           nlohmann::json{{"gumbel", true}, {"causal", true}},
           nlohmann::json{{"sortnet_hidden", 5}, {"value_dim", 24}},
           nlohmann::json{{"value_dim", 24}, {"causal", true}, {"combine", "sum"}},
           nlohmann::json{{"temperature", 0.1}, {"sinkhorn_iters", 30}},
           nlohmann::json{{"temperature", 3.0}, {"sinkhorn_iters", 1}},
           nlohmann::json{{"block_size", 1}},
           nlohmann::json{{"block_size", 149}},
           nlohmann::json{{"threads", 1}},
       }) {
    nlohmann::json g = base;
    g.update(extra);
    expect_match(g);
  }
}

TEST(Sinkhorn, ReferenceAndFastMatchFloat64Oracle) {
  // G1: the reference (double sort, float virtual keys, double softmax sums) within 1e-5; the
  // fast path (float Sinkhorn, float GEMMs) within 2e-5.
  for (const char* combine : {"concat", "sum", "sorted_only"})
    for (bool causal : {false, true})
      for (const nlohmann::json& extra :
           {nlohmann::json::object(), nlohmann::json{{"gumbel", true}},
            nlohmann::json{{"sortcut_k", 2}}}) {
        if (causal && extra.contains("sortcut_k")) continue;
        nlohmann::json g = {{"batch", 2},       {"heads", 3},         {"head_dim", 8},
                            {"seq_len", 45},    {"block_size", 8},    {"combine", combine},
                            {"causal", causal}, {"sortnet_hidden", 6}};
        g.update(extra);
        SCOPED_TRACE(g.dump());
        SRun r = make_run("sinkhorn", g);
        const Tensor want = oracle(r);
        EXPECT_LE(rel_error(forward(r, Path::Reference).at("out"), want), 1e-5);
        EXPECT_LE(rel_error(forward(r, Path::Fast).at("out"), want), 2e-5);
      }
}

// Planted sort for L = 100, b = 64 (nB = 2, the last block has 36 real positions): the sort net
// maps block 0 to column 1 and block 1 to column 0 with logits 4000, so S is exactly the
// anti-diagonal permutation (the other entries underflow to 0 in float and double).
SRun planted(const std::string& combine) {
  SRun r = make_run("sinkhorn", {{"batch", 1},
                                 {"heads", 1},
                                 {"head_dim", 8},
                                 {"seq_len", 100},
                                 {"block_size", 64},
                                 {"sortnet_hidden", 2},
                                 {"combine", combine}});
  const int64_t L = 100, d = 8;
  for (const char* w : {"sort_w1", "sort_b1", "sort_w2", "sort_b2"}) r.in.at(w).fill(0);
  r.in.at("sort_w1")[0 * 2 + 0] = 1;  // u[0] -> hidden 0
  r.in.at("sort_w1")[1 * 2 + 1] = 1;  // u[1] -> hidden 1
  r.in.at("sort_w2")[0 * 2 + 1] = 1;  // hidden 0 -> column 1
  r.in.at("sort_w2")[1 * 2 + 0] = 1;  // hidden 1 -> column 0
  Tensor &k = r.in.at("k"), &q = r.in.at("q");
  for (int64_t t = 0; t < L; ++t) {
    k[t * d + 0] = t < 64 ? 3000.0f / 64 : -1.0f;
    k[t * d + 1] = t < 64 ? -1.0f : 3000.0f / 36;
    q[t * d + 0] = q[t * d + 1] = 0;  // keep the scores moderate
  }
  return r;
}

// Plain attention of query i over keys [j0, j1) (double).
std::vector<double> attend_range(const SRun& r, int64_t i, int64_t j0, int64_t j1) {
  const int64_t d = r.params.i("head_dim"), dv = r.params.i("value_dim");
  const Tensor &q = r.in.at("q"), &k = r.in.at("k"), &v = r.in.at("v");
  std::vector<double> sc;
  double m = -INFINITY, l = 0;
  for (int64_t j = j0; j < j1; ++j) {
    double dot = 0;
    for (int64_t c = 0; c < d; ++c) dot += double(q[i * d + c]) * k[j * d + c];
    sc.push_back(dot * r.params.f("scale"));
    m = std::max(m, sc.back());
  }
  for (double x : sc) l += std::exp(x - m);
  std::vector<double> acc(dv, 0);
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t c = 0; c < dv; ++c) acc[c] += std::exp(sc[j - j0] - m) / l * v[j * dv + c];
  return acc;
}

TEST(Sinkhorn, PlantedPermutationMasksPaddedSortedKeys) {
  // sorted_only: block 0 sees the sorted block K̂_0 = K_blk[1], whose 28 padded positions carry
  // no weight on real keys and are masked: it equals attention over positions 64..99 only.
  // Block 1 sees K̂_1 = K_blk[0] (64 real keys). Fast, reference and this expectation agree.
  SRun r = planted("sorted_only");
  const TensorMap fast = forward(r, Path::Fast), ref = forward(r, Path::Reference);
  Tensor want({1, 1, 100, 8});
  for (int64_t i = 0; i < 100; ++i) {
    const auto o = i < 64 ? attend_range(r, i, 64, 100) : attend_range(r, i, 0, 64);
    for (int64_t c = 0; c < 8; ++c) want[i * 8 + c] = float(o[c]);
  }
  EXPECT_LE(rel_error(ref.at("out"), want), 1e-5);
  EXPECT_LE(rel_error(fast.at("out"), want), 1e-5);
  EXPECT_LE(rel_error(oracle(r), want), 1e-6);
  // concat with the same permutation: every block sees [other block; own block] = all 100 real
  // keys, i.e. full attention (an unmasked padded key would add exp(0 - m) terms).
  SRun c = planted("concat");
  Tensor full({1, 1, 100, 8});
  for (int64_t i = 0; i < 100; ++i) {
    const auto o = attend_range(c, i, 0, 100);
    for (int64_t x = 0; x < 8; ++x) full[i * 8 + x] = float(o[x]);
  }
  EXPECT_LE(rel_error(forward(c, Path::Fast).at("out"), full), 1e-5);
  EXPECT_LE(rel_error(forward(c, Path::Reference).at("out"), full), 1e-5);
}

TEST(Sinkhorn, SingleBlockIsFullAttention) {
  // n_B = 1 (L <= block_size; block_size is clamped to L): S = [1], the sorted block is the own
  // block and concat mode equals full attention (the duplicated keys cancel in the softmax);
  // causal: block 0 attends causally within itself = causal attention.
  for (bool causal : {false, true})
    for (int64_t L : {1, 7, 64}) {
      const nlohmann::json shape = {
          {"batch", 2}, {"heads", 3}, {"head_dim", 16}, {"seq_len", L}, {"causal", causal}};
      nlohmann::json g = shape;
      g["block_size"] = 64;
      SRun r = make_run("sinkhorn", g);
      EXPECT_EQ(r.params.i("block_size"), L);
      SRun self = make_run("self", shape);
      self.in.at("q") = r.in.at("q");
      self.in.at("k") = r.in.at("k");
      self.in.at("v") = r.in.at("v");
      const Tensor want = forward(self, Path::Reference).at("out");
      EXPECT_LE(rel_error(forward(r, Path::Fast).at("out"), want), 1e-5) << causal << " " << L;
      EXPECT_LE(rel_error(forward(r, Path::Reference).at("out"), want), 1e-5) << causal << " " << L;
    }
}

TEST(Sinkhorn, CausalBlockZeroIsCausalLocalAttention) {
  for (const char* combine : {"concat", "sum", "sorted_only"}) {
    SRun r = make_run("sinkhorn", {{"heads", 2},
                                   {"head_dim", 16},
                                   {"seq_len", 90},
                                   {"block_size", 32},
                                   {"causal", true},
                                   {"combine", combine}});
    const Tensor out = forward(r, Path::Fast).at("out");
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 32; ++i) {
        SRun one = r;
        const int64_t off = h * 90 * 16;
        for (const char* n : {"q", "k", "v"})
          std::copy_n(r.in.at(n).data() + off, 90 * 16, one.in.at(n).data());
        const auto want = attend_range(one, i, 0, i + 1);
        for (int64_t c = 0; c < 16; ++c)
          ASSERT_NEAR(out[off + i * 16 + c], want[c], 1e-5) << combine << h << " " << i;
      }
  }
}

TEST(Sinkhorn, CausalLeakage) {
  // G9 at token granularity: perturbing q, k, v at positions > t changes no output at <= t.
  for (const char* combine : {"concat", "sum", "sorted_only"})
    for (int64_t t : {0, 31, 32, 57, 100}) {
      SRun r = make_run("sinkhorn", {{"heads", 2},
                                     {"head_dim", 16},
                                     {"seq_len", 120},
                                     {"block_size", 16},
                                     {"causal", true},
                                     {"combine", combine},
                                     {"gumbel", true}});
      const TensorMap base = forward(r, Path::Fast), base_ref = forward(r, Path::Reference);
      const int64_t L = 120, d = 16;
      for (const char* name : {"q", "k", "v"}) {
        Tensor& x = r.in.at(name);
        for (int64_t bh = 0; bh < 2; ++bh)
          for (int64_t i = t + 1; i < L; ++i)
            for (int64_t c = 0; c < d; ++c) x[(bh * L + i) * d + c] = 1e3f * (c % 3 - 1.0f);
      }
      const TensorMap got = forward(r, Path::Fast), got_ref = forward(r, Path::Reference);
      for (int64_t bh = 0; bh < 2; ++bh)
        for (int64_t i = 0; i <= t; ++i)
          for (int64_t c = 0; c < d; ++c) {
            const int64_t x = (bh * L + i) * d + c;
            ASSERT_EQ(got.at("out")[x], base.at("out")[x]) << combine << " t=" << t << " i=" << i;
            ASSERT_EQ(got_ref.at("out")[x], base_ref.at("out")[x]) << combine << " t=" << t;
          }
    }
}

TEST(Sinkhorn, FlopCounterEqualsIssuedFlops) {
  for (const nlohmann::json& extra : {
           nlohmann::json{{"causal", false}},
           nlohmann::json{{"causal", true}},
           nlohmann::json{{"combine", "sum"}},
           nlohmann::json{{"combine", "sorted_only"}, {"causal", true}},
           nlohmann::json{{"sortcut_k", 4}},
           nlohmann::json{{"sortcut_k", 2}, {"combine", "sorted_only"}},
           nlohmann::json{{"seq_len", 256}},
           nlohmann::json{{"seq_len", 256}, {"causal", true}},
           nlohmann::json{{"seq_len", 20}},
       }) {
    nlohmann::json g = {{"batch", 2},          {"heads", 3},     {"head_dim", 16},
                        {"value_dim", 24},     {"seq_len", 333}, {"block_size", 32},
                        {"sortnet_hidden", 10}};
    g.update(extra);
    SRun r = make_run("sinkhorn", g);
    const CostModel c = r.mech->cost(r.params, Path::Fast);
    EXPECT_EQ(counted_forward_flops(r), c.issued_flops) << g.dump();
    EXPECT_GE(c.issued_flops, c.flops) << g.dump();
    EXPECT_DOUBLE_EQ(flops_parts_sum(c), c.flops);
  }
}

TEST(Sinkhorn, FlopsCountTheWorkDone) {
  // Non-causal concat, L = n_B·b: sort net 2·nB·d·h + 2·nB·h·nB, sorting 2·nB·L·(d + dv),
  // attention 2·L·2b·(d + dv) per slice (spec §4 "FLOPs per (b, h)").
  const double B = 2, H = 3, L = 256, d = 16, dv = 16, b = 32, nB = 8, h = 16;
  SRun r = make_run(
      "sinkhorn",
      {{"batch", 2}, {"heads", 3}, {"head_dim", 16}, {"seq_len", 256}, {"block_size", 32}});
  const double want =
      B * H * (2 * nB * d * h + 2 * nB * h * nB + 2 * nB * L * (d + dv) + 2 * L * 2 * b * (d + dv));
  EXPECT_EQ(r.mech->cost(r.params, Path::Fast).flops, want);
  EXPECT_EQ(r.mech->cost(r.params, Path::Fast).issued_flops, want);
}

TEST(Sinkhorn, MeasuredWorkspaceMatchesModel) {
  for (const nlohmann::json& extra :
       {nlohmann::json::object(), nlohmann::json{{"causal", true}},
        nlohmann::json{{"sortcut_k", 3}}, nlohmann::json{{"threads", 1}},
        nlohmann::json{{"batch", 1}, {"heads", 1}}}) {
    nlohmann::json g = {{"batch", 2},      {"heads", 3},     {"head_dim", 16},
                        {"value_dim", 24}, {"seq_len", 300}, {"block_size", 32}};
    g.update(extra);
    SRun r = make_run("sinkhorn", g);
    EXPECT_EQ(forward_workspace_peak(r), r.mech->cost(r.params, Path::Fast).workspace_bytes)
        << g.dump();
  }
}

TEST(Sinkhorn, WorkShrinksAndNoQuadraticMemory) {
  // L = 8192, H = 8, d = 64, b = 64: far fewer flops than self, workspace O(L), not O(L²).
  const nlohmann::json shape = {{"heads", 8}, {"head_dim", 64}, {"seq_len", 8192}};
  SRun r = make_run("sinkhorn", shape);
  SRun self = make_run("self", shape);
  const CostModel c = r.mech->cost(r.params, Path::Fast);
  const CostModel cs = self.mech->cost(self.params, Path::Fast);
  EXPECT_GT(cs.flops / c.flops, 25.0);
  EXPECT_EQ(c.issued_flops, c.flops);
  EXPECT_LT(c.workspace_bytes, 0.05 * 4 * 8192.0 * 8192.0);
  nlohmann::json twice = shape;
  twice["seq_len"] = 16384;
  SRun r2 = make_run("sinkhorn", twice);
  EXPECT_LT(r2.mech->cost(r2.params, Path::Fast).workspace_bytes, 2.3 * c.workspace_bytes);
}

TEST(Sinkhorn, LargeScoresStayFinite) {
  // G3 (large scores): |scores| ~ 1e4 give no inf/NaN and fast still equals the reference.
  for (bool causal : {false, true}) {
    SRun r = make_run(
        "sinkhorn",
        {{"heads", 2}, {"head_dim", 16}, {"seq_len", 200}, {"block_size", 32}, {"causal", causal}});
    Tensor& q = r.in.at("q");
    for (int64_t t = 0; t < q.numel(); ++t) q[t] *= 300.0f;
    const TensorMap fast = forward(r, Path::Fast), ref = forward(r, Path::Reference);
    EXPECT_TRUE(all_finite(fast));
    EXPECT_LE(rel_error(fast.at("out"), ref.at("out")), 1e-4);
  }
}

TEST(Sinkhorn, ConstantValues) {
  // G4: v = c gives out = c where the attended values are convex combinations of the v_j: causal
  // (rows of S sum to 1 exactly; sorted blocks come from full blocks), and the own block alone.
  // (Non-causal sorted values are Σ_j S_ij·c with row sums 1 only at convergence.)
  for (const char* combine : {"concat", "sorted_only"}) {
    SRun r = make_run("sinkhorn", {{"heads", 3},
                                   {"seq_len", 150},
                                   {"block_size", 16},
                                   {"causal", true},
                                   {"combine", combine}});
    r.in.at("v").fill(1.25f);
    const Tensor out = forward(r, Path::Fast).at("out");
    for (int64_t t = 0; t < out.numel(); ++t) ASSERT_NEAR(out[t], 1.25f, 4e-6);
  }
  // Non-causal without padding, near convergence (row sums of S -> 1).
  SRun r = make_run("sinkhorn", {{"heads", 3},
                                 {"seq_len", 144},
                                 {"block_size", 16},
                                 {"sinkhorn_iters", 200},
                                 {"temperature", 2.0}});
  r.in.at("v").fill(1.25f);
  const Tensor out = forward(r, Path::Fast).at("out");
  for (int64_t t = 0; t < out.numel(); ++t) ASSERT_NEAR(out[t], 1.25f, 1e-4);
}

TEST(Sinkhorn, SliceIsolation) {
  // G10: NaN in every other (b, h) slice leaves slice (1, 2) unchanged.
  SRun r =
      make_run("sinkhorn",
               {{"batch", 2}, {"heads", 3}, {"head_dim", 16}, {"seq_len", 90}, {"block_size", 8}});
  const TensorMap base = forward(r, Path::Fast);
  const int64_t slice = 90 * 16, keep = 1 * 3 + 2;
  for (const char* name : {"q", "k", "v"})
    for (int64_t s = 0; s < 6; ++s)
      if (s != keep)
        for (int64_t t = 0; t < slice; ++t) r.in.at(name)[s * slice + t] = NAN;
  const Tensor got = forward(r, Path::Fast).at("out");
  for (int64_t t = 0; t < slice; ++t)
    ASSERT_EQ(got[keep * slice + t], base.at("out")[keep * slice + t]);
}

TEST(Sinkhorn, GumbelNoiseIsSeededAndOffByDefault) {
  // G11: the noise is an input generated from the seed; absent (no noise) by default.
  const nlohmann::json g = {{"heads", 2}, {"seq_len", 100}, {"block_size", 16}, {"gumbel", true}};
  SRun a = make_run("sinkhorn", g), b = make_run("sinkhorn", g);
  nlohmann::json g2 = g;
  g2["seed"] = 1234;
  SRun c = make_run("sinkhorn", g2);
  const Tensor& n = a.in.at("gumbel_noise");
  EXPECT_EQ(n.shape(), (Shape{1, 2, 7, 7}));
  bool differs = false;
  for (int64_t t = 0; t < n.numel(); ++t) {
    ASSERT_EQ(n[t], b.in.at("gumbel_noise")[t]);
    ASSERT_TRUE(std::isfinite(n[t]));
    differs |= n[t] != c.in.at("gumbel_noise")[t];
  }
  EXPECT_TRUE(differs);
  const Tensor oa = forward(a, Path::Fast).at("out"), ob = forward(b, Path::Fast).at("out");
  for (int64_t t = 0; t < oa.numel(); ++t) ASSERT_EQ(oa[t], ob[t]);
  SRun off = make_run("sinkhorn", {{"heads", 2}, {"seq_len", 100}, {"block_size", 16}});
  EXPECT_EQ(off.in.count("gumbel_noise"), 0u);
  EXPECT_FALSE(off.params.b("gumbel"));
  // Noise changes the sort: outputs differ from the noiseless run on the same q, k, v, weights.
  for (const auto& [name, t] : off.in) a.in.at(name) = t;
  const Tensor noisy = forward(a, Path::Fast).at("out"), clean = forward(off, Path::Fast).at("out");
  EXPECT_GT(rel_error(noisy, clean), 1e-4);
}

TEST(Sinkhorn, SortNetWeightsAreInputsWithDocumentedShapes) {
  SRun r = make_run("sinkhorn", {{"heads", 3},
                                 {"head_dim", 16},
                                 {"seq_len", 100},
                                 {"block_size", 16},
                                 {"sortnet_hidden", 10}});
  EXPECT_EQ(r.in.at("sort_w1").shape(), (Shape{3, 16, 10}));
  EXPECT_EQ(r.in.at("sort_b1").shape(), (Shape{3, 10}));
  EXPECT_EQ(r.in.at("sort_w2").shape(), (Shape{3, 10, 7}));
  EXPECT_EQ(r.in.at("sort_b2").shape(), (Shape{3, 7}));
  EXPECT_EQ(make_run("sinkhorn", {{"head_dim", 24}}).params.i("sortnet_hidden"), 24);
  // Scaled ~1/sqrt(fan_in).
  const Tensor& w1 = r.in.at("sort_w1");
  double ss = 0;
  for (int64_t t = 0; t < w1.numel(); ++t) ss += double(w1[t]) * w1[t];
  EXPECT_NEAR(std::sqrt(ss / double(w1.numel())), 0.25, 0.05);
}

TEST(Sinkhorn, BadInputs) {
  auto error = [](const nlohmann::json& g) -> std::pair<std::string, std::string> {
    try {
      make_run("sinkhorn", g);
    } catch (const InputError& e) {
      return {e.field(), e.what()};
    }
    return {"", "no error"};
  };
  auto [f1, m1] = error({{"temperature", 0.0}});
  EXPECT_EQ(f1, "temperature");
  EXPECT_NE(m1.find("> 0"), std::string::npos) << m1;
  auto [f2, m2] = error({{"causal", true}, {"sortcut_k", 2}});
  EXPECT_EQ(f2, "sortcut_k");
  EXPECT_NE(m2.find("allowed"), std::string::npos) << m2;
  auto [f3, m3] = error({{"seq_len", 100}, {"block_size", 16}, {"sortcut_k", 8}});
  EXPECT_EQ(f3, "sortcut_k");
  EXPECT_NE(m3.find("1..7"), std::string::npos) << m3;
  auto [f4, m4] = error({{"combine", "stack"}});
  EXPECT_NE(m4.find("stack"), std::string::npos) << m4;
  EXPECT_NE(m4.find("concat"), std::string::npos) << m4;
  EXPECT_NE(error({{"block_size", 0}}).second.find("block_size"), std::string::npos);
  EXPECT_NE(error({{"sinkhorn_iters", 0}}).second.find("sinkhorn_iters"), std::string::npos);
  EXPECT_NE(error({{"sortnet_hidden", 0}}).second.find("sortnet_hidden"), std::string::npos);
  EXPECT_EQ(error({{"temperature", -1.0}}).first, "temperature");
}

TEST(Sinkhorn, CheckParamsKeepsSortCutValid) {
  SRun r = make_run("sinkhorn", {{"seq_len", 4096}, {"sortcut_k", 60}});
  const Params q = r.mech->check_params(r.params);
  EXPECT_EQ(q.i("seq_len"), 1024);
  EXPECT_EQ(q.i("sortcut_k"), 16);
}

}  // namespace
}  // namespace kt::test
