#include "producer/small_jobs.hpp"

#include <algorithm>
#include <functional>
#include <string_view>

#include <fmt/format.h>

#include "pymar/detail/job.hpp"

namespace pymar::detail {

std::string SmallJobs::key_of(const JobRequest& job) {
  // The parameters are hashed: they may take up to kMaxParamsBytes, and a collision would only
  // borrow another job's measure, once, until this one's own run replaces it.
  return fmt::format("{}\n{}\n{:016x}", job.producer, job.source,
                     std::hash<std::string_view>{}(job.params));
}

std::optional<std::int64_t> SmallJobs::small_here(const JobRequest& job, std::size_t slices) {
  if (slices == 0) return std::nullopt;
  const std::string key = key_of(job);
  std::lock_guard lock(mutex_);
  if (!quickest_on_workers_ns_) return std::nullopt;
  const auto found = measures_.find(key);
  if (found == measures_.end()) return std::nullopt;
  Measure& last = found->second;
  // Scaled by whichever grew more, slices or elements: a measure is never stretched thin.
  const double scale = std::max(
      {1.0,
       static_cast<double>(slices) / static_cast<double>(std::max<std::size_t>(last.slices, 1)),
       static_cast<double>(job.length) /
           static_cast<double>(std::max<std::size_t>(last.elements, 1))});
  const double expected_ns = static_cast<double>(last.took_ns) * scale;
  if (expected_ns >= static_cast<double>(*quickest_on_workers_ns_)) return std::nullopt;
  if (last.runs_here >= kProbeEvery) return std::nullopt;  // this run measures the workers
  ++last.runs_here;
  return static_cast<std::int64_t>(expected_ns);
}

void SmallJobs::ran_on_workers(const JobRequest& job, std::size_t slices, std::int64_t wall_ns,
                               std::int64_t kernel_ns) {
  {
    std::lock_guard lock(mutex_);
    if (!quickest_on_workers_ns_ || wall_ns < *quickest_on_workers_ns_) {
      quickest_on_workers_ns_ = wall_ns;
    }
  }
  remember(job, {kernel_ns, slices, job.length}, false);
}

void SmallJobs::ran_here(const JobRequest& job, std::size_t slices, std::int64_t took_ns) {
  remember(job, {took_ns, slices, job.length}, true);
}

void SmallJobs::forget(const JobRequest& job) {
  const std::string key = key_of(job);
  std::lock_guard lock(mutex_);
  measures_.erase(key);
}

std::optional<std::int64_t> SmallJobs::quickest_on_workers() const {
  std::lock_guard lock(mutex_);
  return quickest_on_workers_ns_;
}

void SmallJobs::remember(const JobRequest& job, Measure measure, bool here) {
  std::string key = key_of(job);
  std::lock_guard lock(mutex_);
  const auto found = measures_.find(key);
  if (found != measures_.end()) {
    // The count of runs here goes on (small_here made it), until the workers run the job again.
    measure.runs_here = here ? found->second.runs_here : 0;
    found->second = measure;
    return;
  }
  if (measures_.size() >= kMaxJobs) measures_.clear();
  measures_.emplace(std::move(key), measure);
}

}  // namespace pymar::detail
