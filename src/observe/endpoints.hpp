// --metrics and --dashboard: the producer's HTTP endpoints, as the command line starts them.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "producer/observation.hpp"

namespace pymar::detail {

/// Empty when --metrics and --dashboard can be served; otherwise why not (built without HTTP, or
/// its module missing or broken). The first call loads the HTTP module (observe/http_module.hpp).
std::string http_unavailable();

struct HttpAddress {
  std::string host = "127.0.0.1";
  unsigned port = 0;
};

/// "[ADDR:]PORT" (loopback when ADDR is missing; port 0 picks a free one). Throws
/// std::invalid_argument saying what is wrong.
HttpAddress parse_http_address(const std::string& text);

class HttpServer;

/// Stops a server the HTTP module started (its destructor lives in the module).
struct StopServer {
  void (*stop)(HttpServer*);
  void operator()(HttpServer* server) const { stop(server); }
};

/// The servers of --metrics and --dashboard (one when both name the same address), serving
/// snapshots from `observe` on threads of their own until destroyed.
class ObservationEndpoints {
 public:
  /// Binds each address and logs its URL. Throws pymar::Error when one cannot be bound.
  ObservationEndpoints(const std::optional<HttpAddress>& metrics,
                       const std::optional<HttpAddress>& dashboard,
                       std::function<std::shared_ptr<const Observation>()> observe);
  ~ObservationEndpoints();
  ObservationEndpoints(const ObservationEndpoints&) = delete;
  ObservationEndpoints& operator=(const ObservationEndpoints&) = delete;

 private:
  std::vector<std::unique_ptr<HttpServer, StopServer>> servers_;
};

}  // namespace pymar::detail
