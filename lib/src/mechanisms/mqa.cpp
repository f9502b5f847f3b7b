// mqa: multi-query attention, Shazeer 2019 §3: every query head shares one key and one value
// head (G = 1). Layer, shapes and passes: projected.hpp.
#include "mechanisms/mechanisms.hpp"
#include "mechanisms/projected.hpp"

namespace kt {

namespace {
class MultiQueryAttention final : public ProjectedAttention {
 public:
  std::string name() const override { return "mqa"; }
  std::vector<std::string> aliases() const override { return {"multiquery"}; }
  std::string summary() const override {
    return "multi-query attention layer: one shared K/V head";
  }
  PaperInfo paper() const override {
    return {"Fast Transformer Decoding: One Write-Head is All You Need", "Noam Shazeer", 2019,
            "1911.02150"};
  }

 protected:
  int64_t default_kv_heads(int64_t) const override { return 1; }
  std::string kv_heads_text() const override { return "1 (fixed)"; }
  bool kv_heads_fixed() const override { return true; }
};
}  // namespace

const Mechanism& mechanism_mqa() {
  static const MultiQueryAttention m;
  return m;
}

}  // namespace kt
