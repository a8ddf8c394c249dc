#include "common/doorbell.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include <fmt/format.h>

#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

/// An abstract address: sun_path begins with a NUL, and the name's length is in the address
/// length (no terminating NUL), as /proc/net/unix shows it.
std::optional<std::pair<sockaddr_un, socklen_t>> abstract_address(std::string_view name) {
  sockaddr_un address{};
  if (name.empty() || name.size() + 1 > sizeof address.sun_path) return std::nullopt;
  address.sun_family = AF_UNIX;
  address.sun_path[0] = '\0';
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return std::make_pair(address, length);
}

int datagram_socket() {
  return ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/// One byte, never waiting: a doorbell whose queue is full has bells to read already.
bool send_bell(int fd, std::string_view name) {
  const auto to = abstract_address(name);
  if (!to) return false;
  const char bell = 1;
  return ::sendto(fd, &bell, sizeof bell, MSG_DONTWAIT | MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&to->first), to->second) == 1;
}

}  // namespace

std::string doorbell_prefix(std::uint16_t port) {
  return fmt::format("pymar-worker/{}/", port);
}

std::optional<std::uint16_t> endpoint_port(std::string_view endpoint) {
  if (!endpoint.starts_with("tcp://")) return std::nullopt;
  const auto colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon < 6) return std::nullopt;
  const std::string_view digits = endpoint.substr(colon + 1);
  unsigned value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size() || digits.empty() ||
      value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

Doorbell::Doorbell(std::uint16_t port) {
  // Unique per process, not per Doorbell: worker threads of one process (tests) each have one.
  static std::atomic<unsigned> counter{0};
  name_ = fmt::format("{}{}/{}", doorbell_prefix(port), getpid(), ++counter);
  fd_ = datagram_socket();
  if (fd_ < 0) throw Error(fmt::format("doorbell socket: {}", std::strerror(errno)));
  const auto address = abstract_address(name_);
  if (!address ||
      ::bind(fd_, reinterpret_cast<const sockaddr*>(&address->first), address->second) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    throw Error(fmt::format("doorbell {}: {}", name_, std::strerror(error)));
  }
}

Doorbell::~Doorbell() {
  if (fd_ >= 0) ::close(fd_);
}

Doorbell::Doorbell(Doorbell&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), name_(std::move(other.name_)) {}

Doorbell& Doorbell::operator=(Doorbell&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    name_ = std::move(other.name_);
  }
  return *this;
}

std::size_t Doorbell::drain(std::size_t max) {
  std::size_t read = 0;
  char byte;
  // A datagram longer than one byte is cut short by the kernel: what it says does not matter.
  while (read < max && ::recv(fd_, &byte, sizeof byte, MSG_DONTWAIT) >= 0) ++read;
  return read;
}

std::vector<std::string> doorbells_in(std::istream& listing, std::uint16_t port, std::size_t max) {
  const std::string wanted = "@" + doorbell_prefix(port);
  std::vector<std::string> names;
  for (std::string line; names.size() < max && std::getline(listing, line);) {
    // "Num RefCount Protocol Flags Type St Inode Path": the path is the eighth field, if any.
    std::istringstream fields(line);
    std::string field;
    int count = 0;
    while (count < 7 && fields >> field) ++count;
    if (count < 7 || !(fields >> field)) continue;
    if (!field.starts_with(wanted) || field.size() == wanted.size()) continue;
    names.push_back(field.substr(1));
  }
  return names;
}

bool ring_doorbell(std::string_view name) {
  const int fd = datagram_socket();
  if (fd < 0) return false;
  const bool sent = send_bell(fd, name);
  ::close(fd);
  return sent;
}

std::size_t ring_doorbells(std::uint16_t port) {
  std::ifstream listing("/proc/net/unix");
  if (!listing) return 0;
  const int fd = datagram_socket();
  if (fd < 0) return 0;
  std::size_t rung = 0;
  for (const std::string& name : doorbells_in(listing, port)) rung += send_bell(fd, name) ? 1 : 0;
  ::close(fd);
  return rung;
}

}  // namespace pymar::detail
