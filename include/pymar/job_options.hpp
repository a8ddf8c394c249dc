// Per-job options: how long `map` waits, what it does when that time passes, and whether a late
// slice may be computed twice. `Producer::map` fills them from its arguments and the producer
// class; the library reads them from here only.
#pragma once

#include "pymar/detail/config.hpp"

#include <chrono>
#include <optional>

namespace pymar {

/// What `map` does when its timeout passes before every slice has a partial value.
enum class OnTimeout {
  fail,             ///< throw pymar::TimeoutError
  compute_locally,  ///< compute the missing slices on this machine, with a warning
};

/// The options of one `map` call.
struct JobOptions {
  /// How long to wait for every slice's partial value; none waits until they are all in.
  std::optional<std::chrono::nanoseconds> timeout;
  OnTimeout on_timeout = OnTimeout::fail;
  /// Whether a slice may run a second time on an idle worker, when late or when that worker
  /// would end it sooner (the first result counts): the producer's SPECULATIVE, false when
  /// map_fn has side effects.
  bool speculate = true;
  /// Whether a job too small to be worth a round trip to the workers may be computed by the
  /// thread that calls `map`: the producer's COMPUTE_SMALL_JOBS_HERE.
  bool compute_small_jobs_here = false;
};

}  // namespace pymar
