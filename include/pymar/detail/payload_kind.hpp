// How an in-memory slice travels: shared by the job description (detail/job.hpp) and the wire,
// which must not depend on the job header for one enumeration.
#pragma once

#include "pymar/detail/config.hpp"

#include <cstdint>

namespace pymar::detail {

/// How an in-memory slice travels.
enum class PayloadKind : std::uint8_t {
  none = 0,     ///< a registered source: only offsets and parameters travel
  raw = 1,      ///< trivially copyable elements: the slice's bytes, sent without a copy
  msgpack = 2,  ///< other elements: the slice encoded as a msgpack array
};

}  // namespace pymar::detail
