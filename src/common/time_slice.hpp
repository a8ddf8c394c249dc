// Time slices for the library's threads, so that on cores busy computing a message between
// producer and worker does not wait for the scheduler's next tick at every hop.
//
// Linux's EEVDF scheduler (6.12 and later) keeps a time slice per thread: a thread woken with a
// shorter slice than the running one preempts it at once, and among runnable threads the one
// with the shorter slice runs first. With equal slices a woken thread may wait for the next tick
// (4 ms at HZ=250): measured on 2 cores both computing, a job of 4 slices lost 1 to 8 ms that
// way. So threads that compute ask for a long slice and threads that pass messages for a short
// one. Older kernels take the request and ignore it; a refusal changes nothing else.
#pragma once

#include <cstdint>

namespace pymar::detail {

/// For threads that compute: longer than the default (0.75 ms times 1 + log2 of the CPUs, 3 ms
/// at most), short enough that other compute threads on the same core still take turns within a
/// few ticks.
constexpr std::uint64_t kComputeSliceNs = 12'000'000;

/// For threads that pass messages and wake for microseconds at a time: the least Linux allows.
constexpr std::uint64_t kMessagingSliceNs = 100'000;

/// Asks for a time slice of `ns` for the calling thread, keeping its policy and nice value;
/// threads it starts from now on inherit it. 0 asks for the kernel's default. Returns whether
/// the kernel took the request; real-time and idle threads are left as they are.
bool request_time_slice(std::uint64_t ns);

/// The time slice the kernel keeps for thread `tid` (sched_getattr's sched_runtime; 0 where the
/// kernel does not say).
std::uint64_t time_slice_of(int tid);

/// The calling thread's time slice, short while this lives: the threads it starts meanwhile
/// (libzmq's I/O threads, a dispatcher) keep the short slice, the caller gets its own back.
class MessagingThreadsStart {
 public:
  MessagingThreadsStart();
  ~MessagingThreadsStart();
  MessagingThreadsStart(const MessagingThreadsStart&) = delete;
  MessagingThreadsStart& operator=(const MessagingThreadsStart&) = delete;

 private:
  std::uint64_t previous_;
  bool changed_;
};

}  // namespace pymar::detail
