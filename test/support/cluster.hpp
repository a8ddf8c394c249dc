// An in-process cluster: a dispatcher on a loopback port and N workers on threads, so that a
// test can run `map` over 1, 2 or several workers without starting processes.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <memory>
#include <thread>
#include <vector>

#include "common/build_id.hpp"
#include "producer/dispatcher.hpp"
#include "producer/runtime.hpp"
#include "worker/worker.hpp"

namespace pymar::test {

class LocalCluster {
 public:
  explicit LocalCluster(unsigned workers,
                        std::chrono::milliseconds grace = std::chrono::seconds(30)) {
    detail::DispatcherOptions options;
    options.bind = "tcp://127.0.0.1:*";
    options.grace = grace;
    options.scheduler.build = detail::build_fingerprint();
    options.scheduler.heartbeat = std::chrono::milliseconds(100);
    options.scheduler.liveness = std::chrono::milliseconds(2000);
    dispatcher_ = std::make_unique<detail::Dispatcher>(options);
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    worker_options_.endpoint = dispatcher_->endpoint();
    worker_options_.heartbeat = std::chrono::milliseconds(100);
    worker_options_.liveness = std::chrono::milliseconds(2000);
    worker_options_.stop_fd = stop_fd_;
    for (unsigned i = 0; i < workers; ++i) {
      threads_.emplace_back([this] { detail::run_worker(worker_options_); });
    }
    detail::use_dispatcher(dispatcher_.get());
  }

  ~LocalCluster() {
    detail::use_dispatcher(nullptr);
    const std::uint64_t stop = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &stop, sizeof stop);  // stays readable
    for (std::thread& t : threads_) t.join();
    dispatcher_.reset();
    ::close(stop_fd_);
  }

  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  detail::Dispatcher& dispatcher() { return *dispatcher_; }

 private:
  std::unique_ptr<detail::Dispatcher> dispatcher_;
  detail::WorkerOptions worker_options_;
  int stop_fd_ = -1;
  std::vector<std::thread> threads_;
};

}  // namespace pymar::test
