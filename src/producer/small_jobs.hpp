// SmallJobs: which jobs are too small to be worth a round trip to the workers. A producer that
// allows it (COMPUTE_SMALL_JOBS_HERE) has such a job computed by the thread that called `map`:
// no worker could return its value sooner than that thread computes it.
//
// "Small" is measured, never guessed: a job is small when its slices, one after another, took
// less time (as the same job measured when it last ran, on the workers or here) than the
// quickest job the workers have returned to this producer. The first run of a job always goes
// to the workers, and so does one run in kProbeEvery of a job computed here: that run measures
// the workers again, so that a first job slowed by workers still joining cannot set the bar for
// good, and a job that grows costlier is seen to. A job whose code threw here is never computed
// here again.
//
// A job is known by its producer, source and source parameters; with data from memory, by the
// data's bytes too (a hash of at most kMaxHashedBytes: larger data is never computed here, and
// neither is data encoded element by element, whose size is not known before it is encoded).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace pymar::detail {

struct JobRequest;

class SmallJobs {
 public:
  /// Jobs remembered at most; when full, the one least recently run is forgotten (its next run
  /// measures it anew, on the workers).
  static constexpr std::size_t kMaxJobs = 256;
  /// Of a job's runs computed here in a row, the one after this many goes to the workers.
  static constexpr std::uint64_t kProbeEvery = 64;
  /// Data from memory larger than this is never computed here: hashing it would cost more than
  /// the round trip it could save.
  static constexpr std::size_t kMaxHashedBytes = 64 * 1024;
  static constexpr std::size_t kRunsHereKept = 4;

  /// What a job is expected to take here, when it is small enough to be computed here: its
  /// slices' time one after another, in nanoseconds, as last measured and scaled to this run's
  /// slice and element counts. nullopt: send it to the workers. Counts the runs computed here.
  std::optional<std::int64_t> small_here(const JobRequest& job, std::size_t slices);

  /// After a job the workers computed: `wall_ns` from the call to its partial values, and the
  /// compute time its slices reported (`kernel_ns`, the counted results only).
  void ran_on_workers(const JobRequest& job, std::size_t slices, std::int64_t wall_ns,
                      std::int64_t kernel_ns);
  /// After a job computed here, one slice after another: what they took. The job's cost is then
  /// the least of its last kRunsHereKept runs here, so that a preempted run does not send the
  /// next to the workers, while a job grown costlier is seen within as many runs.
  void ran_here(const JobRequest& job, std::size_t slices, std::int64_t took_ns);
  /// After a job whose code threw here: it goes to the workers from now on.
  void threw_here(const JobRequest& job);

  /// The quickest job the workers have returned, in nanoseconds; nullopt before the first.
  std::optional<std::int64_t> quickest_on_workers() const;

 private:
  struct Measure {
    std::int64_t took_ns = 0;  // the slices' time, one after another
    std::size_t slices = 0;
    std::size_t elements = 0;
    std::uint64_t runs_here = 0;  // in a row since the workers last computed it
    bool threw_here = false;      // for good
    std::array<std::int64_t, kRunsHereKept> here_ns{};  // the last runs here, a ring
    std::size_t here_count = 0;                         // runs here in the ring, in all
    std::uint64_t last_run = 0;  // on the clock_ below, for forgetting the least recent
  };
  /// Producer, source, parameters (and data from memory): the same job, whose cost the last run
  /// tells. nullopt: a job that is never computed here.
  static std::optional<std::string> key_of(const JobRequest& job);
  void remember(const JobRequest& job, Measure measure, bool here);

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Measure> measures_;
  std::uint64_t clock_ = 0;  // counts runs: small_here and remember
  std::optional<std::int64_t> quickest_on_workers_ns_;
};

}  // namespace pymar::detail
