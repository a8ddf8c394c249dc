// What a worker process and its pool supervisor share: the worker writes, the pool reads.
#pragma once

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
