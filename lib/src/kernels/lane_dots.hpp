// Dot products of a tile of query rows held as vector lanes (rows as lanes, the layout of
// attend_fused) against a run of key rows:
//   st[j·rp + l] = Σ_c qt[c·rp + l] · k[j·ldk + c]      l < rp, j < n, c < dim
// Each result is one FMA chain in increasing c starting from 0, so a lane's value is bit-identical
// whatever the tile width, the blocking or the code path (an AVX-512 microkernel, 64 lanes x 6
// keys with the key element broadcast, or a scalar std::fma fallback chosen at run time on CPUs
// without AVX-512). Callers that must agree bit for bit on scores (spark's reference and fast
// paths) compute them here. rp is a multiple of 16; padding lanes of qt should be zero.
#pragma once
#include <cstdint>

namespace kt {

void lane_dots(const float* qt, int64_t rp, const float* k, int64_t ldk, int64_t n, int64_t dim,
               float* st);

// True when lane_dots (and kernels built like it) can use AVX-512F/DQ on this CPU.
bool lane_dots_avx512();

}  // namespace kt
