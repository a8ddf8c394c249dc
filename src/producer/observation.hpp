// What other threads of the producer may read while jobs run: a snapshot the I/O thread
// publishes, for metrics (Prometheus) and the dashboard. Read it with Dispatcher::observe().
//
// Publishing costs nothing until someone observes: the first observe() asks the I/O thread for
// snapshots, which it then publishes at each job's start and end, and at most every
// kPublishInterval while a job runs (only if observe() was called since the last one). A
// snapshot is immutable once published; hold the shared_ptr as long as you like.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pymar/stats.hpp"

namespace pymar::detail {

/// One worker process over the producer's life (or since it first registered).
struct WorkerTotals {
  std::string host;
  std::int64_t pid = 0;
  std::uint64_t slices = 0;     ///< slices whose result counted
  std::uint64_t elements = 0;   ///< sum of their lengths
  std::uint64_t busy_ns = 0;    ///< compute time it reported for them
  std::uint64_t bytes_in = 0;   ///< bytes received from it
  std::uint64_t bytes_out = 0;  ///< bytes sent to it
  bool connected = false;       ///< registered now (false: given up on, or left)
};

struct Observation {
  /// Workers listed at most (busiest first); every worker is counted in the totals.
  static constexpr std::size_t kMaxWorkers = 256;
  /// Slice records in `current` at most: the most recently finished ones.
  static constexpr std::size_t kMaxRecentSlices = 1024;
  static constexpr std::chrono::milliseconds kPublishInterval{250};

  std::chrono::system_clock::time_point taken;  ///< when the I/O thread made it
  std::uint64_t sequence = 0;  ///< 0: nothing published yet (an empty observation); then 1, 2...

  // Counters over the producer's life (Prometheus counters: they never decrease).
  std::uint64_t jobs_started = 0;
  std::uint64_t jobs_done = 0;    ///< jobs that ended with a value (JobEnding::done)
  std::uint64_t jobs_failed = 0;  ///< every other ending
  /// Of the jobs started and done, those the caller of `map` computed itself as small
  /// (COMPUTE_SMALL_JOBS_HERE): they never reached a worker.
  std::uint64_t jobs_here = 0;
  std::uint64_t slices_done = 0;  ///< counted partial values, the running job's included
  std::uint64_t reruns = 0;
  std::uint64_t bytes_in = 0;                   ///< everything received on the producer's socket
  std::uint64_t bytes_out = 0;                  ///< everything sent on it
  std::map<std::string, std::uint64_t> faults;  ///< by to_string(FaultKind), jobs or not

  // Gauges.
  std::uint64_t workers_connected = 0;
  std::vector<WorkerTotals> workers;  ///< at most kMaxWorkers, busiest (most slices) first

  /// The running job so far. Its `slices` holds at most kMaxRecentSlices records (the most
  /// recently finished, oldest first); slices_done and slices_total count them all. wall_ns is
  /// the time so far, reduce_ns is 0. Slices are recorded only in jobs that started after the
  /// first observe() (or that run with map_with_stats or --stats): before, `slices` is empty.
  std::optional<JobStats> current;
  /// The last job that ended, as it ended on the I/O thread (reduce_ns is 0: the reduce runs
  /// after, in the caller of `map`). Its `slices` is bounded as `current`'s is. Shared by every
  /// observation published until the next job ends: publishing does not copy it.
  std::shared_ptr<const JobStats> last;
};

}  // namespace pymar::detail
