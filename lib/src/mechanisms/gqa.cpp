// gqa: grouped-query attention, Ainslie et al. 2023 §2.2: G key/value heads, each shared by H/G
// consecutive query heads (query head h reads KV head h / (H/G)). Default G = max(1, H/4)
// (decisions.md). Layer, shapes and passes: projected.hpp.
#include <algorithm>

#include "mechanisms/mechanisms.hpp"
#include "mechanisms/projected.hpp"

namespace kt {

namespace {
class GroupedQueryAttention final : public ProjectedAttention {
 public:
  std::string name() const override { return "gqa"; }
  std::vector<std::string> aliases() const override { return {"grouped"}; }
  std::string summary() const override {
    return "grouped-query attention layer: G shared K/V heads, smaller KV cache";
  }
  PaperInfo paper() const override {
    return {"GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints",
            "Ainslie et al.", 2023, "2305.13245"};
  }

 protected:
  int64_t default_kv_heads(int64_t heads) const override { return std::max<int64_t>(1, heads / 4); }
  std::string kv_heads_text() const override { return "max(1, heads/4)"; }
};
}  // namespace

const Mechanism& mechanism_gqa() {
  static const GroupedQueryAttention m;
  return m;
}

}  // namespace kt
