// Producer: the user's map_fn and reduce_fn, and `map`, which runs them over a factory's data.
#pragma once

#include "pymar/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "pymar/codec.hpp"
#include "pymar/concepts.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/detail/kernel.hpp"
#include "pymar/error.hpp"
#include "pymar/job_options.hpp"
#include "pymar/registry.hpp"
#include "pymar/stats.hpp"

namespace pymar {

/// Base of a user's producer, Derived being the user's class (registered with REGISTER_PRODUCER).
/// Derived provides:
///  - `static auto map_fn(auto&& elements)`: a slice's elements in, a range of values out;
///  - `static Value reduce_fn(auto&& values)`: a range of values in, one value out. It is applied
///    to map_fn's output on the worker, and to the vector of partial values on the producer, so
///    it must accept both and return the same type;
///  - optionally `static constexpr std::size_t WORKERS_NUMBER`: how many slices to cut a job
///    into (at most full_length() of them; 4 when not given), `SPECULATIVE` and
///    `COMPUTE_SMALL_JOBS_HERE` (below).
template <class Derived>
struct Producer {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  /// Whether a slice that is late, or that a faster idle worker would end sooner, may be
  /// computed a second time on that worker (the first result counts). Set to false in a
  /// producer whose map_fn has side effects.
  static constexpr bool SPECULATIVE = true;
  /// Whether a job may be computed by the thread that calls `map` when it is too small to be
  /// worth a round trip: when its slices, one after another, took less time the last time the
  /// same job ran (same source parameters) than the quickest job the workers have returned.
  /// Set to true only when the data reads the same here as on the workers (made from the
  /// parameters, or handed to the factory from memory), not when a source reads files or a
  /// database that may differ from one machine to another.
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = false;

  /// Runs the job over `factory`'s data on the workers (or locally when there are none) and
  /// returns `reduce_fn` of the partial values, reduced in slice order. Throws SliceError when
  /// user code failed on a slice, Interrupted when the producer is interrupted.
  template <Factory F>
  auto map(const F& factory) const {
    return run(factory, JobOptions{}, nullptr);
  }

  /// As map(factory), but after `timeout` either throws TimeoutError (OnTimeout::fail) or
  /// computes the slices still missing on this machine (OnTimeout::compute_locally).
  template <Factory F, class Rep, class Period>
  auto map(const F& factory, std::chrono::duration<Rep, Period> timeout,
           OnTimeout on_timeout = OnTimeout::fail) const {
    return run(factory, options_for(timeout, on_timeout), nullptr);
  }

  /// As map(factory), and the job's statistics beside its value: who computed which slice,
  /// when, what travelled, and every fault seen (see pymar/stats.hpp). The value is the one
  /// map(factory) returns. When map throws, the statistics are lost to the caller (the
  /// `--stats` file still gets them).
  template <Factory F>
  auto map_with_stats(const F& factory) const {
    JobStats stats;
    auto value = run(factory, JobOptions{}, &stats);
    return WithStats<decltype(value)>{std::move(value), std::move(stats)};
  }

  /// As map(factory, timeout, on_timeout), with the job's statistics.
  template <Factory F, class Rep, class Period>
  auto map_with_stats(const F& factory, std::chrono::duration<Rep, Period> timeout,
                      OnTimeout on_timeout = OnTimeout::fail) const {
    JobStats stats;
    auto value = run(factory, options_for(timeout, on_timeout), &stats);
    return WithStats<decltype(value)>{std::move(value), std::move(stats)};
  }

 private:
  template <class Rep, class Period>
  static JobOptions options_for(std::chrono::duration<Rep, Period> timeout, OnTimeout on_timeout) {
    JobOptions options;
    options.on_timeout = on_timeout;
    // A timeout of a century or more (hours::max() for "never") is no timeout: in nanoseconds
    // it would overflow.
    const std::chrono::duration<double> seconds = timeout;
    if (seconds.count() < 100 * 365.25 * 24 * 3600) {
      options.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
    }
    return options;
  }

  /// `stats`: where the caller wants the statistics, or null. They are collected too when the
  /// producer runs with `--stats FILE`, and then written there however the job ends.
  template <Factory F>
  static auto run(const F& factory, JobOptions options, JobStats* stats) {
    using Source = typename F::source_type;
    // Checks map_fn and reduce_fn against the source's elements, with one message per mistake.
    using Contract = detail::ValueFor<Derived, Source>;
    using Value = typename Contract::type;
    static_assert(Derived::WORKERS_NUMBER > 0, "WORKERS_NUMBER must be at least 1");
    if constexpr (!Contract::holds) {
      // The contract's static_assert said what is wrong; compiling the job would only add errors.
      return detail::NotDerived{};
    } else {
      using Kernel = detail::KernelFor<Derived, Source>;
      if (!Kernel::registered) throw Error("the kernel registry is unavailable");

      detail::JobRequest request;
      request.producer = detail::registered_name(detail::EntryKind::producer, typeid(Derived));
      request.source = detail::registered_name(detail::EntryKind::source, typeid(Source));
      request.params = factory.encoded_params();
      request.length = factory.full_length();
      request.parts = Derived::WORKERS_NUMBER;
      request.kernel = &Kernel::run;
      request.check_partial = [](std::string_view encoded) { (void)decode<Value>(encoded); };
      request.memory = factory.memory();
      options.speculate = Derived::SPECULATIVE;
      options.compute_small_jobs_here = Derived::COMPUTE_SMALL_JOBS_HERE;
      request.options = options;
      std::optional<JobStats> own_stats;       // for the --stats file when the caller wants none
      std::vector<detail::SliceRun> own_runs;  // its slices, as the file holds them
      if (stats == nullptr && detail::job_stats_wanted()) {
        stats = &own_stats.emplace();
        request.slice_runs = &own_runs;
      }
      request.stats = stats;
      if (stats == nullptr) return reduce<Value>(detail::run_job(request));

      bool handed_over = false;  // job_stats_done took the statistics, even if it threw
      try {
        const detail::Partials partials = detail::run_job(request);
        const auto reduce_started = std::chrono::steady_clock::now();
        Value value = reduce<Value>(partials);
        stats->reduce_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now() - reduce_started)
                               .count();
        stats->wall_ns += stats->reduce_ns;
        handed_over = true;
        detail::job_stats_done(own_stats ? std::move(*own_stats) : *stats, std::move(own_runs));
        return value;
      } catch (...) {
        if (handed_over) throw;
        // run_job said how the job ended; a reduce_fn that threw ends it as failed.
        if (stats->ending == JobEnding::done) stats->ending = JobEnding::failed;
        detail::job_stats_done(own_stats ? std::move(*own_stats) : *stats, std::move(own_runs));
        throw;
      }
    }
  }

  /// reduce_fn over the partial values, decoded, in slice order.
  template <class Value>
  static Value reduce(const detail::Partials& partials) {
    std::vector<Value> values;
    values.reserve(partials.size());
    for (std::size_t slice = 0; slice < partials.size(); ++slice) {
      values.push_back(decode<Value>(partials[slice]));
    }
    return static_cast<Value>(Derived::reduce_fn(values));
  }
};

}  // namespace pymar
