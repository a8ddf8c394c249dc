// A longer scheduler time slice for a thread that computes, so that the library's own messaging
// threads preempt it as soon as they wake.
#pragma once

#include <cstdint>

namespace pymar::detail {

/// The slice asked for: longer than the default (0.75 ms times 1 + log2 of the CPUs, 3 ms at
/// most), short enough that other processes' compute threads on the same core still take turns
/// within a few ticks.
constexpr std::uint64_t kComputeSliceNs = 12'000'000;

/// The time slice the kernel keeps for thread `tid` (sched_getattr's sched_runtime; 0 where the
/// kernel keeps none or does not say).
std::uint64_t time_slice_of(int tid);

/// Asks Linux's EEVDF scheduler (6.12 and later) for a long time slice for the calling thread,
/// keeping its policy and nice value. A task woken with a shorter slice than the running one
/// preempts it at once; with equal slices it may wait for the next tick (4 ms at HZ=250), and on
/// a host whose cores all compute, a message between producer and worker waited that long at
/// each hop. Older kernels ignore the request; a refusal changes nothing else. Returns whether
/// the kernel took it.
bool request_long_time_slice();

}  // namespace pymar::detail
