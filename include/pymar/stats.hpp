// Statistics of one job: who computed what, how long it took, what was shipped, and every fault
// seen. Returned by Producer::map_with_stats and written as JSON by `--stats FILE`; the JSON
// follows doc/stats.schema.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pymar {

/// How a job ended, as `map` saw it.
enum class JobEnding : std::uint8_t {
  done,         ///< every slice has a partial value (some may have been computed locally)
  failed,       ///< user code failed on a slice, or a slice crashed its workers too often
  timed_out,    ///< the timeout passed with OnTimeout::fail
  interrupted,  ///< the producer was interrupted (Ctrl-C, SIGTERM)
  broken,       ///< the producer's I/O thread stopped
};

/// "done", "failed", "timed_out", "interrupted", "broken".
std::string_view to_string(JobEnding ending);

/// What went wrong, as a fault event records it. Peers can cause most of these at will, so
/// a job keeps a bounded list of them (JobStats::kMaxFaults) and counts every one.
enum class FaultKind : std::uint8_t {
  worker_dropped,     ///< a worker given up on mid-job (died, silent, left, sent garbage)
  slice_crash,        ///< a worker process died while computing a slice
  slice_error,        ///< user code threw on a slice
  late_result,        ///< a result from a worker given up on, or of a batch handed out again
  duplicate_result,   ///< a result of a slice already counted (a speculative copy lost)
  stale_result,       ///< a result of another job
  malformed_result,   ///< a partial value that does not decode, or a batch never sent
  malformed_message,  ///< a message that does not decode
  refused_message,    ///< a message sent under another peer's routing id (with keys)
  refused_peer,       ///< a peer refused: a key not allowed, or another build of the task
};

/// "worker_dropped", "slice_crash", ... (the enumerator's name).
std::string_view to_string(FaultKind kind);

/// One worker process as one job saw it.
struct WorkerStats {
  std::string host;
  std::int64_t pid = 0;
  std::uint64_t slices = 0;      ///< slices whose result counted
  std::uint64_t elements = 0;    ///< sum of those slices' lengths
  std::uint64_t compute_ns = 0;  ///< compute time the worker reported for those slices
  std::uint64_t bytes_out = 0;   ///< bytes the producer sent to it (all frames)
  std::uint64_t bytes_in = 0;    ///< bytes the producer received from it (all frames)
  bool dropped = false;          ///< given up on during the job
  std::string drop_reason;       ///< why, when dropped
};

/// One slice of a job.
struct SliceStats {
  /// SliceStats::worker when the slice was computed on the producer's machine.
  static constexpr std::int64_t kLocal = -1;
  /// SliceStats::worker when no result counted (the job did not finish), or the worker that
  /// computed it is beyond JobStats::kMaxWorkers.
  static constexpr std::int64_t kNone = -2;

  std::uint64_t index = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  /// Index in JobStats::workers of the worker whose result counted, or kLocal, or kNone.
  std::int64_t worker = kNone;
  std::uint32_t attempts = 0;  ///< times it was handed out (to workers, or computed locally)
  /// The counted attempt, in nanoseconds since the job started: from sending its batch (or the
  /// start of its local computation) to receiving the result. -1 when there is none.
  std::int64_t start_ns = -1;
  std::int64_t end_ns = -1;
};

/// One fault, in nanoseconds since the job started.
struct FaultEvent {
  std::int64_t time_ns = 0;
  FaultKind kind = FaultKind::worker_dropped;
  std::string detail;  ///< one printable line: which worker or peer, which slice, why
};

/// The statistics record of one `map` call.
struct JobStats {
  static constexpr std::size_t kMaxFaults = 1000;   ///< fault events kept; the rest are counted
  static constexpr std::size_t kMaxWorkers = 4096;  ///< worker records kept; the rest counted

  std::uint64_t job = 0;             ///< the job's number in this producer run (1, 2, ...)
  std::string producer;              ///< registered producer name
  std::string source;                ///< registered source name
  std::int64_t started_unix_ms = 0;  ///< when the job started, in milliseconds since 1970
  std::uint64_t elements = 0;        ///< full_length() of the source
  std::uint64_t slices_total = 0;
  std::uint64_t slices_done = 0;   ///< slices with a counted partial value
  std::uint64_t local_slices = 0;  ///< of those, computed on the producer's machine
  /// Why slices were computed locally: "" (none were), "no workers", "timeout", "local mode",
  /// "small job" (COMPUTE_SMALL_JOBS_HERE).
  std::string local_reason;
  JobEnding ending = JobEnding::done;

  std::int64_t wall_ns = 0;           ///< from the start of the job to its value (reduce included)
  std::int64_t first_result_ns = -1;  ///< to the first counted partial value; -1: none
  std::int64_t reduce_ns = 0;         ///< in the producer's reduce_fn over the partial values
  std::uint64_t bytes_out = 0;        ///< sent to workers during the job
  std::uint64_t bytes_in = 0;         ///< received from peers during the job
  std::uint64_t reruns = 0;           ///< slices handed out again after a worker was lost or threw

  std::vector<WorkerStats> workers;  ///< every worker that was sent or returned work
  std::uint64_t workers_left_out = 0;
  /// By index, when collected (map_with_stats, --stats); in a live snapshot (Observation), only
  /// the most recently finished slices.
  std::vector<SliceStats> slices;
  std::vector<FaultEvent> faults;  ///< in order, at most kMaxFaults
  std::uint64_t faults_left_out = 0;
  std::map<std::string, std::uint64_t> fault_counts;  ///< every fault, by to_string(kind)
};

/// The job's statistics as one JSON object (doc/stats.schema.json, "$defs/job").
std::string to_json(const JobStats& stats);

/// A job's value and its statistics: what Producer::map_with_stats returns.
template <class Value>
struct WithStats {
  Value value;
  JobStats stats;
};

}  // namespace pymar
