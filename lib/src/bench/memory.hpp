// Process memory probes (Linux): the RSS high-water mark VmHWM and its reset through
// /proc/self/clear_refs ("5", Linux >= 4.0). Counting hooks would miss OpenBLAS' own mmap
// buffers; RSS sees them.
#pragma once
#include <cstddef>

namespace kt {

bool reset_peak_rss();    // false where the kernel does not allow it
size_t peak_rss_bytes();  // VmHWM, 0 when unavailable
size_t read_available_memory();

}  // namespace kt
