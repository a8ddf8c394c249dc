// Logging: spdlog to stderr, one line per event, tagged with the process's role and pid; and the
// producer's live progress line, kept below the log lines on a terminal.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace pymar::detail {

/// Sets up the process-wide logger; `role` is "producer", "pool" or "worker". `verbosity`:
/// -1 warnings and errors only (--quiet), 0 information, 1 debug: every slice, worker and
/// batch (-v), 2 trace: every message too (-vv).
void init_logging(std::string_view role, int verbosity);

/// A limit on lines per second, for logs of events peers trigger at will (every message at
/// -vv): past the limit, lines are dropped and counted until the next second.
class LineRate {
 public:
  explicit LineRate(std::size_t per_second = 100) : per_second_(per_second) {}

  /// True when a line may be written now. `dropped` is then the number of lines dropped since
  /// the last one written, which that line should mention.
  bool allow(std::chrono::steady_clock::time_point now, std::size_t& dropped) {
    if (now - window_ >= std::chrono::seconds(1)) {
      window_ = now;
      lines_ = 0;
    }
    if (lines_ >= per_second_) {
      ++dropped_;
      return false;
    }
    ++lines_;
    dropped = dropped_;
    dropped_ = 0;
    return true;
  }

 private:
  std::size_t per_second_;
  std::chrono::steady_clock::time_point window_{};
  std::size_t lines_ = 0;
  std::size_t dropped_ = 0;
};

/// The one live line at the bottom of stderr (a terminal): log lines are written above it, and
/// it is drawn again below them. Thread-safe; it writes nothing until show() is first called.
namespace live_line {
/// Draws `text` in place of the current live line, cut to the terminal's width.
void show(std::string_view text);
/// Removes the live line, leaving the cursor at the start of an empty line.
void clear();
}  // namespace live_line

}  // namespace pymar::detail
