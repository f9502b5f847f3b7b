// Rotary position embedding (RoFormer, Su et al. 2021, arXiv 2104.09864) in the interleaved-pair
// convention of the DeepSeek code (`apply_rotary_emb`, complex view of consecutive pairs): pair i
// of a vector of even width `dim` at position t is (x[2i], x[2i+1]), rotated by the angle t·θ_i
// with θ_i = base^(-2i/dim), i = 0 .. dim/2 - 1:
//   x'[2i]   = x[2i]·cos(t·θ_i) − x[2i+1]·sin(t·θ_i)
//   x'[2i+1] = x[2i]·sin(t·θ_i) + x[2i+1]·cos(t·θ_i)
// So ⟨RoPE_s(q), RoPE_t(k)⟩ depends on the positions only through s − t (relative property).
// (HF ports use the rotate-half convention, pairs (i, i + dim/2): equal up to a fixed permutation
// of the weight columns.)
#pragma once
#include <cstdint>

namespace kt {

// Fills cos_t, sin_t [len, dim/2] for positions pos0 .. pos0 + len - 1 (angles and cos/sin in
// double, stored as float). dim / 2 + 2·len·(dim / 2) transcendentals (pow, cos, sin).
void rope_table(int64_t len, int64_t dim, double base, int64_t pos0, float* cos_t, float* sin_t);

// Rotates in place, for b < batch, i < len, h < heads, the vector of width dim at
//   x + b·batch_stride + i·row_stride + h·head_stride
// by the angles of position row i of the table. 6 flops per pair (4 multiplies, 2 adds).
void rope_apply(float* x, int64_t batch, int64_t len, int64_t heads, int64_t dim,
                int64_t batch_stride, int64_t row_stride, int64_t head_stride, const float* cos_t,
                const float* sin_t, int threads);

}  // namespace kt
