// The pool's status socket: a local socket on which the supervisor tells whoever asks (this user
// only) what its worker processes are doing. A pool only connects out to its producer; this is
// how `task --status --pool` reaches it.
//
// The socket is a Unix SOCK_SEQPACKET socket named `pool-PID.sock` in a folder only this user may
// enter (0700): $XDG_RUNTIME_DIR/pymar, or /tmp/pymar-UID without one. The supervisor reads
// nothing from an asker: it sends one POOL STATUS message on each connection and closes it, so an
// asker costs one bounded encode and one non-blocking send.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "wire/protocol.hpp"

namespace pymar::detail {

/// Where this user's pool sockets are, unchecked: $XDG_RUNTIME_DIR/pymar, or /tmp/pymar-UID.
std::filesystem::path pool_socket_dir_path();

/// The folder of this user's pool sockets. With `create`, makes it (0700) if missing. Throws
/// pymar::Error when it is not a folder that only this user owns and enters.
std::filesystem::path pool_socket_dir(bool create);

/// The socket of the pool whose supervisor is `pid`.
std::filesystem::path pool_socket_path(const std::filesystem::path& dir, pid_t pid);

/// The supervisor's end: listens at pool_socket_path(pool_socket_dir(true), getpid()), or, if it
/// cannot (logged as a warning), does nothing: a pool works without it.
class PoolStatusSocket {
 public:
  /// Askers answered per call of answer(); more wait for the next turn.
  static constexpr int kAnswersPerTurn = 8;

  PoolStatusSocket();
  ~PoolStatusSocket();
  PoolStatusSocket(const PoolStatusSocket&) = delete;
  PoolStatusSocket& operator=(const PoolStatusSocket&) = delete;

  /// For poll(): readable when an asker waits. -1 without a socket.
  int fd() const { return fd_; }

  /// In a forked child: closes the inherited socket, leaving the file to the supervisor.
  void close_in_child();

  /// Accepts waiting askers of this user and sends each `status()` (built once per call).
  void answer(const std::function<wire::PoolStatus()>& status);

 private:
  int fd_ = -1;
  std::string path_;
};

/// The asker's end: the POOL STATUS at `socket`, or nullopt with `why` set.
std::optional<wire::PoolStatus> ask_pool(const std::filesystem::path& socket,
                                         std::chrono::milliseconds timeout, std::string& why);

}  // namespace pymar::detail
