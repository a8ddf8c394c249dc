// The worker pool: a parent process that keeps N worker processes running. It knows processes,
// not slices: it restarts a worker that dies and tells the next one how its predecessor ended.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "common/crash_record.hpp"

namespace pymar::detail {

/// What a worker process is started with.
struct WorkerSlot {
  unsigned index = 0;
  std::optional<ProcessEnd> predecessor;  ///< how the previous process in this slot ended
  CrashRecord* crash_record = nullptr;    ///< shared with the supervisor
  int stop_fd = -1;                       ///< a signalfd for SIGTERM and SIGINT
};

struct PoolOptions {
  unsigned processes = 1;
  /// What its workers serve (the producer's endpoint), for the pool's status.
  std::string producer;
  /// When set, the producer's endpoint is not known at the start (the pool of `--produce -w N`,
  /// started before its producer binds): called once the workers are started, it returns the
  /// endpoint, or nullopt when no producer will come (the pool then stops).
  std::function<std::optional<std::string>()> await_producer;
  /// Runs in each forked child; returns its exit status.
  std::function<int(const WorkerSlot&)> run_worker;
};

/// Forks the workers and supervises them until SIGINT or SIGTERM, which it passes on; a second
/// signal kills them at once. Meanwhile it answers `task --status --pool` on its status socket
/// (pool/status_socket.hpp). Returns the pool's exit status.
int run_pool(const PoolOptions& options);

}  // namespace pymar::detail
