#include "worker/session.hpp"

#include <algorithm>
#include <variant>

#include <fmt/format.h>

#include "common/crash_record.hpp"
#include "common/log.hpp"
#include "common/printable.hpp"

namespace pymar::detail {
namespace {

// A READY that found its new connection not yet usable is sent again this soon.
constexpr std::chrono::milliseconds kReadyRetry{1};

// After a failed handshake (something listens, but it is not our producer, or it refused us), the
// next attempt comes this soon: libzmq's backoff at its longest (see worker.cpp).
constexpr std::chrono::milliseconds kHandshakeRetry{100};

// Bells never make a worker retry more often than libzmq's own fastest retry would.
constexpr std::chrono::milliseconds kBellSpacing{10};

// Without keys, this many failed handshakes in a row say the producer wants keys.
constexpr unsigned kFailuresMeaningKeys = 3;

// Slices cancelled or abandoned shortly after starting are waited for: restarting a process costs
// about this much.
constexpr std::chrono::milliseconds kRestartCost{10};

}  // namespace

bool worth_abandoning(std::chrono::nanoseconds elapsed, std::chrono::nanoseconds typical) {
  if (typical.count() <= 0) return true;
  return elapsed >= 2 * typical + kRestartCost;
}

WorkerSession::WorkerSession(WorkerSessionConfig config, WorkerActions& actions)
    : config_(std::move(config)), actions_(actions), predecessor_(config_.predecessor) {}

void WorkerSession::on_new_socket(Clock::time_point now) {
  last_heard_ = now;
  connected_to_producer_ = false;
  linked_ = false;
  ready_unsent_ = false;
  gave_up_ = false;
}

void WorkerSession::on_link_down(Clock::time_point now) {
  if (!linked_) return;  // a failed handshake: reported as such
  linked_ = false;
  ready_unsent_ = false;
  last_heard_ = now;  // the liveness clock now measures how long the producer is away
  // Said once per producer run that spoke to this worker; quietly for one that never did.
  spdlog::log(connected_to_producer_ ? spdlog::level::info : spdlog::level::debug,
              "the producer at {} went away; waiting for the next one", config_.endpoint);
  connected_to_producer_ = false;
  answer_bell(now);
}

void WorkerSession::on_link_up(Clock::time_point now) {
  // Each new connection is greeted with READY: messages may have been lost with an old one, or
  // the producer may be a new one. A producer that knew us re-queues what we held; one that did
  // not learns of us at once.
  handshake_retry_at_.reset();
  failed_handshakes_ = 0;
  linked_ = true;
  gave_up_ = false;
  bell_pending_ = false;
  last_heard_ = now;
  actions_.drop_queued();
  send_ready(now);
}

/// Refused by the producer: restarting cannot help, so the worker ends with kExitRefused.
/// Anything else (a peer without keys, or with a key that is not the producer's) may be a port
/// squatter that a real producer replaces later: the worker keeps trying, and never talks to it.
void WorkerSession::on_handshake_failed(HandshakeFailure failure, Clock::time_point now) {
  // Something listens there, and a failed handshake does not always say why (the peer may reset
  // the connection before its greeting is read): try again soon, not in a second or two.
  handshake_retry_at_ = now + kHandshakeRetry;
  const bool mismatch = failure == HandshakeFailure::mechanism_mismatch;
  if (failure == HandshakeFailure::refused) {
    end_ = WorkerEnd{
        kExitRefused,
        fmt::format("the producer at {} refused this worker's key {}: add the worker's NAME.key "
                    "file to the folder the producer gives with --allow",
                    config_.endpoint, config_.own_key.value_or("(none)"))};
  } else if (!config_.own_key && (mismatch || ++failed_handshakes_ >= kFailuresMeaningKeys)) {
    // Without keys the handshake has little to fail on but the peer's mechanism: it uses keys.
    // libzmq reports that as a mismatch only when our side reads the peer's greeting before the
    // peer hangs up on ours; otherwise the same failure, again and again, says it.
    end_ = WorkerEnd{
        kExitRefused,
        fmt::format("the producer at {} requires keys: give this worker --secret-key and "
                    "--producer-key (see --help and the README, \"Running on many machines\")",
                    config_.endpoint)};
  } else if (LogBudget& budget = handshake_logs_[mismatch ? "mismatch" : "key"]; budget.spend()) {
    spdlog::warn(
        "the peer at {} is not the producer this worker was given ({} so far): {}; not talking "
        "to it",
        config_.endpoint, budget.count(),
        mismatch ? "it does not use keys" : "its key is not the one given with --producer-key");
  }
}

/// A producer rang this worker's doorbell: if the worker is waiting to reconnect, it retries now
/// rather than at its timer. A bell heard while connected is kept for the moment that connection
/// ends (a new producer may ring before the old one's connection is seen to close).
void WorkerSession::on_bell(Clock::time_point now) {
  bell_pending_ = true;
  answer_bell(now);
}

void WorkerSession::answer_bell(Clock::time_point now) {
  if (!bell_pending_ || linked_ || now < last_bell_retry_ + kBellSpacing) return;
  bell_pending_ = false;
  last_bell_retry_ = now;
  spdlog::debug("a producer rang: connecting to {} now", config_.endpoint);
  reconnect_now();
}

void WorkerSession::reconnect_now() {
  handshake_retry_at_.reset();
  actions_.reconnect(false);
}

void WorkerSession::send_ready(Clock::time_point now) {
  wire::Ready ready;
  ready.build = config_.build;
  ready.task = config_.task;
  ready.host = config_.host;
  ready.pid = config_.pid;
  ready.credit = config_.credit;
  ready.producers = config_.producers;
  ready.sources = config_.sources;
  ready.predecessor = predecessor_;
  // The connection is announced a moment before the socket can send on it: if READY finds no
  // connection yet, it is sent again shortly.
  ready_unsent_ = !send(ready, now) && linked_;
  if (ready_unsent_) spdlog::debug("READY found no connection yet; trying again");
}

bool WorkerSession::send(const wire::Message& message, Clock::time_point now) {
  last_sent_ = now;
  return actions_.send(message);
}

Clock::time_point WorkerSession::next_deadline() const {
  Clock::time_point deadline = Clock::time_point::max();
  if (refused_until_) {
    deadline = *refused_until_;
  } else if (linked_) {
    deadline = std::min(last_sent_ + config_.heartbeat, last_heard_ + config_.liveness);
    if (ready_unsent_) deadline = last_sent_ + kReadyRetry;
  } else if (!gave_up_) {
    deadline = last_heard_ + config_.liveness;
  }
  if (bell_pending_ && !linked_) deadline = std::min(deadline, last_bell_retry_ + kBellSpacing);
  if (handshake_retry_at_ && !linked_) deadline = std::min(deadline, *handshake_retry_at_);
  return deadline;
}

void WorkerSession::on_time(Clock::time_point now) {
  answer_bell(now);
  if (handshake_retry_at_ && now >= *handshake_retry_at_ && !linked_) reconnect_now();
  if (refused_until_) {
    if (now >= *refused_until_) {
      refused_until_.reset();
      last_heard_ = now;
      send_ready(now);  // perhaps a producer of our build runs there now
    }
    return;
  }
  if (!linked_) {
    // No connection: nothing to heartbeat, and libzmq (or a doorbell) is already retrying. Only
    // work held for a producer that has been away this long is given up on, once.
    if (!gave_up_ && now - last_heard_ >= config_.liveness) {
      gave_up_ = true;
      actions_.drop_queued();
      actions_.abandon(std::nullopt, std::nullopt, "the producer is gone");
    }
    return;
  }
  if (now - last_heard_ >= config_.liveness) {
    // Connected, but the producer is silent (hung, or a link that died without a word): start
    // afresh with a new socket and offer ourselves again.
    if (connected_to_producer_) {
      spdlog::warn("producer at {} silent for {:.1f} s; reconnecting", config_.endpoint,
                   std::chrono::duration<double>(now - last_heard_).count());
    }
    actions_.drop_queued();
    actions_.abandon(std::nullopt, std::nullopt, "the producer is gone");
    actions_.reconnect(true);
    on_new_socket(now);
    return;
  }
  if (ready_unsent_) {
    if (now >= last_sent_ + kReadyRetry) send_ready(now);
    return;
  }
  if (now - last_sent_ >= config_.heartbeat) send(wire::Heartbeat{0}, now);
}

void WorkerSession::on_malformed(const wire::ProtocolError& error) {
  LogBudget& budget = garbage_logs_[error.kind_name()];
  if (budget.spend()) {
    spdlog::warn("dropped a malformed message from the producer ({} of this kind so far): {}",
                 budget.count(), error.what());
  }
}

void WorkerSession::on_message(wire::Message&& message, Clock::time_point now) {
  last_heard_ = now;
  if (!connected_to_producer_) {
    connected_to_producer_ = true;
    predecessor_.reset();  // reported to a producer that listens
    spdlog::info("connected to producer at {}", config_.endpoint);
  }
  if (auto* heartbeat = std::get_if<wire::Heartbeat>(&message)) {
    serve_session(heartbeat->session);
  } else if (auto* assign = std::get_if<wire::Assign>(&message)) {
    if (!serve_session(assign->job.session)) return;  // of a producer run already replaced
    actions_.compute(std::move(*assign));
  } else if (auto* cancel = std::get_if<wire::Cancel>(&message)) {
    send(wire::Cancelled{cancel->job}, now);  // the producer may be waiting for it to end
    actions_.cancel(cancel->job);
    actions_.abandon(cancel->job, std::nullopt, "the job was cancelled");
  } else if (std::holds_alternative<wire::Who>(message)) {
    send_ready(now);
  } else if (auto* refuse = std::get_if<wire::Refuse>(&message)) {
    // Each new reason is logged, within a budget: a producer could send ever new ones.
    if (refuse->reason != last_refusal_ && refusal_log_.spend()) {
      spdlog::error("refused by the producer at {}: {}", config_.endpoint,
                    printable(refuse->reason));
      last_refusal_ = refuse->reason;
    }
    refused_until_ = now + 6 * config_.liveness;
    actions_.drop_queued();
  } else if (LogBudget& budget = garbage_logs_["a message producers do not send"]; budget.spend()) {
    spdlog::warn("dropped a {} message, which producers do not send ({} so far)",
                 wire::type_name(message), budget.count());
  }
}

/// Notes which producer run is talking. When a new one has taken over the address, work queued
/// or running for the old one is of no use to anybody. Returns false for a run that was already
/// replaced: its messages may still arrive late (ZeroMQ reads the old connection and the new one
/// in turn), and must not make the worker drop the work of its successor.
bool WorkerSession::serve_session(std::uint64_t session) {
  if (session == 0 || session == session_) return true;
  if (std::find(replaced_sessions_.begin(), replaced_sessions_.end(), session) !=
      replaced_sessions_.end()) {
    return false;
  }
  if (session_ != 0) {
    if (new_run_log_.spend()) {
      spdlog::info("a new producer run is serving at {} ({} so far)", config_.endpoint,
                   new_run_log_.count());
    }
    if (replaced_sessions_.size() >= kReplacedSessionsKept) replaced_sessions_.pop_front();
    replaced_sessions_.push_back(session_);
  }
  session_ = session;
  actions_.drop_queued(session);
  actions_.abandon(std::nullopt, session, "its producer run has ended");
  return true;
}

}  // namespace pymar::detail
