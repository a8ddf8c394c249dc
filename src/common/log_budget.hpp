// Rate limiting for logs of events a peer can cause at will.
#pragma once

#include <cstddef>

namespace pymar::detail {

/// Decides which occurrences of a recurring event get a log line: the first few, then the 8th,
/// 16th, 32nd... so that a peer sending garbage cannot flood the log, while the lines that are
/// written say how many there were so far.
class LogBudget {
 public:
  explicit LogBudget(std::size_t first = 3) : first_(first) {}

  /// Counts one occurrence; true when this one should be logged.
  bool spend() {
    ++count_;
    return count_ <= first_ || (count_ & (count_ - 1)) == 0;
  }

  std::size_t count() const { return count_; }

 private:
  std::size_t first_;
  std::size_t count_ = 0;
};

}  // namespace pymar::detail
