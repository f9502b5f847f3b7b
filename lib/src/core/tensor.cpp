#include "kittention/tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/memory.hpp"
#include "kittention/error.hpp"

namespace kt {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    KT_ASSERT(s >= 0, "negative extent");
    n *= s;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

void Tensor::Free::operator()(float* p) const {
  std::free(p);
}

Tensor::Tensor(Shape shape) : shape_(std::move(shape)), numel_(shape_numel(shape_)) {
  const size_t bytes = ((static_cast<size_t>(numel_) * sizeof(float) + 63) / 64) * 64;
  if (bytes > 0) {
    void* p = alloc_buffer(bytes);
    std::memset(p, 0, bytes);
    data_.reset(static_cast<float*>(p));
  }
}

Tensor::Tensor(const Tensor& other) : Tensor(other.shape_) {
  if (numel_ > 0) std::memcpy(data(), other.data(), bytes());
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) *this = Tensor(other);
  return *this;
}

void Tensor::fill(float value) {
  for (int64_t i = 0; i < numel_; ++i) data_[i] = value;
}

}  // namespace kt
