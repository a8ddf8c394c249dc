// Rate limiting for logs of events a peer can cause at will.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>

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

/// A LogBudget per kind of event, so that a flood of one kind does not silence the first report
/// of another. Past `max_kinds` kinds, the rest share one budget.
class LogBudgets {
 public:
  /// `first`: occurrences of each kind logged before the doubling rule applies.
  explicit LogBudgets(std::size_t max_kinds = 64, std::size_t first = 3)
      : max_kinds_(max_kinds), first_(first), others_(first) {}

  LogBudget& operator[](std::string_view kind) {
    if (auto it = budgets_.find(kind); it != budgets_.end()) return it->second;
    if (budgets_.size() >= max_kinds_) return others_;
    return budgets_.emplace(std::string(kind), LogBudget(first_)).first->second;
  }

 private:
  std::size_t max_kinds_;
  std::size_t first_;
  std::map<std::string, LogBudget, std::less<>> budgets_;
  LogBudget others_;
};

}  // namespace pymar::detail
