// mha: the multi-head attention layer of Vaswani et al. 2017 §3.2.2 (K/V heads = query heads).
// Layer, shapes and passes: projected.hpp.
#include "mechanisms/mechanisms.hpp"
#include "mechanisms/projected.hpp"

namespace kt {

namespace {
class MultiHeadAttention final : public ProjectedAttention {
 public:
  std::string name() const override { return "mha"; }
  std::vector<std::string> aliases() const override { return {"multihead"}; }
  std::string summary() const override {
    return "multi-head attention layer: Q/K/V/O projections + per-head SDPA";
  }
  PaperInfo paper() const override {
    return {"Attention Is All You Need", "Vaswani et al.", 2017, "1706.03762"};
  }

 protected:
  int64_t default_kv_heads(int64_t heads) const override { return heads; }
  std::string kv_heads_text() const override { return "heads"; }
};
}  // namespace

const Mechanism& mechanism_mha() {
  static const MultiHeadAttention m;
  return m;
}

}  // namespace kt
