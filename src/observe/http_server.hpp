// A small HTTP server for watching the producer (--metrics, --dashboard): read-only routes whose
// bodies are made on request. Whatever a client sends, it is bounded: a fixed number of threads,
// a bounded queue of connections, one request per connection, at most a few KiB read from each,
// and a deadline for the whole connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pymar::detail {

/// One GET route: `path` exactly, answered with `body()` as `content_type`.
struct HttpRoute {
  std::string path;
  std::string content_type;
  std::function<std::string()> body;
};

struct HttpLimits {
  std::size_t threads = 2;                    ///< connections served at once
  std::size_t pending = 32;                   ///< accepted connections waiting for a thread
  std::size_t request_bytes = 16384;          ///< read from one connection, headers included
  std::chrono::milliseconds deadline{10000};  ///< a connection's whole life
};

/// Serves `routes` on host:port (port 0: a free one) from threads of its own, from construction
/// to destruction. Bound to loopback, it answers only requests whose Host header names loopback,
/// so that a web page elsewhere cannot read it through DNS rebinding.
class HttpServer {
 public:
  /// Binds and starts serving. Throws pymar::Error when the address cannot be bound.
  HttpServer(const std::string& host, unsigned port, std::vector<HttpRoute> routes,
             HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  std::uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pymar::detail
