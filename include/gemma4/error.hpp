#pragma once
// The one exception type the library throws. Library code never exits or aborts on
// bad input: every problem with a file, a config or an argument becomes an Error whose
// message names the thing that is wrong, what was expected and what was found.

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace gemma4 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace gemma4
