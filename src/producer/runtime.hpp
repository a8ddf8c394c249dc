// What `map` runs on: the runtime pymar::main makes for the producer role (a dispatcher, or local
// computation with --local), or, in a program that never calls pymar::main, this machine's cores.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "producer/dispatcher.hpp"
#include "producer/small_jobs.hpp"

namespace pymar::detail {

/// The producer's side of a run: `map` (run_job) goes through the runtime in use, which sends the
/// job to its dispatcher's workers or computes it on this machine's cores. pymar::main owns one
/// for the producer role, for as long as the job runs; tests own their own.
///
/// A runtime is in use from its construction to its destruction: when several are alive, the one
/// made last is (they nest, as scopes do; one destroyed out of order simply leaves the chain).
/// With none alive (a program that never calls pymar::main), `map` computes locally with a
/// warning. The destructor waits for the `map` calls running on it to return, then stops the
/// dispatcher: its thread is joined and its port closed before the destructor returns.
class Runtime {
 public:
  /// Computes every job on this machine's cores: `--local`, or a test. `warn` logs a warning
  /// for each job, as when no runtime is in use.
  explicit Runtime(bool warn = true);
  /// Binds and starts a dispatcher (see Dispatcher). Throws pymar::Error when it cannot bind.
  explicit Runtime(DispatcherOptions options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// The dispatcher, or nullptr when this runtime computes locally.
  Dispatcher* dispatcher() { return dispatcher_ ? &*dispatcher_ : nullptr; }

 private:
  friend Partials run_job(const JobRequest& request);
  void enter();  // makes this runtime the one in use

  std::optional<Dispatcher> dispatcher_;
  SmallJobs small_jobs_;  // what the dispatcher's jobs took, for COMPUTE_SMALL_JOBS_HERE
  bool warn_ = true;
  Runtime* previous_ = nullptr;  // in use before this one; guarded by the chain's mutex
  std::size_t calls_ = 0;        // map calls running on this runtime; guarded likewise
};

/// Writes every job's statistics to `path` as JSON (`--stats FILE`), or stops (nullopt).
void write_stats_to(std::optional<std::string> path);

}  // namespace pymar::detail
