// pymar::main: the entry point that makes a task binary a producer or a worker pool.
#pragma once

#include "pymar/detail/config.hpp"

#include <concepts>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace pymar {

/// The task's own command-line arguments: those after `--` (`task --produce -w 4 -- in.txt`).
using Arguments = std::vector<std::string>;

namespace detail {
int run_main(int argc, char** argv, std::function<int(const Arguments&)> job, bool takes_arguments);

template <class Result>
int exit_status_of(Result&& result) {
  return static_cast<int>(result);
}
}  // namespace detail

/// Parses the command line and runs the binary's role:
///  - `task --produce [options] [-- ARGS...]` (the default) runs `job`, which calls
///    `Producer::map`; `job` is `job()` or `job(const pymar::Arguments&)` and returns void or an
///    int exit status;
///  - `task --worker -q HOST[:PORT] -w N` serves as a pool of N worker processes.
/// Returns the process exit status: 0 on success, 1 when the job failed, 2 on a command-line
/// error, 130 when interrupted.
///
/// The producer's socket and I/O thread belong to this call: `map` inside `job` uses them, and
/// they are gone (thread joined, port closed) when it returns, once every `map` call started in
/// `job` has returned. `map` in a program that never calls `main` (a test, a library) computes
/// on this machine's cores, with a warning.
template <class Job>
int main(int argc, char** argv, Job&& job) {
  constexpr bool takes_arguments = std::invocable<Job&, const Arguments&>;
  static_assert(takes_arguments || std::invocable<Job&>,
                "the job must be callable as job() or job(const pymar::Arguments&)");
  return detail::run_main(
      argc, argv,
      [&job](const Arguments& arguments) -> int {
        auto call = [&]() -> decltype(auto) {
          if constexpr (takes_arguments) {
            return job(arguments);
          } else {
            return job();
          }
        };
        if constexpr (std::is_void_v<decltype(call())>) {
          call();
          return 0;
        } else {
          return detail::exit_status_of(call());
        }
      },
      takes_arguments);
}

}  // namespace pymar
