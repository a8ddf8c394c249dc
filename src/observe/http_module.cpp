// The HTTP module's entry point: the table libpymar finds with dlsym (observe/endpoints.cpp).
#include "observe/http_module.hpp"

#include <exception>
#include <utility>

#include "pymar/version.hpp"

namespace pymar::detail {
namespace {

HttpServer* start(const std::string& host, unsigned port, std::vector<HttpRoute> routes,
                  std::string* error) {
  try {
    return new HttpServer(host, port, std::move(routes));
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
}

std::uint16_t port(const HttpServer* server) {
  return server->port();
}

void stop(HttpServer* server) {
  delete server;
}

constexpr HttpModule kModule{kHttpModuleAbi, pymar::version(), &start, &port, &stop};

}  // namespace
}  // namespace pymar::detail

extern "C" __attribute__((visibility("default"))) const pymar::detail::HttpModule*
pymar_http_module() {
  return &pymar::detail::kModule;
}
