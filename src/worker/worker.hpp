// A worker process's service loop: a DEALER connected to the producer, a compute thread running
// kernels, and heartbeats both ways so that a long map_fn is never taken for a dead worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/crash_record.hpp"
#include "common/keys.hpp"
#include "wire/protocol.hpp"

namespace pymar::detail {

struct WorkerOptions {
  std::string endpoint = "tcp://127.0.0.1:7627";  ///< the producer's address
  /// When `endpoint` is empty: a pipe to read it from (common/endpoint_record.hpp) once the
  /// worker is ready to connect. End of file there means no producer will come: return 0.
  int endpoint_fd = -1;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds liveness{5000};  ///< producer silent this long: reconnect
  std::uint32_t credit = 2;                  ///< batches accepted in flight
  std::vector<std::string> only_producers;   ///< serve only these (empty: all registered)
  std::vector<std::string> only_sources;
  std::optional<wire::Predecessor> predecessor;  ///< reported in READY until a producer answers
  CrashRecord* crash_record = nullptr;           ///< may be null
  int stop_fd = -1;  ///< readable when the worker should leave (signalfd or eventfd)
  /// This process belongs to a pool that restarts it: rather than wait for a kernel that nobody
  /// needs any more (its job was cancelled, its producer is gone, the worker is stopping),
  /// return (kExitAbandoned when stopping was not asked for), and let the pool end this process
  /// and start a fresh one at once.
  bool supervised = false;
  /// CurveZMQ: this worker's key pair and the producer's public key. The worker then talks only to
  /// a producer holding that key, and exits with kExitRefused if the producer refuses its key.
  std::optional<Keys> keys;
  /// Bind a doorbell that a producer starting on this machine rings, and then retry a producer
  /// on loopback only every 1 to 2 s otherwise. Off only to measure the difference.
  bool doorbell = true;
};

/// Serves jobs until `stop_fd` becomes readable. Returns the process exit status: 0, 1 when it
/// could not serve, kExitRefused, or (supervised only) kExitAbandoned when it left a slice that
/// nobody needs. It never ends the process itself; but a supervised worker returns without
/// waiting for a kernel that may still be running on its compute thread, so its caller must then
/// end the process at once (exit_at_once), as the pool does.
int run_worker(const WorkerOptions& options);

}  // namespace pymar::detail
