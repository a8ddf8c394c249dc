// What a worker process and its pool supervisor share: the worker writes, the pool reads.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace pymar::detail {

/// What the compute thread is doing, in memory the pool supervisor shares with the worker
/// process: if the process dies, the supervisor knows which slice it died on.
struct CrashRecord {
  std::atomic<std::uint64_t> session{0};
  std::atomic<std::uint64_t> seq{0};
  std::atomic<std::uint64_t> slice{0};
  std::atomic<std::uint32_t> in_slice{0};
  /// Set just before the worker exits with kExitAbandoned, so that user code calling exit(75)
  /// still reads as the crash it is.
  std::atomic<std::uint32_t> abandoned{0};
  /// A producer answered the worker on its current link (for the pool's status).
  std::atomic<std::uint32_t> connected{0};
};

/// How a worker process ended, as its pool saw it: the status `waitpid` gave and what the process
/// last wrote in its crash record. The pool knows processes; the command line turns this into
/// what the next process in the slot tells the producer.
struct ProcessEnd {
  pid_t pid = 0;
  int signal = 0;     ///< the signal that killed it, 0 if it exited
  int exit_code = 0;  ///< its exit status, when it exited
  /// It was in the middle of the work its crash record names when it ended (false when it left
  /// that work on purpose: see CrashRecord::abandoned).
  bool in_slice = false;
  std::uint64_t session = 0;  ///< the crash record's last words: which work it was doing
  std::uint64_t seq = 0;
  std::uint64_t slice = 0;
};

/// The exit status of a supervised worker that abandoned a kernel nobody needs any more (its
/// job was cancelled, its producer is gone): not a crash, and restarted at once.
inline constexpr int kExitAbandoned = 75;

/// The exit status of a worker (and of its pool) that the producer refused at the handshake: its
/// key is not allowed, or it has no key and the producer wants one. Restarting cannot help.
inline constexpr int kExitRefused = 3;

/// The exit status of a producer ended by Ctrl-C (or SIGTERM), as a shell shows SIGINT's.
inline constexpr int kExitInterrupted = 130;

}  // namespace pymar::detail
