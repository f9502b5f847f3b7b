// kittention peak: this machine's sgemm GFLOP/s with the threads in use, the yardstick of every
// kernel's efficiency.
#include <fmt/format.h>
#include <omp.h>

#include <memory>

#include "commands.hpp"
#include "kittention/bench.hpp"
#include "kittention/report.hpp"

namespace kt::cli {

Command add_peak(CLI::App& app) {
  auto* sub = app.add_subcommand("peak", "measure this machine's sgemm GFLOP/s");
  struct Flags {
    std::vector<int> threads;
    int64_t n = 3072;
    int reps = 5;
    std::string format = "table";
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("--threads", f->threads, "thread counts to measure (default: all cores)")
      ->check(CLI::Range(1, 1024));
  sub->add_option("--n", f->n, "matrix size n (n x n x n products)")->check(CLI::Range(64, 16384));
  sub->add_option("--reps", f->reps, "timed products per thread count")->check(CLI::Range(1, 1000));
  sub->add_option("--format", f->format, "table | json")->check(CLI::IsMember({"table", "json"}));
  return [f] {
    if (f->threads.empty()) f->threads = {omp_get_num_procs()};
    nlohmann::json results = nlohmann::json::array();
    std::string text;
    for (int t : f->threads) {
      const PeakResult r = measure_peak(t, f->n, f->reps);
      results.push_back({{"threads", t},
                         {"n", r.n},
                         {"gflops", json_number(r.gflops)},
                         {"median", json_number(r.time.median)},
                         {"samples", r.time.samples}});
      text += fmt::format("sgemm {}x{}x{}, {} thread(s): {:.1f} GFLOP/s (median of {})\n", r.n, r.n,
                          r.n, t, r.gflops, f->reps);
    }
    if (f->format == "json")
      write_output("", nlohmann::json{{"schema_version", kSchemaVersion},
                                      {"context", machine_context(f->threads.back())},
                                      {"peak", results}}
                               .dump(2) +
                           "\n");
    else
      write_output("", text);
    return 0;
  };
}

}  // namespace kt::cli
