#include "pool/status_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"
#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

/// An existing folder is used only if it is a real folder (not a link), this user's, and closed
/// to everyone else: then nobody else can put a socket there or reach one.
void check_private(const std::filesystem::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    throw Error(fmt::format("{}: {}", dir.string(), std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) throw Error(fmt::format("{} is not a folder", dir.string()));
  if (st.st_uid != ::getuid()) {
    throw Error(fmt::format("{} belongs to another user (uid {})", dir.string(), st.st_uid));
  }
  if ((st.st_mode & 077) != 0) {
    throw Error(fmt::format("{} is open to other users (mode {:o}); it must be 0700", dir.string(),
                            st.st_mode & 07777));
  }
}

bool fill_address(const std::filesystem::path& path, sockaddr_un& address) {
  address = {};
  address.sun_family = AF_UNIX;
  const std::string& text = path.native();
  if (text.size() >= sizeof address.sun_path) return false;
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return true;
}

}  // namespace

std::filesystem::path pool_socket_dir_path() {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') return std::filesystem::path(runtime) / "pymar";
  return std::filesystem::temp_directory_path() / fmt::format("pymar-{}", ::getuid());
}

std::filesystem::path pool_socket_dir(bool create) {
  const std::filesystem::path dir = pool_socket_dir_path();
  if (create && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(fmt::format("cannot make {}: {}", dir.string(), std::strerror(errno)));
  }
  check_private(dir);
  return dir;
}

std::filesystem::path pool_socket_path(const std::filesystem::path& dir, pid_t pid) {
  return dir / fmt::format("pool-{}.sock", pid);
}

PoolStatusSocket::PoolStatusSocket() {
  std::filesystem::path path;
  try {
    path = pool_socket_path(pool_socket_dir(true), ::getpid());
  } catch (const Error& e) {
    spdlog::warn("no status socket for this pool: {}", e.what());
    return;
  }
  sockaddr_un address;
  if (!fill_address(path, address)) {
    spdlog::warn("no status socket for this pool: the path {} is too long", path.string());
    return;
  }
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    spdlog::warn("no status socket for this pool: {}", std::strerror(errno));
    return;
  }
  // A file of this name is left by an earlier process with this pid, which is gone.
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, kAnswersPerTurn) != 0) {
    spdlog::warn("no status socket for this pool at {}: {}", path.string(), std::strerror(errno));
    ::close(fd);
    return;
  }
  fd_ = fd;
  path_ = path.string();
  spdlog::debug("pool status on {}", path_);
}

PoolStatusSocket::~PoolStatusSocket() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(path_.c_str());
}

void PoolStatusSocket::close_in_child() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  path_.clear();
}

void PoolStatusSocket::answer(const std::function<wire::PoolStatus()>& status) {
  if (fd_ < 0) return;
  std::string message;
  for (int i = 0; i < kAnswersPerTurn; ++i) {
    const int asker = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (asker < 0) return;
    // The folder already keeps other users out; this holds even if someone opened it up.
    ucred peer{};
    socklen_t size = sizeof peer;
    const bool ours = ::getsockopt(asker, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0 &&
                      (peer.uid == ::getuid() || peer.uid == 0);
    if (ours) {
      if (message.empty()) message = wire::encode(status());
      // One message, never waited for: an asker that does not read loses its answer.
      (void)::send(asker, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    ::close(asker);
  }
}

std::optional<wire::PoolStatus> ask_pool(const std::filesystem::path& socket,
                                         std::chrono::milliseconds timeout, std::string& why) {
  sockaddr_un address;
  if (!fill_address(socket, address)) {
    why = "the path is too long";
    return std::nullopt;
  }
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  const timeval wait{static_cast<time_t>(timeout.count() / 1000),
                     static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    why = errno == ECONNREFUSED ? "nobody listens there (a pool that ended without cleaning up)"
                                : std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  std::vector<char> buffer(wire::kMaxHeaderBytes);
  const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_TRUNC);
  const int error = errno;
  ::close(fd);
  if (n <= 0) {
    why = n == 0 ? "the pool closed the connection without an answer"
                 : (error == EAGAIN || error == EWOULDBLOCK ? "no answer in time"
                                                            : std::strerror(error));
    return std::nullopt;
  }
  if (static_cast<std::size_t>(n) > buffer.size()) {
    why = "the answer is over the size limit";
    return std::nullopt;
  }
  try {
    wire::Message message =
        wire::decode(std::string_view(buffer.data(), static_cast<std::size_t>(n)), 0);
    if (auto* status = std::get_if<wire::PoolStatus>(&message)) return std::move(*status);
    why = fmt::format("the answer is a {}, not a POOL STATUS", wire::type_name(message));
  } catch (const wire::ProtocolError& e) {
    why = fmt::format("the answer does not decode: {}", e.what());
  }
  return std::nullopt;
}

}  // namespace pymar::detail
