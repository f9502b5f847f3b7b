// NumPy .npy files (format 1.0, little-endian float32 '<f4', C order): what `run --dump` writes
// and `run --inputs` reads.
#pragma once
#include <string>

#include "kittention/tensor.hpp"

namespace kt {

void write_npy(const std::string& path, const Tensor& t);
// Throws InputError (field = path) when the file is missing, malformed, or not '<f4' C order.
Tensor read_npy(const std::string& path);

}  // namespace kt
