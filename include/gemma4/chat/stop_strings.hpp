#pragma once
// Ends a streamed text at the first of a set of stop strings (the OpenAI API's `stop`),
// however the text is cut into pieces: text that may still be the start of a stop string
// is held back, and neither the stop string nor anything after it is ever given out.
//
//   gemma4::StopStrings stops({"\n\n", "END"});
//   show(stops.push(piece));    // for each decoded piece; stops.stopped() once one matched
//   show(stops.finish());       // at the end: the text held back

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

class StopStrings {
 public:
  StopStrings() = default;
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (const std::string& stop : stops_) {
      if (stop.empty()) fail(ErrorKind::kInvalidArgument, "a stop string is empty");
    }
  }

  // The part of `piece` (after what was held back) that can be given out now.
  std::string push(std::string_view piece) {
    if (stopped_) return {};
    pending_ += piece;
    std::size_t first = std::string::npos;
    for (const std::string& stop : stops_) first = std::min(first, pending_.find(stop));
    if (first != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, first);
      pending_.clear();
      return out;
    }
    std::size_t hold = 0;
    for (const std::string& stop : stops_) hold = std::max(hold, partial_match(stop));
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
  }

  // The end of the text: what was held back (it never became a stop string).
  std::string finish() {
    std::string out = std::move(pending_);
    pending_.clear();
    return out;
  }

  bool stopped() const { return stopped_; }

 private:
  // The length of the longest end of pending_ that begins `stop` (shorter than it).
  std::size_t partial_match(std::string_view stop) const {
    for (std::size_t n = std::min(pending_.size(), stop.size() - 1); n > 0; --n) {
      if (std::string_view(pending_).substr(pending_.size() - n) == stop.substr(0, n)) return n;
    }
    return 0;
  }

  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace gemma4
