// kittention run: one forward pass of one configuration; --dump DIR writes manifest.json and one
// .npy per input and output (contract.md), --inputs DIR2 replaces generated inputs by files.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "commands.hpp"
#include "kittention/error.hpp"
#include "kittention/npy.hpp"
#include "kittention/report.hpp"
#include "runs.hpp"

namespace kt::cli {

namespace fs = std::filesystem;

namespace {

struct RunCmdFlags {
  RunFlags runs;
  std::string dump, inputs;
  bool reference = false;
};

nlohmann::json tensor_entries(const TensorMap& tensors) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, t] : tensors) j[name] = {{"file", name + ".npy"}, {"shape", t.shape()}};
  return j;
}

void load_inputs(const std::string& dir, const Mechanism& m, const Params& p, TensorMap& in) {
  if (!fs::is_directory(dir))
    throw InputError("inputs", fmt::format("'{}' is not a directory", dir));
  for (const auto& spec : m.inputs(p)) {
    const fs::path file = fs::path(dir) / (spec.name + ".npy");
    if (!fs::exists(file)) continue;
    Tensor t = read_npy(file.string());
    if (t.shape() != spec.shape)
      throw InputError(spec.name, fmt::format("{} has shape {} but {} expects {} for this "
                                              "configuration",
                                              file.string(), shape_str(t.shape()), m.name(),
                                              shape_str(spec.shape)));
    in[spec.name] = std::move(t);
  }
}

}  // namespace

Command add_run(CLI::App& app) {
  auto* sub =
      app.add_subcommand("run", "run one forward pass; optionally dump inputs and outputs as .npy");
  auto f = std::make_shared<RunCmdFlags>();
  f->runs.add_to(*sub, false);
  sub->add_option("--dump", f->dump, "directory for manifest.json and the .npy tensors");
  sub->add_option("--inputs", f->inputs,
                  "directory of .npy inputs to use instead of generated ones");
  sub->add_flag("--ref", f->reference, "run the reference implementation instead of the fast path");
  return [f] {
    const auto specs = expand_runs(f->runs);
    if (specs.size() != 1)
      throw InputError("mech", fmt::format("run takes exactly one configuration, got {} (use bench "
                                           "for sweeps)",
                                           specs.size()));
    const Mechanism& m = *specs[0].mech;
    const Params p = resolve_params(m, specs[0].given);
    TensorMap in;
    m.generate_inputs(p, in);
    if (!f->inputs.empty()) load_inputs(f->inputs, m, p, in);
    const Path path = f->reference ? Path::Reference : Path::Fast;
    Workspace ws;
    const auto t0 = std::chrono::steady_clock::now();
    const TensorMap out = run_forward(m, p, in, path, ws);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    if (!f->dump.empty()) {
      std::error_code ec;
      fs::create_directories(f->dump, ec);
      if (ec)
        throw InputError("dump", fmt::format("cannot create '{}': {}", f->dump, ec.message()));
      for (const auto& [name, t] : in) write_npy((fs::path(f->dump) / (name + ".npy")).string(), t);
      for (const auto& [name, t] : out)
        write_npy((fs::path(f->dump) / (name + ".npy")).string(), t);
      const nlohmann::json manifest = {{"schema_version", kSchemaVersion},
                                       {"mechanism", m.name()},
                                       {"params", p.to_json()},
                                       {"inputs", tensor_entries(in)},
                                       {"outputs", tensor_entries(out)},
                                       {"path", path_name(path)}};
      write_output((fs::path(f->dump) / "manifest.json").string(), manifest.dump(2) + "\n");
    }
    fmt::print("{} ({} path): {} in {}, workspace {}\n", m.name(), path_name(path),
               specific_params(m.name(), p).empty() ? std::string("default parameters")
                                                    : specific_params(m.name(), p),
               format_time(took), format_bytes(double(ws.peak())));
    for (const auto& [name, t] : out) fmt::print("  output {} {}\n", name, shape_str(t.shape()));
    if (!f->dump.empty())
      fmt::print("  wrote {}/manifest.json and {} .npy files\n", f->dump, in.size() + out.size());
    return 0;
  };
}

}  // namespace kt::cli
