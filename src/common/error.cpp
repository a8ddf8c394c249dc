#include <fmt/format.h>

#include "pymar/error.hpp"

namespace pymar {
namespace {

std::string describe(const SliceError::Details& d) {
  const std::string where =
      d.host.empty() ? std::string("locally") : fmt::format("on worker {} pid {}", d.host, d.pid);
  return fmt::format("slice {} [offset {}, limit {}] failed {} after {} attempt{}: {}: {}", d.slice,
                     d.offset, d.limit, where, d.attempts, d.attempts == 1 ? "" : "s",
                     d.exception_type, d.message);
}

}  // namespace

SliceError::SliceError(Details details) : Error(describe(details)), details_(std::move(details)) {}

TimeoutError::TimeoutError(std::size_t done, std::size_t total, double seconds)
    : Error(fmt::format("map timed out after {:.3g} s with {} of {} slices done", seconds, done,
                        total)),
      done_(done),
      total_(total) {}

}  // namespace pymar
