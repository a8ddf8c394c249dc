#include "observe/endpoints.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/log.hpp"
#include "observe/http_module.hpp"
#include "observe/render.hpp"
#include "pymar/error.hpp"
#include "pymar/version.hpp"

namespace pymar::detail {
namespace {

/// The module, or why there is none: loaded at most once per process, on first use.
struct LoadedModule {
  const HttpModule* module = nullptr;
  std::string unavailable;
};

#ifdef PYMAR_HTTP_MODULE
/// Where the module is looked for: only $PYMAR_HTTP_MODULE_DIR when set; otherwise LIBDIR/pymar
/// beside the libpymar this code runs from (installed), that folder itself (the build tree),
/// and the folder meson installs it in (libpymar linked statically).
std::vector<std::string> module_folders() {
  if (const char* dir = std::getenv("PYMAR_HTTP_MODULE_DIR"); dir != nullptr && *dir != '\0') {
    return {dir};
  }
  std::vector<std::string> folders;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&http_unavailable), &info) != 0 && info.dli_fname) {
    const std::filesystem::path here = std::filesystem::path(info.dli_fname).parent_path();
    folders.push_back((here / "pymar").string());
    folders.push_back(here.string());
  }
#ifdef PYMAR_HTTP_MODULE_INSTALL_DIR
  folders.emplace_back(PYMAR_HTTP_MODULE_INSTALL_DIR);
#endif
  return folders;
}
#endif

LoadedModule load_module() {
#ifdef PYMAR_HTTP_MODULE
  const std::vector<std::string> folders = module_folders();
  for (const std::string& folder : folders) {
    const std::string path = (std::filesystem::path(folder) / kHttpModuleFile).string();
    std::error_code ignored;
    if (!std::filesystem::exists(path, ignored)) continue;
    // Never closed: its servers' threads may run until the process exits.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      return {nullptr, fmt::format("cannot load the HTTP module {}: {}", path,
                                   why != nullptr ? why : "unknown error")};
    }
    using Entry = const HttpModule* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(handle, kHttpModuleEntry));
    const HttpModule* module = entry != nullptr ? entry() : nullptr;
    if (module == nullptr || module->abi != kHttpModuleAbi ||
        std::string_view(module->version) != pymar::version()) {
      return {nullptr,
              fmt::format("the HTTP module {} does not belong to this libpymar (version {})", path,
                          pymar::version())};
    }
    return {module, {}};
  }
  return {nullptr, fmt::format("the HTTP module {} is missing (looked in {}); it is installed "
                               "with the library when built with -Dhttp=enabled",
                               kHttpModuleFile, fmt::join(folders, ", "))};
#else
  return {nullptr, "built without HTTP support (meson -Dhttp=enabled)"};
#endif
}

const LoadedModule& loaded_module() {
  static const LoadedModule loaded = load_module();
  return loaded;
}

}  // namespace

std::string http_unavailable() {
  return loaded_module().unavailable;
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
  const HttpModule* module = loaded_module().module;
  if (module == nullptr) throw Error(loaded_module().unavailable);
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
    std::string error;
    HttpServer* server = module->start(address.host, address.port, std::move(routes), &error);
    if (server == nullptr) throw Error(error);
    servers_.emplace_back(server, StopServer{module->stop});
    return module->port(server);
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
}

ObservationEndpoints::~ObservationEndpoints() = default;

}  // namespace pymar::detail
