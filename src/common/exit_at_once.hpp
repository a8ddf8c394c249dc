// Ending a process at once (std::_Exit: no destructors, no atexit handlers) without hiding its
// leaks: LeakSanitizer runs from an atexit handler, which _Exit skips, so in a build with
// AddressSanitizer the leak check is run here first. Its report goes where ASAN_OPTIONS says.
#pragma once

#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#define PYMAR_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PYMAR_WITH_ASAN 1
#endif
#endif

#ifdef PYMAR_WITH_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace pymar::detail {

/// Ends the process with `status` at once, as std::_Exit does, after a leak check in a build
/// with AddressSanitizer (a leak is reported, the status is kept).
[[noreturn]] inline void exit_at_once(int status) {
#ifdef PYMAR_WITH_ASAN
  __lsan_do_recoverable_leak_check();
#endif
  std::_Exit(status);
}

}  // namespace pymar::detail
