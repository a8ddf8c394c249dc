// What `map` runs on: the dispatcher set up by pymar::main, or nothing (local computation).
#pragma once

#include <atomic>

#include "producer/dispatcher.hpp"

namespace pymar::detail {

/// Makes `map` use `dispatcher` (nullptr: compute locally). pymar::main and tests set it.
void use_dispatcher(Dispatcher* dispatcher, bool warn_when_local = true);

/// Set when the producer is interrupted, so that local computation stops between slices.
std::atomic<bool>& producer_interrupted();

/// Computes `slices` of `request` on this machine's cores, storing their partials.
/// Throws SliceError for the first slice whose user code throws, Interrupted when interrupted.
void compute_locally(const JobRequest& request, const std::vector<std::size_t>& slices,
                     Partials& partials);

}  // namespace pymar::detail
