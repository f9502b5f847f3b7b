// Errors the library reports to its callers.
//   InputError: the user's input is invalid (the CLI exits with code 2). The message names the
//   field, the value given and what is allowed.
#pragma once
#include <stdexcept>
#include <string>

namespace kt {

class InputError : public std::runtime_error {
 public:
  InputError(std::string field, const std::string& message)
      : std::runtime_error(field.empty() ? message : field + ": " + message),
        field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// Checks a precondition of a kernel (a programming error, not a user error): throws
// std::logic_error.
#define KT_ASSERT(cond, msg)                                                        \
  do {                                                                              \
    if (!(cond))                                                                    \
      throw std::logic_error(std::string(__FILE__ ":") + std::to_string(__LINE__) + \
                             ": " #cond " failed: " + (msg));                       \
  } while (0)

}  // namespace kt
