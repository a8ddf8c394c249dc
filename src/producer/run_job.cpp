// run_job: where `map` enters the library. Runs the job on the runtime in use: on the workers
// through its dispatcher, and on this machine's cores when there are none, when asked to, or when
// a timeout says so.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/log.hpp"
#include "common/slicing.hpp"
#include "producer/runtime.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/error.hpp"
#include "pymar/registry.hpp"
#include "pymar/stats.hpp"
#include "wire/protocol.hpp"

namespace pymar::detail {
namespace {

std::atomic<std::uint64_t> g_local_jobs{0};  // numbers jobs computed without a dispatcher

std::int64_t nanoseconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
}

// The runtimes alive, the one in use on top: each holds the one in use before it. Made once and
// never destroyed, so that a `map` called during static destruction still finds it (empty).
struct RuntimeChain {
  std::mutex mutex;
  std::condition_variable calls_ended;
  Runtime* top = nullptr;
};

RuntimeChain& runtime_chain() {
  static auto* chain = new RuntimeChain;
  return *chain;
}

/// Computes `slices` of `request` on this machine's cores, storing their partials. Stops between
/// slices once `interrupted` says so. Throws SliceError for the first slice whose user code
/// throws, Interrupted when interrupted. With `stats`, records each slice as computed locally,
/// its times since `job_started`. `max_threads`: 0 for every core, 1 for the calling thread only.
void compute_locally(const JobRequest& request, const std::vector<std::size_t>& slices,
                     Partials& partials, JobStats* stats, Clock::time_point job_started,
                     const std::function<bool()>& interrupted, std::size_t max_threads = 0) {
  if (slices.empty()) return;
  // Start and end of each slice, kept only for the statistics.
  std::vector<std::pair<Clock::time_point, Clock::time_point>> times(stats ? slices.size() : 0);
  const std::vector<Part> parts = split(request.length, request.parts);
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t threads =
      std::min({max_threads == 0 ? cores : max_threads, cores, slices.size()});
  std::vector<std::string> results(slices.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex failure_mutex;
  std::optional<SliceError::Details> failure;

  auto work = [&] {
    std::string encoded_slice;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t i = next.fetch_add(1);
      if (i >= slices.size()) return;
      if (interrupted()) {
        stop = true;
        return;
      }
      const Part part = parts[slices[i]];
      SliceInput input{part.offset, part.limit, request.params, {}};
      if (request.memory.kind == PayloadKind::raw) {
        input.payload = request.memory.raw_slice(part.offset, part.limit);
      } else if (request.memory.kind == PayloadKind::msgpack) {
        encoded_slice.clear();
        request.memory.encode_slice(part.offset, part.limit, encoded_slice);
        input.payload = encoded_slice;
      }
      try {
        if (stats) times[i].first = Clock::now();
        request.kernel(input, results[i]);
        if (stats) times[i].second = Clock::now();
      } catch (const std::exception& e) {
        std::lock_guard lock(failure_mutex);
        if (!failure) {
          failure = SliceError::Details{slices[i], part.offset,          part.limit, "",
                                        getpid(),  type_name(typeid(e)), e.what(),   1};
        }
        stop = true;
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) {
          failure = SliceError::Details{slices[i],
                                        part.offset,
                                        part.limit,
                                        "",
                                        getpid(),
                                        "unknown exception",
                                        "a non-standard exception",
                                        1};
        }
        stop = true;
      }
    }
  };
  std::vector<std::jthread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();  // joins
  if (failure) throw SliceError(*failure);
  if (interrupted()) throw Interrupted();
  for (std::size_t i = 0; i < slices.size(); ++i) partials.set(slices[i], results[i]);
  if (stats == nullptr) return;
  stats->local_slices += slices.size();
  stats->slices_done += slices.size();
  for (std::size_t i = 0; i < slices.size(); ++i) {
    const std::int64_t end = nanoseconds_between(job_started, times[i].second);
    if (stats->first_result_ns < 0 || end < stats->first_result_ns) stats->first_result_ns = end;
    if (slices[i] >= stats->slices.size()) continue;
    SliceStats& s = stats->slices[slices[i]];
    s.worker = SliceStats::kLocal;
    s.attempts += 1;
    s.start_ns = nanoseconds_between(job_started, times[i].first);
    s.end_ns = end;
  }
}

/// The statistics of a job computed here from its start: every slice, none on a worker. `job`:
/// its number, 0 for the next of those computed without a dispatcher.
void start_local_stats(const JobRequest& request, std::size_t slice_count, JobStats& stats,
                       std::uint64_t job = 0, const char* reason = "local mode") {
  stats.job = job != 0 ? job : g_local_jobs.fetch_add(1) + 1;
  stats.producer = request.producer;
  stats.source = request.source;
  stats.started_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  stats.elements = request.length;
  stats.slices_total = slice_count;
  stats.local_reason = reason;
  const std::vector<Part> parts = split(request.length, request.parts);
  stats.slices.resize(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    stats.slices[i].index = i;
    stats.slices[i].offset = parts[i].offset;
    stats.slices[i].length = parts[i].limit;
  }
}

Partials run_job_recorded(const JobRequest& request, Dispatcher* dispatcher, bool warn_when_local,
                          SmallJobs* small_jobs);

}  // namespace

Runtime::Runtime(bool warn) : warn_(warn) {
  enter();
}

Runtime::Runtime(DispatcherOptions options) {
  dispatcher_.emplace(std::move(options));
  enter();
}

void Runtime::enter() {
  RuntimeChain& chain = runtime_chain();
  std::lock_guard lock(chain.mutex);
  previous_ = std::exchange(chain.top, this);
}

Runtime::~Runtime() {
  RuntimeChain& chain = runtime_chain();
  std::unique_lock lock(chain.mutex);
  // Leave the chain wherever this runtime sits in it: `map` calls from now on use the one before.
  for (Runtime** link = &chain.top; *link != nullptr; link = &(*link)->previous_) {
    if (*link == this) {
      *link = previous_;
      break;
    }
  }
  // A map call still running here (another thread's) needs the dispatcher until it returns.
  chain.calls_ended.wait(lock, [this] { return calls_ == 0; });
  // Then the dispatcher, destroyed with this runtime, joins its thread and closes its socket.
}

Partials run_job(const JobRequest& request) {
  RuntimeChain& chain = runtime_chain();
  Runtime* runtime = nullptr;
  {
    std::lock_guard lock(chain.mutex);
    runtime = chain.top;
    if (runtime != nullptr) ++runtime->calls_;
  }
  struct CallEnd {
    RuntimeChain& chain;
    Runtime* runtime;
    ~CallEnd() {
      if (runtime == nullptr) return;
      std::lock_guard lock(chain.mutex);
      if (--runtime->calls_ == 0) chain.calls_ended.notify_all();
    }
  } call_end{chain, runtime};
  JobStats* stats = request.stats;
  // The ending when the job throws, unless the dispatcher said otherwise (broken).
  auto ended = [&](JobEnding ending) {
    if (stats != nullptr && stats->ending == JobEnding::done) stats->ending = ending;
  };
  try {
    // No runtime in use (no pymar::main): this machine's cores, with a warning.
    return runtime == nullptr ? run_job_recorded(request, nullptr, true, nullptr)
                              : run_job_recorded(request, runtime->dispatcher(), runtime->warn_,
                                                 &runtime->small_jobs_);
  } catch (const SliceError&) {
    ended(JobEnding::failed);
    throw;
  } catch (const TimeoutError&) {
    ended(JobEnding::timed_out);
    throw;
  } catch (const Interrupted&) {
    ended(JobEnding::interrupted);
    throw;
  } catch (...) {
    ended(JobEnding::failed);
    throw;
  }
}

namespace {

/// Computes a small job on the calling thread (COMPUTE_SMALL_JOBS_HERE), or returns nullopt when
/// its user code threw here: the workers then run it as any other job, and either compute it
/// (the data may differ here) or fail it as they would have.
std::optional<Partials> small_job_here(const JobRequest& request, std::size_t slice_count,
                                       std::int64_t expected_ns, Dispatcher& dispatcher,
                                       SmallJobs& small_jobs,
                                       const std::function<bool()>& interrupted) {
  const Dispatcher::JobHere job_here(dispatcher);
  const std::uint64_t job = job_here.number();
  spdlog::info(
      "job {}: {} over {}, {} elements in {} slices, computed here: {:.0f} µs of work by its "
      "last run, under the {:.0f} µs of the quickest job on the workers",
      job, request.producer, request.source, request.length, slice_count, expected_ns / 1e3,
      small_jobs.quickest_on_workers().value_or(0) / 1e3);
  JobStats* stats = request.stats;
  Partials partials(slice_count);
  std::vector<std::size_t> all(slice_count);
  for (std::size_t i = 0; i < slice_count; ++i) all[i] = i;
  if (stats != nullptr) start_local_stats(request, slice_count, *stats, job, "small job");
  const Clock::time_point started = Clock::now();
  try {
    compute_locally(request, all, partials, stats, started, interrupted, 1);
  } catch (const SliceError& e) {
    spdlog::info("job {}: {}; sending the job to the workers", job, e.what());
    small_jobs.threw_here(request);
    if (stats != nullptr) *stats = JobStats{};
    return std::nullopt;
  }
  const std::int64_t took_ns = nanoseconds_between(started, Clock::now());
  small_jobs.ran_here(request, slice_count, took_ns);
  job_here.done(slice_count);
  if (stats != nullptr) stats->wall_ns = took_ns;
  return partials;
}

Partials run_job_recorded(const JobRequest& request, Dispatcher* dispatcher, bool warn_when_local,
                          SmallJobs* small_jobs) {
  const Clock::time_point entered = Clock::now();
  const auto interrupted = [dispatcher] {
    return dispatcher != nullptr && dispatcher->interrupted();
  };
  JobStats* stats = request.stats;
  const std::size_t slice_count = std::min(request.parts, request.length);
  if (request.params.size() > wire::kMaxParamsBytes) {
    throw Error(
        fmt::format("the parameters of source {} encode to {} bytes, over the {} KiB "
                    "they may take: pass what is large through the data itself",
                    request.source, request.params.size(), wire::kMaxParamsBytes >> 10));
  }
  auto all_locally = [&] {
    Partials partials(slice_count);
    std::vector<std::size_t> all(slice_count);
    for (std::size_t i = 0; i < slice_count; ++i) all[i] = i;
    if (stats != nullptr) start_local_stats(request, slice_count, *stats);
    compute_locally(request, all, partials, stats, entered, interrupted);
    if (stats != nullptr) stats->wall_ns = nanoseconds_between(entered, Clock::now());
    return partials;
  };

  if (dispatcher == nullptr) {
    if (warn_when_local) {
      spdlog::warn("no worker queue in use: computing {} over {} locally on {} cores",
                   request.producer, request.source, std::thread::hardware_concurrency());
    }
    return all_locally();
  }

  // Not with a timeout: a job computed here runs to its end, and its measure is only a guess.
  const bool small_jobs_here =
      request.options.compute_small_jobs_here && !request.options.timeout && small_jobs != nullptr;
  if (small_jobs_here) {
    if (const auto expected_ns = small_jobs->small_here(request, slice_count)) {
      std::optional<Partials> partials =
          small_job_here(request, slice_count, *expected_ns, *dispatcher, *small_jobs, interrupted);
      if (partials) return std::move(*partials);
    }
  }

  JobOutcome outcome = dispatcher->run(request);
  const Clock::time_point returned = Clock::now();
  if (small_jobs_here && outcome.end == JobEnd::done && outcome.stats.workers_left_out == 0) {
    std::int64_t kernel_ns = 0;
    for (const WorkerStats& w : outcome.stats.workers) {
      kernel_ns += static_cast<std::int64_t>(w.compute_ns);
    }
    // From the job's start on the I/O thread: a first job's wait for the pool to join is not
    // what the next run of a job would pay.
    small_jobs->ran_on_workers(request, slice_count, nanoseconds_between(outcome.started, returned),
                               kernel_ns);
  }
  if (stats != nullptr) *stats = std::move(outcome.stats);
  // Slices computed here are recorded one by one, into the records: a job whose records were
  // made as runs (only the --stats file reads them) has them made into records again first.
  auto record_each_slice = [&] {
    if (stats == nullptr || request.slice_runs == nullptr || request.slice_runs->empty()) return;
    stats->slices.clear();
    for (const SliceRun& run : *request.slice_runs) {
      for (std::uint64_t k = 0; k < run.count; ++k) {
        stats->slices.push_back({run.index + k, run.offset + k * run.length, run.length, run.worker,
                                 run.attempts, run.start_ns, run.end_ns});
      }
    }
    request.slice_runs->clear();
  };
  // The I/O thread's wall time, plus what is computed here after it.
  auto finish_stats = [&] {
    if (stats != nullptr) stats->wall_ns += nanoseconds_between(returned, Clock::now());
  };
  switch (outcome.end) {
    case JobEnd::done:
      finish_stats();
      return std::move(outcome.partials);
    case JobEnd::failed:
      throw SliceError(*outcome.failure);
    case JobEnd::interrupted:
      throw Interrupted();
    case JobEnd::broken:
      if (stats != nullptr) stats->ending = JobEnding::broken;
      throw Error("the producer's I/O thread stopped: " + outcome.error);
    case JobEnd::no_workers:
      spdlog::warn("no worker serving {} over {} at {}: computing {} slice(s) locally on {} cores",
                   request.producer, request.source, dispatcher->endpoint(), outcome.missing.size(),
                   std::thread::hardware_concurrency());
      if (stats != nullptr) stats->local_reason = "no workers";
      record_each_slice();
      compute_locally(request, outcome.missing, outcome.partials, stats, outcome.started,
                      interrupted);
      finish_stats();
      return std::move(outcome.partials);
    case JobEnd::timed_out:
      if (request.options.on_timeout == OnTimeout::fail) {
        throw TimeoutError(slice_count - outcome.missing.size(), slice_count, outcome.seconds);
      }
      spdlog::warn("map timed out after {:.3f} s: computing the {} missing slice(s) locally",
                   outcome.seconds, outcome.missing.size());
      if (stats != nullptr) {
        stats->local_reason = "timeout";
        stats->ending = JobEnding::done;  // the timeout is handled: the job gives its value
      }
      record_each_slice();
      compute_locally(request, outcome.missing, outcome.partials, stats, outcome.started,
                      interrupted);
      finish_stats();
      return std::move(outcome.partials);
  }
  throw Error("unreachable");
}

}  // namespace

}  // namespace pymar::detail
