// A worker's side of the conversation with its producer, as a state machine with no sockets and
// no threads (the worker's counterpart of the producer's Scheduler): it is told what happened
// (a connection made or lost, a handshake failed, a doorbell rang, a message arrived, time
// passed) and answers through WorkerActions (send this, reconnect, compute this batch, cancel
// or abandon that job), or by ending (refused by the producer). src/worker/worker.cpp drives it
// over the real socket and compute thread; test/test_worker_session.cpp drives it alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/log_budget.hpp"
#include "wire/protocol.hpp"

namespace pymar::detail {

/// What the session asks of the process around it.
class WorkerActions {
 public:
  virtual ~WorkerActions() = default;
  /// Sends one message to the producer; false when no connection could take it (it is dropped,
  /// never queued).
  virtual bool send(const wire::Message& message) = 0;
  /// Tries the producer's address again now, on the same socket (`fresh` false), or on a new
  /// socket with a new routing id (`fresh` true).
  virtual void reconnect(bool fresh) = 0;
  /// Queues a batch for the compute thread.
  virtual void compute(wire::Assign&& assign) = 0;
  /// The producer cancelled `job`: drop its queued batches, and stop computing it between slices.
  virtual void cancel(const wire::JobId& job) = 0;
  /// Drops queued batches: all of them, or those of producer sessions other than `keep_session`.
  virtual void drop_queued(std::optional<std::uint64_t> keep_session = std::nullopt) = 0;
  /// Nobody waits any more for the batch being computed, if it is of `job` (any job when unset)
  /// and not of `keep_session`: a supervised worker may leave it (see worth_abandoning).
  virtual void abandon(std::optional<wire::JobId> job, std::optional<std::uint64_t> keep_session,
                       std::string_view why) = 0;
};

/// Whether a kernel running for `elapsed` is worth leaving (the process exits and its pool starts
/// a fresh one) rather than waiting for: a slice of the usual length (`typical`, zero when none
/// finished yet) finishes sooner than a restart would make the worker free.
bool worth_abandoning(std::chrono::nanoseconds elapsed, std::chrono::nanoseconds typical);

struct WorkerSessionConfig {
  std::string endpoint;  ///< the producer's address, for logs
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds liveness{5000};
  std::uint32_t credit = 2;
  std::vector<std::string> producers;  ///< served
  std::vector<std::string> sources;
  std::optional<wire::Predecessor> predecessor;  ///< reported in READY until a producer answers
  /// With keys: this worker's public key (refusal messages name it); unset without keys.
  std::optional<std::string> own_key;
  /// Names this worker in READY.
  std::string build;
  std::string task;
  std::string host;
  std::int64_t pid = 0;
};

/// How a failed handshake with whatever listens at the producer's address failed.
enum class HandshakeFailure {
  refused,             ///< the peer refused our key (ZAP): the producer does not allow us
  mechanism_mismatch,  ///< the peer does (not) use keys where we do not (do)
  other,               ///< no detail: a key that is not the producer's, a reset, ...
};

/// Why the session ended: the process exit status and what to log.
struct WorkerEnd {
  int status = 0;
  std::string why;
};

class WorkerSession {
 public:
  WorkerSession(WorkerSessionConfig config, WorkerActions& actions);

  /// The producer's endpoint, known only now (a worker started before its producer bound).
  void set_endpoint(std::string endpoint) { config_.endpoint = std::move(endpoint); }

  // --- inputs ----------------------------------------------------------------------------
  /// A new socket was connected (at start, or after reconnect(true)): nothing heard yet.
  void on_new_socket(Clock::time_point now);
  /// The connection finished its handshake: greet the producer.
  void on_link_up(Clock::time_point now);
  void on_link_down(Clock::time_point now);
  void on_handshake_failed(HandshakeFailure failure, Clock::time_point now);
  /// A producer on this machine rang the doorbell.
  void on_bell(Clock::time_point now);
  /// A message from the producer, decoded. An ASSIGN is handed to WorkerActions::compute.
  void on_message(wire::Message&& message, Clock::time_point now);
  /// A message from the producer that did not decode.
  void on_malformed(const wire::ProtocolError& error);
  /// Results went out (their send does not need the session).
  void on_results_sent(Clock::time_point now) { last_sent_ = now; }
  /// The process was stopped or starved of CPU until `now`: the producer's silence was ours.
  void forgive_silence(Clock::time_point now) { last_heard_ = now; }
  /// Timers: heartbeats, liveness, retries. Call at next_deadline() or later.
  void on_time(Clock::time_point now);

  // --- outputs ---------------------------------------------------------------------------
  /// When on_time must run next, or max() when only an event can give it something to do.
  Clock::time_point next_deadline() const;
  /// Set once the worker must end (the producer refused it): the process exit status.
  const std::optional<WorkerEnd>& end() const { return end_; }

  // --- state, for the tests and the shell ------------------------------------------------
  bool linked() const { return linked_; }
  bool talking() const { return connected_to_producer_; }
  std::uint64_t producer_session() const { return session_; }

 private:
  void send_ready(Clock::time_point now);
  bool send(const wire::Message& message, Clock::time_point now);
  void answer_bell(Clock::time_point now);
  void reconnect_now();
  bool serve_session(std::uint64_t session);

  WorkerSessionConfig config_;  // constant but for the endpoint, which may come later
  WorkerActions& actions_;
  std::optional<wire::Predecessor> predecessor_;

  bool linked_ = false;                 // the socket has a connection through its handshake
  bool gave_up_ = false;                // not linked, and queued work was dropped after liveness
  bool ready_unsent_ = false;           // linked, but READY found no connection to go out on yet
  bool connected_to_producer_ = false;  // a producer answered on this link
  std::optional<Clock::time_point> handshake_retry_at_;  // after a failed handshake
  bool bell_pending_ = false;                            // a bell not yet answered
  Clock::time_point last_bell_retry_;                    // when a bell last made the worker retry
  Clock::time_point last_heard_;
  Clock::time_point last_sent_;
  std::optional<Clock::time_point> refused_until_;  // a REFUSE: quiet until then
  std::string last_refusal_;
  // Handshakes failed in a row (without keys: a peer that wants keys, after kFailuresMeaningKeys).
  unsigned failed_handshakes_ = 0;
  LogBudgets handshake_logs_;  // failed handshakes with a peer that is not our producer
  LogBudgets garbage_logs_;    // malformed messages, by kind
  std::uint64_t session_ = 0;  // the producer run being served, once known
  // Producer runs replaced by a later one, most recent last (serve_session).
  static constexpr std::size_t kReplacedSessionsKept = 16;
  std::deque<std::uint64_t> replaced_sessions_;
  LogBudget new_run_log_{16};  // a producer could claim a new session with every message
  LogBudget refusal_log_;
  std::optional<WorkerEnd> end_;
};

}  // namespace pymar::detail
