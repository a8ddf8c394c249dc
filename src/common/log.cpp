#include "common/log.hpp"

#include <memory>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace pymar::detail {

void init_logging(std::string_view role, bool verbose) {
  const std::string name(role);
  spdlog::drop(name);  // a pool's worker process re-initialises under its own role
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("%H:%M:%S.%f %n[%P] %^%l%$: %v");
  logger->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  logger->flush_on(spdlog::level::debug);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace pymar::detail
