#include "kittention/workspace.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace kt {

namespace {
constexpr size_t kAlign = 64;
constexpr size_t kMinChunk = size_t(1) << 20;
size_t round_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}
}  // namespace

void Workspace::Chunk::Free::operator()(std::byte* p) const {
  std::free(p);
}

void* Workspace::alloc_bytes(size_t bytes) {
  const size_t padded = round_up(std::max<size_t>(bytes, 1));
  // Use the first chunk (from the newest) that is empty past its last record and has room.
  size_t idx = chunks_.size();
  if (!chunks_.empty() && chunks_.back().size - chunks_.back().used >= padded)
    idx = chunks_.size() - 1;
  if (idx == chunks_.size()) {
    Chunk c;
    c.size = std::max(padded, kMinChunk);
    void* p = std::aligned_alloc(kAlign, c.size);
    if (!p) throw std::bad_alloc();
    c.data.reset(static_cast<std::byte*>(p));
    chunks_.push_back(std::move(c));
  }
  Chunk& c = chunks_[idx];
  void* out = c.data.get() + c.used;
  c.used += padded;
  records_.emplace_back(idx, padded);
  in_use_ += padded;
  peak_ = std::max(peak_, in_use_);
  return out;
}

void Workspace::release_to(size_t mark) {
  while (in_use_ > mark && !records_.empty()) {
    auto [idx, padded] = records_.back();
    records_.pop_back();
    chunks_[idx].used -= padded;
    in_use_ -= padded;
  }
  // Drop trailing empty chunks except the largest-so-far one, so memory is returned between runs
  // but a repeated run of the same size does not reallocate.
  while (chunks_.size() > 1 && chunks_.back().used == 0 && chunks_[chunks_.size() - 2].used == 0)
    chunks_.erase(chunks_.end() - 2);
}

}  // namespace kt
