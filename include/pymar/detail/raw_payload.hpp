// The size check of a raw in-memory slice, as a worker receives it: a header of its own, without
// <ranges>, so that the fuzz target (clang) drives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pymar/error.hpp"

namespace pymar::detail {

/// Checks that a raw slice payload of `bytes` bytes holds exactly `limit` elements of
/// `element_size` bytes; throws DecodeError otherwise. Divides rather than multiplies: a forged
/// limit must not overflow into a matching size.
inline void check_raw_payload(std::size_t bytes, std::size_t element_size, std::uint64_t limit) {
  if (element_size == 0 || bytes % element_size != 0 || bytes / element_size != limit) {
    throw DecodeError("slice payload holds " + std::to_string(bytes) + " bytes, not " +
                      std::to_string(limit) + " elements of " + std::to_string(element_size) +
                      " bytes");
  }
}

}  // namespace pymar::detail
