// What every public header needs before anything else: the language version, checked here rather
// than imposed by pkg-config's flags, so that a wrong one fails with one clear line.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "Pymar needs C++20 or later: compile with -std=c++20 (or -std=gnu++20, or later)"
// A missing header is a fatal error: the compiler stops here instead of going on to list, by the
// hundred, what an older language lacks.
#include <pymar-needs-cpp20-stop-here>
#endif
