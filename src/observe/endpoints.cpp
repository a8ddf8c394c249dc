#include "observe/endpoints.hpp"

#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"
#include "observe/render.hpp"
#include "pymar/error.hpp"

#ifdef PYMAR_HAVE_HTTP
#include "observe/http_server.hpp"
#else
namespace pymar::detail {
class HttpServer {};  // never made: the command line refuses the flags first
}  // namespace pymar::detail
#endif

namespace pymar::detail {

bool http_supported() {
#ifdef PYMAR_HAVE_HTTP
  return true;
#else
  return false;
#endif
}

HttpAddress parse_http_address(const std::string& text) {
  HttpAddress address;
  const auto colon = text.rfind(':');
  std::string port = text;
  if (colon != std::string::npos) {
    address.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (address.host.empty()) throw std::invalid_argument("no address before ':'");
  }
  std::size_t used = 0;
  unsigned long value = 0;
  try {
    value = std::stoul(port, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (port.empty() || used != port.size() || value > 65535) {
    throw std::invalid_argument(fmt::format("port '{}' is not a number from 0 to 65535", port));
  }
  address.port = static_cast<unsigned>(value);
  return address;
}

ObservationEndpoints::ObservationEndpoints(
    const std::optional<HttpAddress>& metrics, const std::optional<HttpAddress>& dashboard,
    std::function<std::shared_ptr<const Observation>()> observe) {
#ifdef PYMAR_HAVE_HTTP
  // The producer keeps snapshots only once someone has asked: ask now, so that a job that ends
  // before the first request is still there for it (as the last job).
  observe();
  auto metrics_route = [observe] {
    return HttpRoute{"/metrics", "text/plain; version=0.0.4; charset=utf-8",
                     [observe] { return prometheus_text(*observe()); }};
  };
  auto dashboard_routes = [observe] {
    return std::vector<HttpRoute>{
        {"/", "text/html; charset=utf-8", [] { return std::string(dashboard_page()); }},
        {"/api/state", "application/json", [observe] { return dashboard_state_json(*observe()); }}};
  };
  auto start = [&](const HttpAddress& address, std::vector<HttpRoute> routes) {
    servers_.push_back(std::make_unique<HttpServer>(address.host, address.port, std::move(routes)));
    return servers_.back()->port();
  };
  const bool shared = metrics && dashboard && metrics->host == dashboard->host &&
                      metrics->port == dashboard->port && metrics->port != 0;
  if (shared) {
    std::vector<HttpRoute> routes = dashboard_routes();
    routes.push_back(metrics_route());
    const auto port = start(*metrics, std::move(routes));
    spdlog::info("metrics on http://{}:{}/metrics, dashboard on http://{}:{}/", metrics->host, port,
                 metrics->host, port);
    return;
  }
  if (metrics) {
    const auto port = start(*metrics, {metrics_route()});
    spdlog::info("metrics on http://{}:{}/metrics", metrics->host, port);
  }
  if (dashboard) {
    const auto port = start(*dashboard, dashboard_routes());
    spdlog::info("dashboard on http://{}:{}/", dashboard->host, port);
  }
#else
  (void)metrics;
  (void)dashboard;
  (void)observe;
  throw Error("built without HTTP support (meson -Dhttp=enabled)");
#endif
}

ObservationEndpoints::~ObservationEndpoints() = default;

}  // namespace pymar::detail
