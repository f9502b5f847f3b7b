#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>

#include "kernels/blas.hpp"
#include "kittention/bench.hpp"
#include "kittention_git_commit.hpp"  // generated at build time (lib/git_commit.cmake)

namespace kt {

namespace {
std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      return pos == std::string::npos ? line : line.substr(pos + 2);
    }
  return "unknown";
}
std::string env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
}  // namespace

nlohmann::json machine_context(int threads) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  nlohmann::json env = nlohmann::json::object();
  for (const char* v : {"OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                        "OMP_NUM_THREADS", "OMP_PROC_BIND"})
    if (!env_or_null(v).empty()) env[v] = env_or_null(v);
  return {{"date", date},
          {"host_name", host},
          {"cpu_model", cpu_model()},
          {"num_cpus", omp_get_num_procs()},
          {"threads", threads},
          {"blas_vendor", "OpenBLAS"},
          {"blas_version", blas::version()},
          {"blas_config", blas::vendor()},
          {"compiler", std::string("g++ ") + __VERSION__},
          {"build_type", KITTENTION_BUILD_TYPE},
          {"kittention_version", KITTENTION_VERSION},
          {"git_commit", KITTENTION_GIT_COMMIT},
          {"environment", env}};
}

PeakResult measure_peak(int threads, int64_t n, int reps) {
  Tensor a({n, n}), b({n, n}), c({n, n});
  a.fill(1.0f / float(n));
  b.fill(0.5f);
  blas::ThreadsScope scope(threads);
  auto once = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    blas::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  once();  // warm up: page in, start BLAS threads
  std::vector<double> samples;
  for (int i = 0; i < reps; ++i) samples.push_back(once());
  PeakResult r;
  r.n = n;
  r.threads = threads;
  r.time = compute_stats(samples);
  r.gflops = 2.0 * double(n) * double(n) * double(n) / r.time.median / 1e9;
  return r;
}

}  // namespace kt
