#include "kittention/npy.hpp"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <regex>

#include "kittention/error.hpp"

namespace kt {

void write_npy(const std::string& path, const Tensor& t) {
  std::string shape;
  for (int64_t s : t.shape()) shape += std::to_string(s) + ", ";
  if (t.shape().size() == 1)
    shape.pop_back();  // "(5,)"
  else if (!shape.empty())
    shape.resize(shape.size() - 2);
  std::string header =
      fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", shape);
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64,
  // ending in '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError(path, "cannot open for writing");
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.bytes()));
  if (!f) throw InputError(path, "write failed");
}

Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path, "cannot open .npy file");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw InputError(path, "not a .npy file (bad magic)");
  size_t len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    len = b[0] | (b[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    len = b[0] | (b[1] << 8) | (b[2] << 16) | (size_t(b[3]) << 24);
  } else {
    throw InputError(path, fmt::format("unsupported .npy version {}", int(magic[6])));
  }
  std::string header(len, '\0');
  if (!f.read(header.data(), static_cast<std::streamsize>(len)))
    throw InputError(path, "truncated .npy header");
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'")) || m[1] != "<f4")
    throw InputError(path,
                     "dtype must be little-endian float32 ('<f4'); convert with "
                     "a.astype('<f4')");
  if (std::regex_search(header, m, std::regex("'fortran_order':\\s*True")))
    throw InputError(path, "Fortran order is not supported; save with np.ascontiguousarray");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")))
    throw InputError(path, "no shape in .npy header");
  Shape shape;
  const std::string dims = m[1];
  std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator();
       ++it)
    shape.push_back(std::stoll(it->str()));
  Tensor t(shape);
  if (!f.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.bytes())))
    throw InputError(path, fmt::format("truncated data: expected {} floats", t.numel()));
  return t;
}

}  // namespace kt
