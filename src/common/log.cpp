#include "common/log.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace pymar::detail {
namespace {

/// Forwards log lines to the colour sink, first erasing the live line and then drawing it again,
/// so that the two never mix on a terminal.
class LiveLineSink final : public spdlog::sinks::sink {
 public:
  LiveLineSink() : inner_(std::make_shared<spdlog::sinks::stderr_color_sink_mt>()) {}

  void log(const spdlog::details::log_msg& message) override {
    std::lock_guard lock(mutex_);
    erase();
    inner_->log(message);
    inner_->flush();
    draw();
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }

  void show(std::string_view text) {
    std::lock_guard lock(mutex_);
    erase();
    line_.assign(text.substr(0, width() - 1));
    draw();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    erase();
    line_.clear();
  }

 private:
  void erase() {
    if (!line_.empty()) std::fputs("\r\033[K", stderr);
  }
  void draw() {
    if (line_.empty()) return;
    std::fputs(line_.c_str(), stderr);
    std::fflush(stderr);
  }
  static std::size_t width() {
    winsize size{};
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 20) return size.ws_col;
    return 80;
  }

  std::shared_ptr<spdlog::sinks::stderr_color_sink_mt> inner_;
  std::mutex mutex_;
  std::string line_;
};

std::shared_ptr<LiveLineSink>& the_sink() {
  static auto sink = std::make_shared<LiveLineSink>();
  return sink;
}

}  // namespace

void init_logging(std::string_view role, int verbosity) {
  const std::string name(role);
  spdlog::drop(name);  // a pool's worker process re-initialises under its own role
  auto logger = std::make_shared<spdlog::logger>(name, the_sink());
  logger->set_pattern("%H:%M:%S.%f %n[%P] %^%l%$: %v");
  logger->set_level(verbosity < 0    ? spdlog::level::warn
                    : verbosity == 0 ? spdlog::level::info
                    : verbosity == 1 ? spdlog::level::debug
                                     : spdlog::level::trace);
  logger->flush_on(spdlog::level::trace);
  spdlog::register_logger(logger);
  spdlog::set_default_logger(std::move(logger));
}

namespace live_line {
void show(std::string_view text) {
  the_sink()->show(text);
}
void clear() {
  the_sink()->clear();
}
}  // namespace live_line

}  // namespace pymar::detail
