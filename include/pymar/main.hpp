// pymar::main: the entry point that makes a task binary a producer or a worker pool.
#pragma once

#include <concepts>
#include <functional>
#include <type_traits>

namespace pymar {
namespace detail {
int run_main(int argc, char** argv, std::function<int()> job);
}  // namespace detail

/// Parses the command line and runs the binary's role:
///  - `task --produce [options]` (the default) runs `job`, which calls `Producer::map`;
///  - `task --worker -q HOST[:PORT] -w N` serves as a pool of N worker processes.
/// `job` returns void or an int exit status. Returns the process exit status: 0 on success,
/// 1 when the job failed, 2 on a command-line error, 130 when interrupted.
template <std::invocable Job>
int main(int argc, char** argv, Job&& job) {
  return detail::run_main(argc, argv, [&job]() -> int {
    if constexpr (std::is_void_v<std::invoke_result_t<Job>>) {
      job();
      return 0;
    } else {
      return static_cast<int>(job());
    }
  });
}

}  // namespace pymar
