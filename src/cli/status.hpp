// `task --status`: asks a running producer who is connected, what runs and how far it is.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <optional>
#include <string>

#include "common/keys.hpp"
#include "wire/protocol.hpp"

namespace pymar::detail {

struct StatusRequest {
  std::string endpoint;      ///< the producer's ZeroMQ endpoint, "tcp://HOST:PORT"
  std::optional<Keys> keys;  ///< with keys: this process's pair and the producer's public key
  bool json = false;
  std::chrono::milliseconds timeout{5000};
};

/// Asks, prints the answer to stdout, and returns the exit status: 0 answered, 1 no answer within
/// the timeout (the message on stderr says what to check), 3 refused by the producer's keys.
int query_status(const StatusRequest& request);

/// The answer as people read it, and as JSON for scripts (one object; see doc/protocol.md).
std::string status_text(const wire::Status& status, const std::string& endpoint);
std::string status_json(const wire::Status& status, const std::string& endpoint);

/// `task --status --pool [PID]`: asks the pool whose supervisor is `pid` (or every pool of this
/// user on this machine) through its status socket, and prints the answer. Returns 0 when
/// answered (without a pid: also when no pool runs), 1 when the pool named does not answer.
int query_pools(std::optional<pid_t> pid, bool json);

/// A pool's answer as people read it, and as JSON (one object; see doc/protocol.md).
std::string pool_status_text(const wire::PoolStatus& status);
std::string pool_status_json(const wire::PoolStatus& status);

}  // namespace pymar::detail
