// A file descriptor with one owner, closed when the owner goes: an eventfd or signalfd held by
// an object is then released on every path out of its constructor, a throw included.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "pymar/error.hpp"

namespace pymar::detail {

class UniqueFd {
 public:
  UniqueFd() = default;
  /// Takes `fd` (which may be -1: nothing held).
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  /// Gives the descriptor up without closing it.
  int release() noexcept { return std::exchange(fd_, -1); }

  /// Closes what is held, then holds `fd`.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// A non-blocking, close-on-exec eventfd. Throws pymar::Error when none can be made.
inline UniqueFd make_eventfd() {
  UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) throw Error(fmt::format("eventfd: {}", std::strerror(errno)));
  return fd;
}

/// Adds one to an eventfd: whoever polls it wakes up.
inline void signal_eventfd(const UniqueFd& fd) noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd.get(), &one, sizeof one);
}

/// Reads (and so resets) an eventfd's count.
inline void drain_eventfd(const UniqueFd& fd) noexcept {
  std::uint64_t value;
  [[maybe_unused]] ssize_t n = ::read(fd.get(), &value, sizeof value);
}

}  // namespace pymar::detail
