#pragma once
// The lines a chat reads: from a terminal through libedit (arrow keys, editing, and a
// history kept across chats in $XDG_STATE_HOME/gemma4/chat_history), otherwise plain
// lines of stdin, so that piped input and scripts see no prompts or escape codes.
// Without libedit at build time (GEMMA4_LINE_EDITING unset), a terminal gets plain lines too.

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#ifdef GEMMA4_LINE_EDITING
#include <editline/readline.h>
#endif

namespace gemma4::cli {

class LineReader {
 public:
  LineReader() : terminal_(::isatty(STDIN_FILENO) == 1 && ::isatty(STDERR_FILENO) == 1) {
#ifdef GEMMA4_LINE_EDITING
    if (!terminal_) return;
    history_ = history_path();
    std::error_code ignored;  // no history file: editing still works
    std::filesystem::create_directories(history_.parent_path(), ignored);
    using_history();
    stifle_history(kHistoryLines);
    read_history(history_.c_str());
#endif
  }
  ~LineReader() {
#ifdef GEMMA4_LINE_EDITING
    if (terminal_) write_history(history_.c_str());
#endif
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Whether a person types the lines (prompts and hints are shown only then).
  bool terminal() const { return terminal_; }

  // The next line, after showing `prompt` on a terminal; nullopt at the end of input. An
  // empty line when Ctrl-C interrupts the editing.
  std::optional<std::string> read(const char* prompt) {
#ifdef GEMMA4_LINE_EDITING
    if (terminal_) {
      errno = 0;
      const std::unique_ptr<char, decltype(&std::free)> line(readline(prompt), &std::free);
      if (line == nullptr) {
        if (errno == EINTR) return std::string();  // Ctrl-C drops the line typed so far, as a shell does
        return std::nullopt;
      }
      if (*line != '\0') add_history(line.get());
      return std::string(line.get());
    }
#endif
    if (terminal_) fmt::print(stderr, "{}", prompt);
    std::string line;
    if (!std::getline(std::cin, line)) return std::nullopt;
    return line;
  }

 private:
  static constexpr int kHistoryLines = 1000;

  static std::filesystem::path history_path() {
    if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state != '\0') return std::filesystem::path(state) / "gemma4/chat_history";
    const char* home = std::getenv("HOME");
    return std::filesystem::path(home != nullptr ? home : ".") / ".local/state/gemma4/chat_history";
  }

  bool terminal_;
  std::filesystem::path history_;
};

}  // namespace gemma4::cli
