// The exceptions `Producer::map` throws. All derive from pymar::Error, itself a std::runtime_error.
#pragma once

#include "pymar/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pymar {

/// Base of every error Pymar reports to the user's job.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where and how a slice failed: raised by `map` when user code threw on a worker (or locally),
/// or when a slice crashed every worker it was given to.
class SliceError : public Error {
 public:
  struct Details {
    std::size_t slice = 0;       ///< index of the slice in [0, parts)
    std::size_t offset = 0;      ///< first element of the slice
    std::size_t limit = 0;       ///< number of elements in the slice
    std::string host;            ///< host of the worker that reported the failure ("" if local)
    std::int64_t pid = 0;        ///< pid of that worker process
    std::string exception_type;  ///< demangled type of the exception, or "signal SIGSEGV" etc.
    std::string message;         ///< what() of the exception, or a description of the crash
    unsigned attempts = 0;       ///< how many times the slice was tried
  };

  explicit SliceError(Details details);
  const Details& details() const noexcept { return details_; }

 private:
  Details details_;
};

/// `map` ran past its timeout and was asked to fail rather than finish locally.
class TimeoutError : public Error {
 public:
  TimeoutError(std::size_t done, std::size_t total, double seconds);
  std::size_t slices_done() const noexcept { return done_; }
  std::size_t slices_total() const noexcept { return total_; }

 private:
  std::size_t done_;
  std::size_t total_;
};

/// The producer was interrupted (SIGINT/SIGTERM) while `map` was running.
class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted") {}
};

/// A value or message could not be decoded: wrong shape, over a size limit, or truncated.
class DecodeError : public Error {
 public:
  using Error::Error;
};

}  // namespace pymar
