// kittention: benchmark attention mechanisms on this CPU. See README.md.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <map>

#include "commands.hpp"
#include "kittention/error.hpp"

namespace kt::cli {

void write_output(const std::string& path, const std::string& text) {
  if (path.empty()) {
    std::fputs(text.c_str(), stdout);
    return;
  }
  std::ofstream f(path);
  if (!f || !(f << text)) throw InputError("out", fmt::format("cannot write '{}'", path));
}

}  // namespace kt::cli

int main(int argc, char** argv) {
  CLI::App app{
      "kittention: the attention archive. Time, memory and FLOPs of attention mechanisms "
      "on this CPU."};
  app.require_subcommand(1);
  std::map<CLI::App*, kt::cli::Command> commands;
  for (auto add : {kt::cli::add_list, kt::cli::add_bench, kt::cli::add_run, kt::cli::add_peak,
                   kt::cli::add_table, kt::cli::add_compare}) {
    auto cmd = add(app);
    commands[app.get_subcommands({}).back()] = cmd;  // the subcommand `add` just registered
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    for (CLI::App* sub : app.get_subcommands()) return commands.at(sub)();
  } catch (const kt::InputError& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "error: out of memory\n");
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "internal error: {}\n", e.what());
    return 3;
  }
  return 0;
}
