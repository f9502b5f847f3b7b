// Shared building blocks: vectorised exp, online-softmax merge, tiled kernel vs reference on
// awkward tile sizes, visited-pair accounting, workspace arena.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "core/random.hpp"
#include "kernels/attend.hpp"
#include "kernels/blas.hpp"
#include "kernels/interval_pattern.hpp"
#include "kernels/tile.hpp"
#include "kernels/trsm.hpp"
#include "kernels/vexp.hpp"
#include "kittention/tensor.hpp"
#include "kittention/workspace.hpp"

namespace kt {
namespace {

TEST(Exp, RelativeErrorBelow2e7OverTheSoftmaxRange) {
  // The softmax evaluates exp(s - max) <= 0 and exp(m_old - m_new) in [0, 1]; also check positive
  // arguments up to 80 for other users.
  double worst = 0;
  for (double x = -87.0; x <= 80.0; x += 0.000731) {
    const double want = std::exp(x), got = exp_approx(float(x));
    // Compare against exp of the float argument: the input rounding is not the kernel's error.
    const double want_f = std::exp(double(float(x)));
    worst = std::max(worst, std::abs(got - want_f) / want_f);
    (void)want;
  }
  EXPECT_LT(worst, 2e-7);
}

TEST(Exp, MaskedAndExtremeArguments) {
  EXPECT_EQ(exp_approx(-INFINITY), 0.0f);
  EXPECT_EQ(exp_approx(-1e30f), 0.0f);
  EXPECT_EQ(exp_approx(-88.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(exp_approx(1e30f)));
  EXPECT_EQ(exp_approx(0.0f), 1.0f);
}

TEST(Exp, RowPassesVectorisedMatchScalar) {
  std::vector<float> x(1000);
  std::mt19937 g(1);
  std::normal_distribution<float> n(0, 5);
  for (auto& v : x) v = n(g);
  x[17] = -INFINITY;
  const float m = row_max(x.data(), int64_t(x.size()));
  double want = 0;
  for (float v : x) want += std::exp(double(v) - m);
  std::vector<float> y = x;
  const float sum = exp_shift_sum(y.data(), int64_t(y.size()), m);
  EXPECT_NEAR(sum, want, 1e-5 * want);
  EXPECT_EQ(y[17], 0.0f);
  EXPECT_EQ(row_max(x.data(), 0), -INFINITY);
}

TEST(Merge, CombinesDisjointKeySetsLikeOneSoftmax) {
  // Scores s, values v (dv = 2); split the keys into two halves, merge, compare with one pass.
  const std::vector<float> s = {0.5f, -1.0f, 3.0f, 2.0f, -0.5f};
  const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  auto partial = [&](int a, int b, float& m, float& l, float* acc) {
    m = -INFINITY;
    for (int j = a; j < b; ++j) m = std::max(m, s[j]);
    l = 0;
    acc[0] = acc[1] = 0;
    for (int j = a; j < b; ++j) {
      const float e = std::exp(s[j] - m);
      l += e, acc[0] += e * v[2 * j], acc[1] += e * v[2 * j + 1];
    }
  };
  float m1, l1, a1[2], m2, l2, a2[2], m, l, a[2];
  partial(0, 2, m1, l1, a1);
  partial(2, 5, m2, l2, a2);
  partial(0, 5, m, l, a);
  float mc = m2, lc = l2, ac[2] = {a2[0], a2[1]};
  merge_partial(m1, l1, a1, m2, l2, a2, 2);  // (1, 2) order
  merge_partial(mc, lc, ac, m1, l1, a1, 2);  // merging into the other side gives the same
  EXPECT_NEAR(a1[0] / l1, a[0] / l, 1e-6);
  EXPECT_NEAR(a1[1] / l1, a[1] / l, 1e-6);
  // Merging with an empty partial (m = -inf, l = 0) changes nothing.
  float e_acc[2] = {0, 0};
  float mm = m, ll = l, aa[2] = {a[0], a[1]};
  merge_partial(mm, ll, aa, -INFINITY, 0.0f, e_acc, 2);
  EXPECT_FLOAT_EQ(aa[0] / ll, a[0] / l);
}

// Tiled vs reference for tile sizes that do not divide L, GQA stacking, causal with Lq != Lk.
struct TiledCase {
  int64_t heads, kv_heads, lq, lk, dim, block_rows, block_k;
  bool causal;
};

void PrintTo(const TiledCase& c, std::ostream* os) {
  *os << "H" << c.heads << "_G" << c.kv_heads << "_Lq" << c.lq << "_Lk" << c.lk << "_d" << c.dim
      << "_tile" << c.block_rows << "x" << c.block_k << (c.causal ? "_causal" : "");
}

// attend_tiled with both tile kernels against attend_reference on one pattern.
void expect_tiled_matches_reference(const TiledCase& c, const BlockPattern& pattern) {
  const int64_t B = 2;
  Tensor q({B, c.heads, c.lq, c.dim}), k({B, c.kv_heads, c.lk, c.dim}),
      v({B, c.kv_heads, c.lk, c.dim});
  fill_normal(q, 1, "q");
  fill_normal(k, 1, "k");
  fill_normal(v, 1, "v");
  Tensor o1({B, c.heads, c.lq, c.dim}), o2 = o1, lse1({B, c.heads, c.lq}), lse2 = lse1;
  AttendProblem p;
  p.batch = B, p.heads = c.heads, p.kv_heads = c.kv_heads, p.lq = c.lq, p.lk = c.lk;
  p.dim = p.vdim = c.dim, p.scale = 0.3f, p.threads = 2;
  p.q = HeadsView::bhld(q.data(), c.heads, c.lq, c.dim);
  p.k = HeadsView::bhld(k.data(), c.kv_heads, c.lk, c.dim);
  p.v = HeadsView::bhld(v.data(), c.kv_heads, c.lk, c.dim);
  Workspace ws;
  p.o = HeadsOut::bhld(o1.data(), c.heads, c.lq, c.dim), p.lse = lse1.data();
  attend_reference(p, pattern, ws);
  // Both tile kernels: the fused AVX-512 one (when the CPU has it) and the BLAS one.
  for (TileKernel kernel : {TileKernel::Fused, TileKernel::Blas}) {
    SCOPED_TRACE(kernel == TileKernel::Fused ? "fused" : "blas");
    o2.fill(-1), lse2.fill(-1);
    p.o = HeadsOut::bhld(o2.data(), c.heads, c.lq, c.dim), p.lse = lse2.data();
    attend_tiled(p, pattern, ws, {c.block_rows, c.block_k, kernel});
    double max_diff = 0, max_ref = 0;
    for (int64_t i = 0; i < o1.numel(); ++i) {
      ASSERT_FALSE(std::isnan(o2[i]));
      max_diff = std::max(max_diff, double(std::abs(o1[i] - o2[i])));
      max_ref = std::max(max_ref, double(std::abs(o1[i])));
    }
    EXPECT_LE(max_diff, 2e-6 * std::max(1.0, max_ref));  // float32 sums of <= 300 terms
    for (int64_t i = 0; i < lse1.numel(); ++i) {
      if (std::isinf(lse1[i])) {
        EXPECT_EQ(lse1[i], lse2[i]);
      } else {
        EXPECT_NEAR(lse1[i], lse2[i], 1e-5 * std::max(1.0f, std::abs(lse1[i])));
      }
    }
  }
  EXPECT_EQ(ws.in_use(), 0u);
}

class TiledVsReference : public ::testing::TestWithParam<TiledCase> {};

TEST_P(TiledVsReference, Agree) {
  const TiledCase c = GetParam();
  expect_tiled_matches_reference(c, DensePattern(c.causal, c.lq, c.lk));
}

// A band of w + 1 keys ending at the query, and the last 5 keys (two runs per row): in tiles of
// many 16-row groups every group's keys are a different window, so the fused kernel's pass 1
// scores each group over its own span (a staircase of up to 4-vector runs).
class BandAndTail final : public IntervalPattern {
 public:
  BandAndTail(int64_t w, int64_t lk) : w_(w), lk_(lk) {}
  void runs(int64_t, int64_t i, KeyRun r[2]) const override {
    const int64_t hi = std::min(lk_, i + 1), tail = std::max(hi, lk_ - 5);
    r[0] = {std::max<int64_t>(0, i - w_), hi};
    r[1] = {tail, lk_};
  }

 private:
  int64_t w_, lk_;
};

TEST(Tiled, BandTilesOfManyRowGroupsAgree) {
  for (const TiledCase& c :
       {TiledCase{3, 3, 300, 300, 20, 96, 130, true}, TiledCase{2, 1, 1, 1, 16, 96, 130, true},
        TiledCase{2, 2, 77, 77, 64, 80, 40, true}}) {
    SCOPED_TRACE(::testing::PrintToString(c));
    expect_tiled_matches_reference(c, BandAndTail(23, c.lk));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, TiledVsReference,
    ::testing::Values(TiledCase{3, 3, 100, 100, 16, 7, 13, false},
                      TiledCase{3, 3, 100, 100, 16, 7, 13, true},
                      TiledCase{6, 2, 65, 65, 32, 16, 16, true},
                      TiledCase{4, 1, 33, 70, 8, 5, 9, true},  // lq < lk: decode-like offset
                      TiledCase{2, 2, 70, 33, 8, 5, 9, true},  // lq > lk: early rows empty
                      TiledCase{5, 5, 1, 1, 80, 256, 512, false},
                      TiledCase{4, 2, 257, 257, 64, 256, 512, true}));

TEST(Tiled, VisitedPairsCountTilesAndSkipAboveTheDiagonal) {
  const TileConfig cfg{64, 64};
  DensePattern dense(false, 200, 200), causal(true, 200, 200);
  EXPECT_EQ(tiled_visited_pairs(dense, 0, 200, 200, 1, cfg), 200 * 200);
  EXPECT_EQ(count_allowed_pairs(causal, 0, 200, 200), 200 * 201 / 2);
  const int64_t visited = tiled_visited_pairs(causal, 0, 200, 200, 1, cfg);
  EXPECT_GE(visited, 200 * 201 / 2);
  EXPECT_LT(visited, 200 * 200);
}

TEST(Tiled, FlopCounterSeesEveryTileProduct) {
  const int64_t L = 100, d = 16;
  Tensor q({1, 1, L, d}), k = q, v = q, o = q;
  AttendProblem p;
  p.lq = p.lk = L, p.dim = p.vdim = d, p.scale = 0.25f;
  p.q = HeadsView::bhld(q.data(), 1, L, d), p.k = p.q, p.v = p.q;
  p.o = HeadsOut::bhld(o.data(), 1, L, d);
  DensePattern causal(true, L, L);
  const TileConfig cfg{32, 48};
  Workspace ws;
  blas::reset_counted_flops();
  blas::count_flops(true);
  attend_tiled(p, causal, ws, cfg);
  blas::count_flops(false);
  EXPECT_EQ(blas::counted_flops(),
            2.0 * 2 * d * double(tiled_visited_pairs(causal, 0, L, L, 1, cfg)));
}

// X ← (I + tril(A, -1))⁻¹ X, both block-update forms against a float64 forward substitution,
// with the flop counter seeing exactly solve_unit_lower_gemm_flops.
TEST(Trsm, BothFormsSolveTheUnitLowerSystem) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  for (const auto& [c, n, block] : {std::tuple<int64_t, int64_t, int64_t>{64, 128, 16},
                                    {37, 20, 16},
                                    {5, 3, 2},
                                    {33, 17, 40},
                                    {1, 9, 16}}) {
    SCOPED_TRACE(::testing::Message() << c << " " << n << " " << block);
    std::vector<float> a(c * c), x0(c * n);
    for (auto& v : a) v = u(rng);
    for (auto& v : x0) v = u(rng);
    std::vector<double> want(x0.begin(), x0.end());
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < i; ++j)
        for (int64_t k = 0; k < n; ++k) want[i * n + k] -= double(a[i * c + j]) * want[j * n + k];
    double scale = 0;
    for (double w : want) scale = std::max(scale, std::abs(w));
    std::vector<float> at((block + 15) / 16 * 16 * c);
    for (bool lanes : {false, true}) {
      if (lanes && !fused_kernel_available()) continue;
      SCOPED_TRACE(lanes ? "lanes" : "blas");
      std::vector<float> x = x0;
      blas::reset_counted_flops();
      blas::count_flops(true);
      if (lanes)
        solve_unit_lower_lanes(c, n, a.data(), c, x.data(), n, block, at.data());
      else
        solve_unit_lower(c, n, a.data(), c, x.data(), n, block);
      blas::count_flops(false);
      EXPECT_EQ(blas::counted_flops(), solve_unit_lower_gemm_flops(c, n, block));
      double err = 0;
      for (int64_t i = 0; i < c * n; ++i) err = std::max(err, std::abs(x[i] - want[i]));
      EXPECT_LE(err, 1e-5 * std::max(1.0, scale));  // float sums of <= 64 terms of size <= 1
    }
  }
}

TEST(Workspace, RecordsPeakAndReleasesScopes) {
  Workspace ws;
  {
    Workspace::Scope s(ws);
    float* a = ws.alloc_floats(1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
    {
      Workspace::Scope s2(ws);
      ws.alloc_floats(3 << 20);  // larger than a chunk
    }
    ws.alloc_floats(10);
  }
  EXPECT_EQ(ws.in_use(), 0u);
  EXPECT_GE(ws.peak(), (1000 + (3u << 20)) * 4);
  EXPECT_LT(ws.peak(), (1000 + (3u << 20)) * 4 + 256);
}

}  // namespace
}  // namespace kt
