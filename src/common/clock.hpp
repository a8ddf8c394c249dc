#pragma once

#include <chrono>

namespace pymar::detail {
using Clock = std::chrono::steady_clock;
}  // namespace pymar::detail
