// Doorbells: how a producer that has just bound its port wakes the workers on its machine that
// are waiting to reconnect to that port, so that a warm pool joins a new producer at once while
// an idle pool retries only every second or two.
//
// Each worker binds an abstract-namespace unix datagram socket named
// "pymar-worker/<producer port>/<pid>/<n>" (abstract names cost no file and vanish with the
// process). A producer lists those names for its port in /proc/net/unix and sends each one
// datagram. A bell carries nothing: it only makes a worker retry, at once, the connection it was
// already retrying, to the address it was given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pymar::detail {

/// The name every doorbell of a worker serving the producer on `port` begins with.
std::string doorbell_prefix(std::uint16_t port);

/// The TCP port of a ZeroMQ endpoint "tcp://HOST:PORT", or nullopt when it names none.
std::optional<std::uint16_t> endpoint_port(std::string_view endpoint);

/// A worker's doorbell: a bound, non-blocking datagram socket, closed with the object.
class Doorbell {
 public:
  /// Binds a doorbell for a worker serving the producer on `port`. Throws pymar::Error when the
  /// socket cannot be made or bound.
  explicit Doorbell(std::uint16_t port);
  ~Doorbell();
  Doorbell(Doorbell&& other) noexcept;
  Doorbell& operator=(Doorbell&& other) noexcept;
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  /// Readable when a bell has rung (for poll).
  int fd() const { return fd_; }
  /// The abstract name, without its leading NUL.
  const std::string& name() const { return name_; }

  /// Reads the bells that have rung, at most `max` of them, without blocking; their contents
  /// are ignored. Returns how many were read.
  std::size_t drain(std::size_t max = 64);

 private:
  int fd_ = -1;
  std::string name_;
};

/// The doorbell names for `port` in a listing in the format of /proc/net/unix (abstract names
/// are shown with a leading '@'), at most `max` of them, without their '@'.
std::vector<std::string> doorbells_in(std::istream& listing, std::uint16_t port,
                                      std::size_t max = 65536);

/// Rings, once each, the doorbells of the workers on this machine (this network namespace)
/// waiting for the producer on `port`, as listed in /proc/net/unix. Never blocks: a doorbell
/// whose queue is full is skipped (its worker has bells to read already). Returns how many rang.
std::size_t ring_doorbells(std::uint16_t port);

/// Sends one bell to the abstract name `name`; false when it could not be delivered at once.
bool ring_doorbell(std::string_view name);

}  // namespace pymar::detail
