// Logging: spdlog to stderr, one line per event, tagged with the process's role and pid; and the
// producer's live progress line, kept below the log lines on a terminal.
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace pymar::detail {

/// Sets up the process-wide logger; `role` is "producer", "pool" or "worker".
void init_logging(std::string_view role, bool verbose);

/// The one live line at the bottom of stderr (a terminal): log lines are written above it, and
/// it is drawn again below them. Thread-safe; it writes nothing until show() is first called.
namespace live_line {
/// Draws `text` in place of the current live line, cut to the terminal's width.
void show(std::string_view text);
/// Removes the live line, leaving the cursor at the start of an empty line.
void clear();
}  // namespace live_line

}  // namespace pymar::detail
