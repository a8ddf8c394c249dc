// The producer's gate for CurveZMQ: ZeroMQ asks it (over ZAP, RFC 27) about every peer that
// completes the CURVE handshake, before that peer can send a single message. Peers whose public
// key is not on the list are refused there, at the cost of the handshake alone.
#pragma once

#include <cstddef>
#include <set>
#include <string>

#include <zmq.hpp>

#include "common/log_budget.hpp"

namespace pymar::detail {

class KeyGate {
 public:
  /// Binds ZeroMQ's ZAP endpoint in `context`: do this before any CURVE socket of the context
  /// binds, or ZeroMQ would let every peer in.
  KeyGate(zmq::context_t& context, std::set<std::string> allowed);

  /// Polled by the producer's I/O thread.
  zmq::socket_t& socket() { return socket_; }

  /// Answers the requests waiting (at most a bounded number per call).
  void answer();

  std::size_t refused() const { return refused_; }

  /// The ZAP domain the producer's sockets name, so ZeroMQ asks this gate.
  static constexpr const char* kDomain = "pymar";

 private:
  zmq::socket_t socket_;
  std::set<std::string> allowed_;  // Z85 public keys
  // Per refused key: its first refusal, then each doubling; past 256 keys they share one budget.
  LogBudgets refusal_logs_{256, 1};
  std::size_t refused_ = 0;
};

}  // namespace pymar::detail
