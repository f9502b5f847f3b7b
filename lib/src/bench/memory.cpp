#include "bench/memory.hpp"

#include <fstream>
#include <sstream>
#include <string>

namespace kt {

namespace {
size_t read_kib_field(const char* file, const std::string& key) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      std::istringstream ss(line.substr(key.size()));
      size_t kib = 0;
      ss >> kib;
      return kib * 1024;
    }
  return 0;
}
}  // namespace

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

size_t peak_rss_bytes() {
  return read_kib_field("/proc/self/status", "VmHWM:");
}
size_t read_available_memory() {
  return read_kib_field("/proc/meminfo", "MemAvailable:");
}

}  // namespace kt
