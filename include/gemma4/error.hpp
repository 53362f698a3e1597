#pragma once
// The one exception type the library throws. Library code never exits or aborts on
// bad input: every problem with a file, a config or an argument becomes an Error whose
// message names the thing that is wrong, what was expected and what was found, and whose
// kind() a program can branch on:
//
//   try { ... } catch (const gemma4::Error& e) {
//     if (e.kind() == gemma4::ErrorKind::kContextFull) conversation.restart();
//   }

#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace gemma4 {

enum class ErrorKind {
  kMissingFile,      // a file or directory that should be there is not (or cannot be opened)
  kBadFile,          // a file is malformed, truncated, or contradicts itself
  kConfigMismatch,   // a well-formed file is for another model (config.json, tokenizer, converted file)
  kUnsupported,      // valid input of a kind this library does not implement
  kContextFull,      // the tokens do not fit the session's context
  kInvalidText,      // text that is not valid UTF-8
  kInvalidArgument,  // an argument or setting out of range, an unknown token id
  kIo,               // the system refused a read, map, write or allocation
};

constexpr std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kMissingFile: return "missing file";
    case ErrorKind::kBadFile: return "bad file";
    case ErrorKind::kConfigMismatch: return "config mismatch";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kContextFull: return "context full";
    case ErrorKind::kInvalidText: return "invalid text";
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kIo: return "I/O";
  }
  return "?";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace gemma4
