// Logging: spdlog to stderr, one line per event, tagged with the process's role and pid.
#pragma once

#include <string_view>

#include <spdlog/spdlog.h>

namespace pymar::detail {

/// Sets up the process-wide logger; `role` is "producer", "pool" or "worker".
void init_logging(std::string_view role, bool verbose);

}  // namespace pymar::detail
