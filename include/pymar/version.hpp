// Pymar version: the macro for preprocessor checks, the function for code.
#pragma once

#define PYMAR_VERSION_MAJOR 0
#define PYMAR_VERSION_MINOR 1
#define PYMAR_VERSION_PATCH 0
#define PYMAR_VERSION \
  (PYMAR_VERSION_MAJOR * 10000 + PYMAR_VERSION_MINOR * 100 + PYMAR_VERSION_PATCH)

namespace pymar {

/// The library version as "major.minor.patch".
constexpr const char* version() noexcept {
  return "0.1.0";
}

/// The wire protocol version spoken by this build; peers with another version are refused.
constexpr unsigned protocol_version() noexcept {
  return 1;
}

}  // namespace pymar
