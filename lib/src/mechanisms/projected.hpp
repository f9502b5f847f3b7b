// The multi-head attention layer of Vaswani et al. §3.2.2 with grouped K/V heads (GQA, MQA):
//   inputs  x [B,L,D], w_q [D,H·d], w_k [D,G·d], w_v [D,G·dv], w_o [H·dv,D]   (weights [in, out])
//   output  out [B,L,D] = concat_h(attn_h) · w_o
//   attn_h = softmax(scale · (x w_q)_h (x w_k)_g(h)ᵀ | mask) (x w_v)_g(h),  g(h) = h / (H/G)
// Head h owns columns h·d .. h·d + d - 1 of w_q (likewise g for w_k, w_v) and rows h·dv .. of w_o.
// Passes: (1) Q, K, V projections, three GEMMs into [B,L,heads,d] buffers (no transposes: the
// attention kernels read them with a row stride); (2) the core (attend_tiled, query heads of a
// group stacked against their shared K/V block; reference: attend_reference); (3) output
// projection. mha (G = H), gqa (G | H, default max(1, H/4)) and mqa (G = 1) differ only in G and
// their paper.
#pragma once
#include "mechanisms/common.hpp"

namespace kt {

class ProjectedAttention : public Mechanism {
 public:
  std::string family() const override { return "exact"; }
  std::vector<ParamSpec> params() const override;
  void resolve(Params& p) const override;
  std::vector<TensorSpec> inputs(const Params& p) const override;
  std::vector<TensorSpec> outputs(const Params& p) const override;
  void generate_inputs(const Params& p, TensorMap& in) const override;
  CostModel cost(const Params& p, Path path) const override;
  void reference(const Params& p, const TensorMap& in, TensorMap& out,
                 Workspace& ws) const override;
  void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const override;

 protected:
  // G from the resolved params when the user did not give kv_heads; "" text for `list`.
  virtual int64_t default_kv_heads(int64_t heads) const = 0;
  virtual std::string kv_heads_text() const = 0;
  // mqa fixes G = 1: a different value is an error.
  virtual bool kv_heads_fixed() const { return false; }

 private:
  void forward(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws,
               Path path) const;
};

}  // namespace kt
