// The subcommands of the kittention CLI, one file each. Each registers its options on the app and
// returns the function that runs it (exit code: 0 ok, 1 failed check or regression, 2 bad input).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace kt::cli {

using Command = std::function<int()>;

Command add_list(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_run(CLI::App& app);
Command add_peak(CLI::App& app);
Command add_table(CLI::App& app);
Command add_compare(CLI::App& app);

// Writes text to path (or stdout when empty); InputError when the file cannot be written.
void write_output(const std::string& path, const std::string& text);

}  // namespace kt::cli
