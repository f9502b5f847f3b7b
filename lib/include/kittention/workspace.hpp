// Workspace: a library-owned arena from which kernels take their scratch memory. It records the
// peak number of bytes in use, so a run's workspace is measured, not estimated. Allocation is a
// bump of an offset inside 64-byte aligned chunks; a Scope releases what was taken inside it.
// Not thread-safe: take per-thread buffers before entering a parallel region.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kt {

class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  void* alloc_bytes(size_t bytes);  // 64-byte aligned, uninitialised
  template <class T>
  T* alloc(int64_t count) {
    return static_cast<T*>(alloc_bytes(static_cast<size_t>(count) * sizeof(T)));
  }
  float* alloc_floats(int64_t count) { return alloc<float>(count); }

  // Bytes an allocation of `bytes` takes from the arena (64-byte padding, at least 64): the rule
  // cost models use to predict workspace_bytes exactly.
  static size_t padded_bytes(size_t bytes) { return (std::max<size_t>(bytes, 1) + 63) / 64 * 64; }
  static double padded_float_bytes(double floats) {
    return double(padded_bytes(static_cast<size_t>(4.0 * floats)));
  }

  size_t in_use() const { return in_use_; }
  size_t peak() const { return peak_; }
  void reset_peak() { peak_ = in_use_; }
  void release_to(size_t mark);  // frees everything allocated after in_use() was `mark`

  // RAII: releases on destruction what was allocated during its lifetime.
  class Scope {
   public:
    explicit Scope(Workspace& ws) : ws_(ws), mark_(ws.in_use()) {}
    ~Scope() { ws_.release_to(mark_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Workspace& ws_;
    size_t mark_;
  };

 private:
  struct Chunk {
    struct Free {
      void operator()(std::byte* p) const;
    };
    std::unique_ptr<std::byte[], Free> data;
    size_t size = 0, used = 0;
  };
  std::vector<Chunk> chunks_;
  std::vector<std::pair<size_t, size_t>> records_;  // (chunk index, padded bytes) of each alloc
  size_t in_use_ = 0, peak_ = 0;
};

}  // namespace kt
