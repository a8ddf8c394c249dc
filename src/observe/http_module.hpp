// The seam between libpymar and its HTTP module (libpymar-http.so), which holds the HTTP server
// and cpp-httplib. Debian's cpp-httplib is a shared library that links OpenSSL, zlib and Brotli;
// loaded at start, they cost every task and worker process ~10 ms and ~1 MiB. So the library
// loads the module (dlopen) only when --metrics or --dashboard asks for it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "observe/http_server.hpp"

namespace pymar::detail {

/// What the module offers, as one table of functions. The module and the library come from one
/// build: `version` (meson's project version) and `abi` must match the library's own.
struct HttpModule {
  int abi;
  const char* version;
  /// Serves `routes` on host:port until `stop`: the server, or null with `*error` set.
  HttpServer* (*start)(const std::string& host, unsigned port, std::vector<HttpRoute> routes,
                       std::string* error);
  std::uint16_t (*port)(const HttpServer* server);
  void (*stop)(HttpServer* server);
};

inline constexpr int kHttpModuleAbi = 1;

/// The module's file name, and the C name of the function that returns its table.
inline constexpr const char* kHttpModuleFile = "libpymar-http.so";
inline constexpr const char* kHttpModuleEntry = "pymar_http_module";

}  // namespace pymar::detail
