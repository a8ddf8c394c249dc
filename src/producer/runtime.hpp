// What `map` runs on: the dispatcher set up by pymar::main, or nothing (local computation).
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include "producer/dispatcher.hpp"

namespace pymar::detail {

/// Makes `map` use `dispatcher` (nullptr: compute locally). pymar::main and tests set it.
void use_dispatcher(Dispatcher* dispatcher, bool warn_when_local = true);

/// Writes every job's statistics to `path` as JSON (`--stats FILE`), or stops (nullopt).
void write_stats_to(std::optional<std::string> path);

/// Set when the producer is interrupted, so that local computation stops between slices.
std::atomic<bool>& producer_interrupted();

/// Computes `slices` of `request` on this machine's cores, storing their partials.
/// Throws SliceError for the first slice whose user code throws, Interrupted when interrupted.
/// With `stats`, records each slice as computed locally, its times since `job_started`.
void compute_locally(const JobRequest& request, const std::vector<std::size_t>& slices,
                     Partials& partials, JobStats* stats = nullptr,
                     Clock::time_point job_started = {});

}  // namespace pymar::detail
