// The producer's scheduler: which slice goes to which worker, what came back, who is alive.
// A state machine without sockets or threads: events in (a worker's message, the passing of
// time), messages out through an Outbox. The dispatcher drives it; tests drive it directly.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.hpp"
#include "common/log_budget.hpp"
#include "common/slicing.hpp"
#include "producer/observation.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/error.hpp"
#include "pymar/stats.hpp"
#include "wire/protocol.hpp"

namespace pymar::detail {

/// A slice's index within its job. 64 bits end to end, as on the wire: WORKERS_NUMBER is a
/// std::size_t, and a job may be cut into more than 2^32 slices.
using SliceIndex = std::uint64_t;
static_assert(std::is_same_v<SliceIndex, decltype(wire::SliceRange::index)> &&
              std::is_same_v<SliceIndex, decltype(wire::Outcome::slice)> &&
              std::is_same_v<SliceIndex, decltype(wire::Predecessor::slice)>);

/// Caps on what registrations may make the producer hold (see doc/protocol.md).
inline constexpr std::size_t kMaxWorkers = 16384;  ///< registered workers at once
/// Bytes the registered workers' names and texts may take in all (a READY is at most 1 MiB).
inline constexpr std::size_t kMaxRegisteredBytes = std::size_t{256} << 20;

struct SchedulerConfig {
  std::chrono::milliseconds heartbeat{1000};  ///< send a heartbeat after this much silence
  std::chrono::milliseconds liveness{5000};   ///< drop a worker silent for this long
  unsigned max_attempts = 3;   ///< a slice that crashes its worker this often fails the job
  unsigned error_retries = 0;  ///< extra attempts for a slice whose user code threw
  std::chrono::microseconds batch_target{2000};  ///< aim for batches computing this long
  std::size_t max_batch = 1024;                  ///< slices in one ASSIGN at most
  bool speculate = true;  ///< copy late or slower-held slices to idle workers; first result wins
  std::string build;      ///< our build fingerprint; workers of another build are refused
  std::uint64_t session = 0;              ///< this producer run's id, sent in heartbeats
  std::size_t max_workers = kMaxWorkers;  ///< registrations held at once
  std::size_t max_registered_bytes = kMaxRegisteredBytes;  ///< what they may take in all
};

/// Where the scheduler's messages go. The dispatcher implements it over ZeroMQ; tests record.
class Outbox {
 public:
  virtual ~Outbox() = default;
  /// Sends a message without payload frames.
  virtual void send(const std::string& worker, const wire::Message& message) = 0;
  /// Sends an ASSIGN followed by the payload frames of its slices, taken from `job.memory`.
  /// Returns the bytes handed to the socket (0 when nothing was sent), for the statistics.
  virtual std::size_t send_assign(const std::string& worker, const wire::Assign& assign,
                                  const JobRequest& job) = 0;
};

/// Counters of what was dropped, for logs and tests.
struct DropCounts {
  std::size_t stale = 0;      ///< results of another job
  std::size_t duplicate = 0;  ///< results of a slice already counted
  std::size_t late = 0;       ///< results from a worker that had been given up on
  std::size_t malformed = 0;  ///< results whose value did not decode, or out of place
};

enum class JobState {
  idle,  ///< no job
  running,
  done,        ///< every slice has a partial value
  failed,      ///< a slice failed for good; see failure()
  no_workers,  ///< no worker able to serve the job for the grace period
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, Outbox& outbox);

  // --- worker events ---------------------------------------------------------------------
  void on_ready(const std::string& worker, const wire::Ready& ready, Clock::time_point now);
  /// `wire_bytes`: the size of the message's frames, for the statistics.
  void on_result(const std::string& worker, const wire::Result& result,
                 std::span<const std::string_view> values, Clock::time_point now,
                 std::size_t wire_bytes = 0);
  void on_heartbeat(const std::string& worker, Clock::time_point now, std::size_t wire_bytes = 0);
  void on_bye(const std::string& worker, std::string_view reason, Clock::time_point now);
  /// `worker` has read the CANCEL of `job`.
  void on_cancelled(const std::string& worker, const wire::JobId& job);
  /// Workers that were sent a CANCEL and have not said they read it: a producer about to end
  /// waits a moment for them (see Dispatcher::loop).
  std::size_t cancels_unread() const;
  /// A message from `worker` that did not decode. From a worker we know, it may have been a
  /// result: its slices go back to the queue and it is asked to register again.
  void on_garbage(const std::string& worker, Clock::time_point now);

  /// Forgets every worker (after the socket was reset, so that each registers again). Only
  /// between jobs.
  void forget_workers();

  /// Counts every worker as heard from now: after the producer itself was stopped or starved,
  /// its workers' silence says nothing about them.
  void forgive_silence(Clock::time_point now);

  /// Heartbeats out, silent workers dropped, stragglers copied. Call at next_deadline().
  void tick(Clock::time_point now);
  Clock::time_point next_deadline(Clock::time_point now) const;

  // --- jobs --------------------------------------------------------------------------------
  /// Starts a job; `request` must outlive it. The grace period starts now.
  /// `record_slices`: keep a SliceStats per slice (for map_with_stats, --stats, observers);
  /// without it a job's statistics hold only totals, workers and faults.
  void start_job(const JobRequest& request, wire::JobId id, std::chrono::milliseconds grace,
                 Clock::time_point now, bool record_slices = false);
  JobState state() const { return state_; }
  /// Ends the job (done, failed or abandoned): workers holding its slices are told to drop them.
  void finish_job();
  /// Partial values so far, with the indices of the slices that have none.
  Partials take_partials();
  std::vector<std::size_t> missing_slices() const;
  std::size_t slices_done() const { return done_count_; }
  std::size_t slices_total() const { return slices_.size(); }
  const std::optional<SliceError::Details>& failure() const { return failure_; }

  // --- statistics --------------------------------------------------------------------------
  /// Records a fault: counted always (over the producer's life, and in the running job), and
  /// listed in the running job's record while under JobStats::kMaxFaults. `detail` is called
  /// only when the event is listed, so a flood costs no formatting.
  template <class Detail>
  void record_fault(FaultKind kind, Clock::time_point now, Detail&& detail) {
    ++lifetime_faults_[static_cast<std::size_t>(kind)];
    if (state_ != JobState::running) return;
    ++job_faults_[static_cast<std::size_t>(kind)];
    if (stats_.faults.size() >= JobStats::kMaxFaults) {
      ++stats_.faults_left_out;
      return;
    }
    std::string text(detail());
    if (text.size() > kMaxFaultDetail) text.resize(kMaxFaultDetail);
    stats_.faults.push_back({since_start(now), kind, std::move(text)});
  }
  /// The running (or last) job's statistics so far, moved out; with every slice's record when
  /// slices were recorded and the job's caller asked for statistics (JobRequest::stats), or
  /// their runs in JobRequest::slice_runs when only the --stats file wants them.
  JobStats take_stats(Clock::time_point now);
  /// A bounded copy of the running job's statistics: its most recently finished slices only.
  JobStats snapshot_stats(Clock::time_point now, std::size_t max_slices) const;
  /// Counters over the producer's life, for an Observation (bytes and jobs are the dispatcher's).
  void observe_lifetime(Observation& into, std::size_t max_workers) const;

  // --- introspection -----------------------------------------------------------------------
  const DropCounts& drops() const { return drops_; }
  std::size_t live_workers() const { return workers_.size(); }
  std::size_t reruns() const { return reruns_; }
  /// Up to `max` workers as a STATUS shows them, busiest first.
  std::vector<wire::WorkerStatus> worker_status(Clock::time_point now, std::size_t max) const;

 private:
  struct Batch {
    wire::JobId job;
    std::vector<SliceIndex> slices;
    Clock::time_point sent;
  };

  struct Worker {
    std::string id;
    wire::Ready info;
    std::unordered_set<std::string> producers;
    std::unordered_set<std::string> sources;
    Clock::time_point last_heard;
    Clock::time_point last_sent;
    std::unordered_map<std::uint64_t, Batch> batches;  // in flight, by batch id
    std::uint64_t slices_done = 0;                     // partial values that counted
    WorkerTotals totals;                               // over its life, for observers
    std::uint64_t stats_job = 0;               // the job whose record stats_index is in (0: none)
    std::size_t stats_index = 0;               // its record in stats_.workers
    std::size_t bytes = 0;                     // its share of registered_bytes_
    std::optional<wire::JobId> cancel_unread;  // the last CANCEL it was sent, until it says so

    // Its own speed in the running job, for speculation: workers differ (a shared core, older
    // hardware), and a copy is worth sending where it would end first.
    double job_slice_ns = 0;           // running mean of kernel time per slice
    std::size_t job_timed_slices = 0;  // slices that mean is over
  };

  struct SliceState {
    Part part;
    std::uint32_t copies = 0;    // batches holding it in flight
    std::uint16_t crashes = 0;   // workers that died while computing it
    std::uint16_t errors = 0;    // times user code threw on it
    std::uint32_t attempts = 0;  // times handed out, for its SliceStats
    bool done = false;
    bool queued = false;
    Clock::time_point started;  // when its current first copy was sent
  };

  bool serves(const Worker& w) const;
  /// Sends `w` up to `max_batches` batches, within its credit. Returns how many it sent.
  std::size_t assign_to(Worker& w, Clock::time_point now, std::size_t max_batches = SIZE_MAX);
  void assign_all(Clock::time_point now);
  bool speculate_to(Worker& w, Clock::time_point now);
  /// Whether a slice is not yet done and not already copied; whether a batch has such a slice.
  bool copyable(SliceIndex slice) const;
  bool copyable(const Batch& batch) const;
  std::size_t batch_size() const;
  /// Workers serving the current job with none of its batches in flight (at least 1).
  double idle_workers() const;
  /// Slices in the batches of the current job that serving workers hold.
  double slices_in_flight() const;
  /// Batches `w` may hold in flight now: its credit, or one while batches are long or unknown.
  std::size_t window(const Worker& w) const;
  void send(Worker& w, const wire::Message& message, Clock::time_point now);
  /// Forgets a worker; its slices in flight go back to the front of the queue.
  void drop_worker(const std::string& id, std::string_view why, Clock::time_point now);
  /// One copy of `slice` is no longer in flight; re-queues it when it was the last.
  bool release(SliceIndex slice);
  bool requeue(SliceIndex slice);
  void record_crash(const wire::Ready& ready, Clock::time_point now);
  void fail(SliceIndex slice, const std::string& host, std::int64_t pid, std::string type,
            std::string message, unsigned attempts);
  void update_eligibility(Clock::time_point now);
  /// `w`'s record in the running job's statistics, made when first needed; null past the cap.
  WorkerStats* job_record(Worker& w);
  std::int64_t since_start(Clock::time_point now) const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(now - job_started_).count();
  }
  /// The record of one slice and its worker when its partial value counted. `batch_recorded`:
  /// whether an earlier slice of the same result has begun its batch's record.
  void count_slice(Worker& w, SliceIndex slice, const wire::Outcome& outcome,
                   Clock::time_point sent, Clock::time_point now, bool& batch_recorded);
  /// A slice's SliceStats as far as its state tells: where it lies, how often handed out.
  SliceStats slice_record(SliceIndex slice) const;
  /// Every slice of the job as runs of alike neighbours, from the counted batches.
  void slice_runs(std::vector<SliceRun>& runs);
  void count_sent(Worker& w, std::size_t bytes);

  SchedulerConfig config_;
  Outbox& outbox_;
  std::unordered_map<std::string, Worker> workers_;
  std::size_t registered_bytes_ = 0;         // what the workers' registrations take, roughly
  std::unordered_set<std::string> refused_;  // workers of another build: told once, then ignored
  std::uint64_t next_batch_ = 1;

  // The current job.
  const JobRequest* job_ = nullptr;
  wire::JobId job_id_;
  JobState state_ = JobState::idle;
  std::vector<SliceState> slices_;
  std::deque<SliceIndex> pending_;
  std::size_t done_count_ = 0;
  Partials partials_;
  std::optional<SliceError::Details> failure_;
  double mean_slice_ns_ = 0;     // running mean of kernel time per slice, for batch sizes
  double mean_overhead_ns_ = 0;  // running mean of a batch's time beyond computing
  // A slice's weight on the wire (its payload): known at the start for raw memory, otherwise
  // that of the last job or the last batch sent.
  double sent_bytes_per_slice_ = 0;
  std::size_t eligible_workers_ = 0;  // workers serving the current job
  std::size_t timed_slices_ = 0;
  // What the last job of a producer over a source measured, for the next one's first batches.
  struct KnownCost {
    double slice_ns = 0;
    double bytes_per_slice = 0;
  };
  std::unordered_map<std::string, KnownCost> known_cost_;  // by producer and source
  static std::string cost_key(const JobRequest& request);
  std::chrono::milliseconds grace_{0};
  std::optional<Clock::time_point> unserved_since_;  // no eligible worker since then
  DropCounts drops_;
  std::size_t reruns_ = 0;

  // Statistics of the current job, and over the producer's life.
  static constexpr std::size_t kMaxFaultDetail = 400;  // bytes of a fault's text
  static constexpr std::size_t kFaultKinds = static_cast<std::size_t>(FaultKind::refused_peer) + 1;
  JobStats stats_;
  std::uint64_t jobs_started_ = 0;
  Clock::time_point job_started_;
  bool record_slices_ = false;
  // Slice records, when asked for, are kept per counted batch while the job runs (a slice costs
  // the producer one index) and made into SliceStats when the statistics are taken: writing a
  // record of each slice as it came cost ~20 ns a slice, 4% of a job of 10^4 trivial slices.
  struct CountedBatch {
    std::size_t end = 0;  // its slices: counted_slices_ from the previous batch's end to this
    std::int64_t worker = SliceStats::kNone;
    std::int64_t start_ns = 0;
    std::int64_t end_ns = 0;
  };
  std::vector<SliceIndex> counted_slices_;  // in the order their results counted
  std::vector<CountedBatch> counted_batches_;
  std::vector<std::uint32_t> batch_of_;  // slice_runs' scratch: each slice's counted batch
  std::array<std::uint64_t, kFaultKinds> job_faults_{};
  std::array<std::uint64_t, kFaultKinds> lifetime_faults_{};
  std::uint64_t lifetime_slices_done_ = 0;  // of finished jobs; the running one's added on read
  std::uint64_t lifetime_reruns_ = 0;
  std::deque<WorkerTotals> departed_;  // workers gone, most recent last, bounded
  // Logs of what workers (or strangers) can cause at will.
  LogBudget late_log_;
  LogBudget malformed_log_;
  LogBudget refused_log_;
  LogBudget lost_log_;   // workers lost with slices: a peer can register, take and leave
  LogBudget threw_log_;  // slices whose user code threw, retried
  LogBudget crash_log_;  // slices running when their worker process died
  LogBudget full_log_;
  LogBudget unserved_log_;  // "none serves": each time the last worker serving the job left   //
                            // READYs refused because the table of workers is full
};

}  // namespace pymar::detail
