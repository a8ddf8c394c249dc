#include "producer/small_jobs.hpp"

#include <algorithm>
#include <functional>
#include <string_view>

#include <fmt/format.h>

#include "pymar/detail/job.hpp"

namespace pymar::detail {

std::optional<std::string> SmallJobs::key_of(const JobRequest& job) {
  // The parameters are hashed: they may take up to kMaxParamsBytes, and a collision would only
  // borrow another job's measure, once, until this one's own run replaces it.
  const std::size_t params = std::hash<std::string_view>{}(job.params);
  switch (job.memory.kind) {
    case PayloadKind::none:
      return fmt::format("{}\n{}\n{:016x}", job.producer, job.source, params);
    case PayloadKind::raw: {
      if (job.length > kMaxHashedBytes / std::max<std::size_t>(job.memory.element_size, 1)) {
        return std::nullopt;
      }
      const std::size_t data = std::hash<std::string_view>{}(job.memory.raw_slice(0, job.length));
      return fmt::format("{}\n{}\n{:016x}\n{:016x}", job.producer, job.source, params, data);
    }
    case PayloadKind::msgpack:
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::int64_t> SmallJobs::small_here(const JobRequest& job, std::size_t slices) {
  if (slices == 0) return std::nullopt;
  const std::optional<std::string> key = key_of(job);
  if (!key) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (!quickest_on_workers_ns_) return std::nullopt;
  const auto found = measures_.find(*key);
  if (found == measures_.end() || found->second.threw_here) return std::nullopt;
  Measure& last = found->second;
  last.last_run = ++clock_;
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

void SmallJobs::threw_here(const JobRequest& job) {
  Measure measure;
  measure.threw_here = true;
  remember(job, measure, false);
}

std::optional<std::int64_t> SmallJobs::quickest_on_workers() const {
  std::lock_guard lock(mutex_);
  return quickest_on_workers_ns_;
}

void SmallJobs::remember(const JobRequest& job, Measure measure, bool here) {
  std::optional<std::string> key = key_of(job);
  if (!key) return;
  std::lock_guard lock(mutex_);
  const auto found = measures_.find(*key);
  if (found != measures_.end()) {
    Measure& last = found->second;
    measure.threw_here = measure.threw_here || last.threw_here;
    if (here) {
      // The count of runs here goes on (small_here made it) until the workers run the job again;
      // the cost is the least of the last runs here (of the same size).
      measure.runs_here = last.runs_here;
      if (last.slices == measure.slices && last.elements == measure.elements) {
        measure.here_ns = last.here_ns;
        measure.here_count = last.here_count;
      }
      measure.here_ns[measure.here_count++ % kRunsHereKept] = measure.took_ns;
      const std::size_t kept = std::min(measure.here_count, kRunsHereKept);
      measure.took_ns = *std::min_element(
          measure.here_ns.begin(), measure.here_ns.begin() + static_cast<std::ptrdiff_t>(kept));
    }
    measure.last_run = ++clock_;
    last = measure;
    return;
  }
  if (measures_.size() >= kMaxJobs) {
    // A scan of kMaxJobs entries, once per new job when full: cheaper than keeping an order.
    measures_.erase(std::min_element(
        measures_.begin(), measures_.end(),
        [](const auto& a, const auto& b) { return a.second.last_run < b.second.last_run; }));
  }
  measure.last_run = ++clock_;
  measures_.emplace(std::move(*key), measure);
}

}  // namespace pymar::detail
