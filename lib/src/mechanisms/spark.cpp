// spark: Spark attention with statistical top-k, You et al. 2025, "Spark Transformer: Reactivating
// Sparsity in FFN and Attention" (arXiv 2506.06644) §2-§3; spec: mechanisms-softmax.md §5.
//   inputs  q [B,H,L,d], k [B,G,L,d], v [B,G,L,dv]   (query head h reads K/V head h / (H/G))
//   output  out [B,H,L,dv]
// Each head vector splits into a predictor part [0, r) and a rest [r, d). For query i over its
// visible keys N_i (causal: j <= i), n_i = |N_i|:
//   s_j = α·q[:r]·k_j[:r]                         predictor, every visible key
//   S_i = N_i                                     if n_i <= k (early positions: no threshold)
//       = { j : s_j > μ + σ·Φ⁻¹(1 - k/n_i) }      topk_mode = statistical (population σ over N_i)
//       = the k largest s_j, ties to smaller j     topk_mode = exact
//       = { argmax_j s_j } (first)                if the threshold keeps nothing (constant rows)
//   o_i = Σ_{j∈S_i} softmax_{S_i}(s)_j · softplus(α·q[r:]·k_j[r:]) · v_j
// The weights are ≥ 0 and do not sum to 1 (the gate is not normalised).
// Choices (decisions.md): α1 = α2 = scale (default 1/sqrt(head_dim)); population σ; argmax guard;
// causal by default; with GQA each query head makes its own selection; Φ⁻¹ in double (Acklam +
// one Halley step, kernels/topk.hpp). RoPE is the caller's (q, k arrive rotated).
// Passes, both paths, per (b, h, tile of block_rows queries):
//   (1) predictor scores S = (α·Q[:, :r]) · K[:jmax, :r]ᵀ of the tile: one GEMM, rows x jmax x r,
//       jmax = last query + 1 (causal) or L. Both paths share this pass, so both see the same float
//       scores and take the same keep/drop decision for keys at the threshold (decisions.md:
//       a key within float rounding of θ may go either way; the tests' float64 oracle checks it).
//   (2) per row: selection (statistics + threshold, or exact top-k) into an index list.
//   (3) per row, only over the kept keys: softmax of their predictor scores, the softplus gate
//       (a (d - r)-long dot product per kept key) and the value sum.
// Reference: (2) by a full sort (exact) or a double compare (statistical), (3) in double with
// libm. Fast: (2) AVX-512 compare-and-compress, nth_element; (3) vectorised gather
// (kernels/gather.hpp) over [K[:, r:] ; V] packed into one row per key, prefetched a block of
// 16 keys ahead; exact mode pre-filters candidates above the threshold for 2k. Work: O(L²·r) for
// (1), O(L·k·d) for (3); no L x L buffer anywhere (a thread holds block_rows x L predictor scores).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/blas.hpp"
#include "kernels/gather.hpp"
#include "kernels/topk.hpp"
#include "mechanisms/common.hpp"
#include "mechanisms/mechanisms.hpp"

namespace kt {

namespace {

struct SparkDims {
  int64_t B, H, G, L, d, dv, r, k, br;
  bool causal;
  float scale;
  TopkMode mode;
  int threads;
  explicit SparkDims(const Params& p)
      : B(p.i("batch")),
        H(p.i("heads")),
        G(p.i("kv_heads")),
        L(p.i("seq_len")),
        d(p.i("head_dim")),
        dv(p.i("value_dim")),
        r(p.i("r")),
        k(p.i("k")),
        br(std::min(p.i("block_rows"), p.i("seq_len"))),
        causal(p.b("causal")),
        scale(static_cast<float>(p.f("scale"))),
        mode(p.s("topk_mode") == "exact" ? TopkMode::Exact : TopkMode::Statistical),
        threads(static_cast<int>(p.i("threads"))) {}
  int64_t tiles() const { return (L + br - 1) / br; }
  int64_t items() const { return B * H * tiles(); }
  int64_t nthreads() const { return std::min<int64_t>(threads, items()); }
  int64_t visible(int64_t i) const { return causal ? i + 1 : L; }
  // Floats per thread: scaled predictor queries, scores, index list (+16 slack), weights, gate
  // inputs, exact-mode scratch.
  // Each segment is padded to 16 floats (64 bytes).
  static int64_t pad(int64_t n) { return (n + 15) / 16 * 16; }
  int64_t per_thread() const {
    return pad(br * r) + pad(br * L) + pad(L + 16) + 2 * pad(L) +
           (mode == TopkMode::Exact ? pad(L) : 0);
  }
};

// Copies K[:, :r] of every (b, g) into k1 [B,G,L,r] (contiguous predictor keys, what the
// predictor GEMM streams) and, when kv is given, [K[:, r:] ; V] into kv [B,G,L,(d - r) + dv] (one
// contiguous row per key for the gathers of pass 3).
void pack_keys(const SparkDims& s, const float* k, const float* v, float* k1, float* kv) {
  const int64_t rows = s.B * s.G * s.L, w = s.d - s.r + s.dv;
#pragma omp parallel for num_threads(s.threads) schedule(static)
  for (int64_t j = 0; j < rows; ++j) {
    const float* kj = k + j * s.d;
    std::copy(kj, kj + s.r, k1 + j * s.r);
    if (kv) {
      std::copy(kj + s.r, kj + s.d, kv + j * w);
      std::copy(v + j * s.dv, v + (j + 1) * s.dv, kv + j * w + (s.d - s.r));
    }
  }
}

// Pass (1) for the queries [i0, i1) of head h: S[(i - i0)·L + j] = α·q_i[:r]·k_j[:r], j < jmax,
// from the packed k1. Returns jmax. qt holds (i1 - i0)·r floats.
int64_t predictor_scores(const SparkDims& s, const float* q, const float* k1, int64_t b, int64_t h,
                         int64_t i0, int64_t i1, float* qt, float* S) {
  const int64_t g = h / (s.H / s.G), rows = i1 - i0;
  const int64_t jmax = s.causal ? i1 : s.L;
  const float* qb = q + ((b * s.H + h) * s.L + i0) * s.d;
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < s.r; ++c) qt[t * s.r + c] = qb[t * s.d + c] * s.scale;
  blas::gemm(false, true, rows, jmax, s.r, 1.0f, qt, s.r, k1 + (b * s.G + g) * s.L * s.r, s.r, 0.0f,
             S, s.L);
  return jmax;
}

// Runs body(thread scratch, b, h, i0, i1) over every (b, h, query tile), largest (latest) causal
// tiles first, BLAS single-threaded inside.
template <class Body>
void for_each_tile(const SparkDims& s, float* scratch, Body&& body) {
  const int64_t tiles = s.tiles(), items = s.items();
  blas::ThreadsScope blas_single(1);
#pragma omp parallel num_threads(static_cast <int>(s.nthreads()))
  {
    FlushDenormals ftz;
    float* mine = scratch + s.per_thread() * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = tiles - 1 - item % tiles, bh = item / tiles;
      const int64_t i0 = t * s.br, i1 = std::min(s.L, i0 + s.br);
      body(mine, bh / s.H, bh % s.H, i0, i1);
    }
  }
}

class SparkAttention final : public Mechanism {
 public:
  std::string name() const override { return "spark"; }
  std::string family() const override { return "sparse"; }
  std::string summary() const override {
    return "Spark attention: r-dim predictor, statistical top-k, softmax x softplus gate on kept "
           "keys";
  }
  PaperInfo paper() const override {
    return {"Spark Transformer: Reactivating Sparsity in FFN and Attention", "You et al.", 2025,
            "2506.06644"};
  }

  std::vector<ParamSpec> params() const override {
    ParamSpec k;
    k.name = "k";
    k.type = ParamType::Int;
    k.help = "target number of kept keys per query (rows with n <= k keep every visible key)";
    k.default_value = int64_t{256};
    k.min = 1;
    k.max = 1 << 24;
    ParamSpec r;
    r.name = "r";
    r.type = ParamType::Int;
    r.help = "predictor width: the first r dims of q and k; the rest (d - r) feed the gate";
    r.default_text = "head_dim / 2";
    r.min = 1;
    r.max = 1 << 14;
    ParamSpec mode;
    mode.name = "topk_mode";
    mode.type = ParamType::Choice;
    mode.help = "statistical: keep s > mean + std·Φ⁻¹(1 - k/n); exact: the k largest";
    mode.default_value = std::string("statistical");
    mode.choices = {"statistical", "exact"};
    ParamSpec rows;
    rows.name = "block_rows";
    rows.type = ParamType::Int;
    rows.help = "query rows per predictor tile (scratch: block_rows x L floats per thread)";
    rows.default_value = int64_t{64};
    rows.min = 1;
    rows.max = 4096;
    return {common::batch(),
            common::heads(),
            common::kv_heads("heads"),
            common::head_dim(),
            common::value_dim(),
            common::seq_len(),
            common::causal(true),
            common::scale("1/sqrt(head_dim), for both the predictor and the gate"),
            common::seed(),
            common::threads(),
            k,
            r,
            mode,
            rows};
  }

  void resolve(Params& p) const override {
    const int64_t H = p.i("heads"), d = p.i("head_dim");
    if (!p.has("kv_heads")) p.set("kv_heads", H);
    const int64_t G = p.i("kv_heads");
    if (H % G != 0)
      throw InputError("kv_heads", fmt::format("kv_heads = {} must divide heads = {} (allowed: a "
                                               "divisor of {})",
                                               G, H, H));
    if (!p.has("r")) {
      if (d < 2)
        throw InputError("head_dim",
                         fmt::format("spark splits head_dim into a predictor and a "
                                     "gate part; head_dim = {} is too small (need >= 2)",
                                     d));
      p.set("r", d / 2);
    }
    const int64_t r = p.i("r");
    if (r <= 0 || r >= d)
      throw InputError("r", fmt::format("r = {} must satisfy 0 < r < head_dim = {} (allowed: 1.."
                                        "{})",
                                        r, d, d - 1));
    if (!p.has("value_dim")) p.set("value_dim", d);
    if (!p.has("scale")) p.set("scale", 1.0 / std::sqrt(double(d)));
  }

  std::vector<TensorSpec> inputs(const Params& p) const override {
    const int64_t B = p.i("batch"), H = p.i("heads"), G = p.i("kv_heads"), L = p.i("seq_len");
    return {{"q", {B, H, L, p.i("head_dim")}, "queries [B,H,L,d] (first r dims: predictor)"},
            {"k", {B, G, L, p.i("head_dim")}, "keys [B,G,L,d] (first r dims: predictor)"},
            {"v", {B, G, L, p.i("value_dim")}, "values [B,G,L,dv]"}};
  }
  std::vector<TensorSpec> outputs(const Params& p) const override {
    return {{"out",
             {p.i("batch"), p.i("heads"), p.i("seq_len"), p.i("value_dim")},
             "attention output [B,H,L,dv]"}};
  }

  CostModel cost(const Params& p, Path path) const override {
    const SparkDims s(p);
    const double L = s.L, k = s.k, d = s.d, dv = s.dv, r = s.r, slices = double(s.B * s.H);
    // Per (b, h) slice: N visible pairs (predictor), M kept pairs (gate + values; statistical
    // mode keeps about min(k, n) per row, exact mode exactly that), N_big pairs and R_big rows
    // that need a threshold (n > k).
    double N, M, Nbig, Rbig;
    if (s.causal) {
      const double kc = std::min(k, L);
      N = L * (L + 1) / 2;
      M = kc * (kc + 1) / 2 + (L - kc) * k;
      Nbig = L > k ? N - k * (k + 1) / 2 : 0;
      Rbig = std::max(0.0, L - k);
    } else {
      N = L * L;
      M = L * std::min(k, L);
      Nbig = L > k ? N : 0;
      Rbig = L > k ? L : 0;
    }
    CostModel c;
    const double pred = slices * 2 * r * N, gate = slices * 2 * (d - r) * M,
                 values = slices * 2 * dv * M;
    c.flops = pred + gate + values;
    c.flops_parts = {{"predictor", pred}, {"gate", gate}, {"values", values}};
    // Scale folded into the predictor queries (L·r); statistics (shift, add, square, add) and one
    // compare per visible key of a thresholded row; softmax 3M - 2L; gate scale and product 2M;
    // deferred normalisation L·dv + L.
    c.elementwise = slices * (L * r + 5 * Nbig + 3 * M - 2 * L + 2 * M + L * dv + L);
    // exp per kept key (softmax), softplus = exp + log1p per kept key, sqrt + Φ⁻¹ per
    // thresholded row.
    c.transcendentals = slices * (3 * M + 2 * Rbig);
    // Predictor GEMMs as issued: rows x jmax per tile (the tile's upper triangle included).
    double tile_pairs = 0;
    for (int64_t i0 = 0; i0 < s.L; i0 += s.br) {
      const int64_t i1 = std::min(s.L, i0 + s.br);
      tile_pairs += double(i1 - i0) * double(s.causal ? i1 : s.L);
    }
    c.issued_flops = slices * 2 * r * tile_pairs;  // the gate and value sums are not GEMMs
    c.io_bytes = 4 * (slices * L * (d + dv) + double(s.B * s.G) * L * (d + dv));
    c.kv_bytes_per_token = 4 * double(s.G) * (d + dv);
    c.time_complexity = "O(B·H·(L²·r + L·k·d))";
    c.space_complexity = "O(T·Br·L + B·G·L·(d + dv))";
    const double packed_k1 = 4.0 * double(s.B * s.G * s.L * s.r);
    if (path == Path::Fast) {
      c.workspace_bytes = 4.0 * double(s.nthreads() * s.per_thread()) + packed_k1 +
                          4.0 * double(s.B * s.G * s.L * (s.d - s.r + s.dv));
      c.form = "predictor GEMM per row tile + threshold + gather over kept keys";
    } else {
      c.workspace_bytes = 4.0 * double(s.nthreads() * s.per_thread()) + packed_k1;
      c.form = "predictor GEMM per row tile + sort/double-precision selection and sums";
    }
    return c;
  }

  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override {
    const SparkDims s(p);
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    float* o = output(out, "out").data();
    Workspace::Scope scope(ws);
    float* scratch = ws.alloc_floats(s.nthreads() * s.per_thread());
    float* k1 = ws.alloc_floats(s.B * s.G * s.L * s.r);
    pack_keys(s, k, v, k1, nullptr);
    for_each_tile(s, scratch, [&](float* mine, int64_t b, int64_t h, int64_t i0, int64_t i1) {
      float* qt = mine;
      float* S = qt + s.pad(s.br * s.r);
      int32_t* idx = reinterpret_cast<int32_t*>(S + s.pad(s.br * s.L));
      double* w = reinterpret_cast<double*>(idx + s.pad(s.L + 16));  // 2·pad(L) floats
      const int64_t g = h / (s.H / s.G);
      predictor_scores(s, q, k1, b, h, i0, i1, qt, S);
      const float* kb = k + (b * s.G + g) * s.L * s.d;
      const float* vb = v + (b * s.G + g) * s.L * s.dv;
      for (int64_t i = i0; i < i1; ++i) {
        const float* si = S + (i - i0) * s.L;
        const float* qi = q + ((b * s.H + h) * s.L + i) * s.d;
        const int64_t n = s.visible(i);
        // Selection.
        int64_t m = 0;
        if (n <= s.k) {
          for (int64_t j = 0; j < n; ++j) idx[m++] = int32_t(j);
        } else if (s.mode == TopkMode::Statistical) {
          const double theta = statistical_threshold(si, n, s.k);
          for (int64_t j = 0; j < n; ++j)
            if (double(si[j]) > theta) idx[m++] = int32_t(j);
        } else {
          for (int64_t j = 0; j < n; ++j) idx[j] = int32_t(j);
          std::sort(idx, idx + n, [&](int32_t a, int32_t c) {
            return si[a] > si[c] || (si[a] == si[c] && a < c);
          });
          m = s.k;
          std::sort(idx, idx + m);
        }
        if (m == 0) {  // nothing above the threshold: keep the first argmax
          int64_t best = 0;
          for (int64_t j = 1; j < n; ++j)
            if (si[j] > si[best]) best = j;
          idx[m++] = int32_t(best);
        }
        // Softmax over the kept predictor scores, times the softplus gate, in double.
        double mx = -INFINITY, z = 0;
        for (int64_t t = 0; t < m; ++t) mx = std::max(mx, double(si[idx[t]]));
        for (int64_t t = 0; t < m; ++t) {
          const float* kj = kb + int64_t(idx[t]) * s.d;
          double x = 0;
          for (int64_t c = s.r; c < s.d; ++c) x += double(qi[c]) * double(kj[c]);
          x *= s.scale;
          const double e = std::exp(double(si[idx[t]]) - mx);
          z += e;
          w[t] = e * (std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))));
        }
        float* oi = o + ((b * s.H + h) * s.L + i) * s.dv;
        for (int64_t c = 0; c < s.dv; ++c) {
          double acc = 0;
          for (int64_t t = 0; t < m; ++t) acc += w[t] * double(vb[int64_t(idx[t]) * s.dv + c]);
          oi[c] = static_cast<float>(acc / z);
        }
      }
    });
  }

  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override {
    const SparkDims s(p);
    const float *q = input(in, "q").data(), *k = input(in, "k").data(), *v = input(in, "v").data();
    float* o = output(out, "out").data();
    Workspace::Scope scope(ws);
    float* scratch = ws.alloc_floats(s.nthreads() * s.per_thread());
    const int64_t w2 = s.d - s.r + s.dv;  // packed [K[:, r:] ; V] row
    float* k1 = ws.alloc_floats(s.B * s.G * s.L * s.r);
    float* kv = ws.alloc_floats(s.B * s.G * s.L * w2);
    pack_keys(s, k, v, k1, kv);
    for_each_tile(s, scratch, [&](float* mine, int64_t b, int64_t h, int64_t i0, int64_t i1) {
      float* qt = mine;
      float* S = qt + s.pad(s.br * s.r);
      int32_t* idx = reinterpret_cast<int32_t*>(S + s.pad(s.br * s.L));
      float* w = reinterpret_cast<float*>(idx + s.pad(s.L + 16));
      float* x = w + s.pad(s.L);
      float* sel_scratch = x + s.pad(s.L);  // exact mode only
      const int64_t g = h / (s.H / s.G);
      predictor_scores(s, q, k1, b, h, i0, i1, qt, S);
      const float* kvb = kv + (b * s.G + g) * s.L * w2;
      const GatherPrefetch pf{kvb, w2, w2};
      for (int64_t i = i0; i < i1; ++i) {
        const float* si = S + (i - i0) * s.L;
        const float* qi = q + ((b * s.H + h) * s.L + i) * s.d;
        const int64_t m = select_topk(si, s.visible(i), s.k, s.mode, idx, sel_scratch);
        for (int64_t t = 0; t < m; ++t) w[t] = si[idx[t]];
        // Gate of a block of kept keys: w_t *= softplus(α·q[r:]·k_j[r:]).
        auto gate = [&](float* wt, const int32_t* it, int64_t n) {
          gather_dots(qi + s.r, kvb, w2, it, n, s.d - s.r, s.scale, x);
#pragma omp simd
          for (int64_t t = 0; t < n; ++t) wt[t] *= softplus_approx(x[t]);
        };
        attend_gather_row(w, idx, m, kvb + (s.d - s.r), w2, s.dv,
                          o + ((b * s.H + h) * s.L + i) * s.dv, gate, pf);
      }
    });
  }
};

}  // namespace

const Mechanism& mechanism_spark() {
  static const SparkAttention m;
  return m;
}

}  // namespace kt
