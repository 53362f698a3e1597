#pragma once
// Small helpers shared by the benchmarks: timing, medians and quantiles, resident memory.

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gemma4/error.hpp"
#include "source_dir.hpp"

namespace gemma4::bench {

// The checkout's root: the benchmarks that read its data files link gemma4_source_dir.
inline std::string source_dir() { return checkout::kSourceDir; }

// The value a fraction q of the way up v sorted (0.5: the median).
inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) fail(ErrorKind::kInvalidArgument, "quantile of no values");
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}
inline double median(std::vector<double> v) { return quantile(std::move(v), 0.5); }

template <typename F>
double seconds_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A field of /proc/self/status in bytes: "VmRSS" (resident now) or "VmHWM" (peak).
inline double status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with(field + ":")) return std::stod(line.substr(field.size() + 1)) * 1024.0;
  }
  fail(ErrorKind::kInvalidArgument, "no {} in /proc/self/status", field);
}

// n token ids drawn uniformly from [0, vocab).
inline std::vector<int> random_tokens(std::size_t n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int> tokens(n);
  for (int& t : tokens) t = static_cast<int>(rng() % static_cast<unsigned>(vocab));
  return tokens;
}

// The comma-separated parts of a command-line list.
inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  for (std::size_t start = 0; start <= s.size();) {
    const std::size_t comma = std::min(s.find(',', start), s.size());
    parts.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return parts;
}

// Of this process's resident pages of `file`, the share mapped through 2 MiB pages
// (FilePmdMapped over Rss in /proc/self/smaps): a mapped model streams faster through them.
inline double huge_mapped_share(const std::string& file) {
  std::ifstream smaps("/proc/self/smaps");
  double rss = 0, huge = 0;
  bool in_file = false;
  for (std::string line; std::getline(smaps, line);) {
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos || line.find(' ') < colon) {  // a mapping's first line: "start-end perms ... path"
      in_file = line.ends_with(" " + file);
    } else if (in_file && line.starts_with("Rss:")) {
      rss += std::stod(line.substr(colon + 1));
    } else if (in_file && line.starts_with("FilePmdMapped:")) {
      huge += std::stod(line.substr(colon + 1));
    }
  }
  return rss > 0 ? huge / rss : 0.0;
}

// Starts a new peak (VmHWM) from the current resident size.
inline void reset_peak_resident() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace gemma4::bench
