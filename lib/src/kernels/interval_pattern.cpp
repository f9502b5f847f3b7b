#include "kernels/interval_pattern.hpp"

#include <algorithm>
#include <cmath>

namespace kt {

bool IntervalPattern::allowed(int64_t h, int64_t i, int64_t j) const {
  KeyRun r[2];
  runs(h, i, r);
  return (j >= r[0].lo && j < r[0].hi) || (j >= r[1].lo && j < r[1].hi);
}

int64_t IntervalPattern::row_count(int64_t h, int64_t i) const {
  KeyRun r[2];
  runs(h, i, r);
  return std::max<int64_t>(0, r[0].hi - r[0].lo) + std::max<int64_t>(0, r[1].hi - r[1].lo);
}

int64_t IntervalPattern::pair_count(int64_t h, int64_t lq) const {
  int64_t n = 0;
  for (int64_t i = 0; i < lq; ++i) n += row_count(h, i);
  return n;
}

void IntervalPattern::key_blocks(int64_t h, int64_t i0, int64_t i1, int64_t lk, int64_t block_k,
                                 std::vector<KeyBlock>& out) const {
  KeyRun first[2], last[2];
  runs(h, i0, first);
  runs(h, i1 - 1, last);
  // Per run: the span the tile touches, and the keys every row of the tile sees (no mask needed).
  struct Span {
    int64_t lo, hi, full_lo, full_hi;
  };
  Span spans[2];
  int n = 0;
  for (int k = 0; k < 2; ++k) {
    const int64_t lo = std::max<int64_t>(0, first[k].lo), hi = std::min(lk, last[k].hi);
    if (lo >= hi) continue;
    spans[n++] = {lo, hi, last[k].lo, first[k].hi};
  }
  // Two spans that touch or overlap are visited as one (every key masked where needed).
  if (n == 2 && spans[1].lo <= spans[0].hi) {
    spans[0] = {spans[0].lo, std::max(spans[0].hi, spans[1].hi), 0, -1};
    n = 1;
  }
  for (int s = 0; s < n; ++s)
    for (int64_t j0 = spans[s].lo; j0 < spans[s].hi; j0 += block_k) {
      const int64_t j1 = std::min(spans[s].hi, j0 + block_k);
      out.push_back({j0, j1, !(j0 >= spans[s].full_lo && j1 <= spans[s].full_hi)});
    }
}

void IntervalPattern::mask_row(int64_t h, int64_t i, int64_t j0, int64_t j1, float* s) const {
  KeyRun r[2];
  runs(h, i, r);
  // Masked: everything in [j0, j1) outside the non-empty runs.
  auto fill = [&](int64_t a, int64_t b) {
    a = std::max(a, j0);
    b = std::min(b, j1);
    for (int64_t j = a; j < b; ++j) s[j - j0] = -INFINITY;
  };
  const bool has0 = r[0].hi > r[0].lo, has1 = r[1].hi > r[1].lo;
  if (!has0 && !has1) {
    fill(j0, j1);
  } else if (has0 && has1) {
    fill(j0, r[0].lo);
    fill(r[0].hi, r[1].lo);
    fill(r[1].hi, j1);
  } else {
    const KeyRun& a = has0 ? r[0] : r[1];
    fill(j0, a.lo);
    fill(a.hi, j1);
  }
}

}  // namespace kt
