#include "kittention/workspace.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "core/memory.hpp"

namespace kt {

namespace {
constexpr size_t kAlign = 64;
constexpr size_t kMinChunk = size_t(1) << 20;
}  // namespace

void Workspace::Chunk::Free::operator()(std::byte* p) const {
  std::free(p);
}

void* Workspace::alloc_bytes(size_t bytes) {
  const size_t padded = padded_bytes(bytes);
  // Allocation is LIFO, so the chunks in use are a prefix: take the top chunk if it has room,
  // else the first empty chunk after it that is large enough, else a new chunk. Chunks are kept
  // until the arena dies, so a repeated run reuses its memory (no page faults on every run).
  size_t top = 0;
  for (size_t i = chunks_.size(); i-- > 0;)
    if (chunks_[i].used > 0) {
      top = i;
      break;
    }
  size_t idx = chunks_.size();
  for (size_t i = top; i < chunks_.size() && idx == chunks_.size(); ++i)
    if ((i == top || chunks_[i].used == 0) && chunks_[i].size - chunks_[i].used >= padded) idx = i;
  if (idx == chunks_.size()) {
    Chunk c;
    c.size = std::max(padded, kMinChunk);
    void* p = alloc_buffer(c.size);
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
}

}  // namespace kt
