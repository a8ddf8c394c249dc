// An in-process cluster: a runtime whose dispatcher listens on a loopback port and N workers on
// threads, so that a test can run `map` over 1, 2 or several workers without starting processes.
// `map` runs on the cluster while it lives (see detail::Runtime).
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <zmq.hpp>

#include "common/build_id.hpp"
#include "producer/runtime.hpp"
#include "wire/protocol.hpp"
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
    // Long: no test here gives a worker up, and a worker thread starved on a busy host (or
    // under a sanitizer) must not be, or its count of slices in STATUS would go with it.
    options.scheduler.liveness = std::chrono::milliseconds(10000);
    runtime_ = std::make_unique<detail::Runtime>(options);
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    worker_options_.endpoint = runtime_->dispatcher()->endpoint();
    worker_options_.heartbeat = std::chrono::milliseconds(100);
    worker_options_.liveness = std::chrono::milliseconds(10000);
    worker_options_.stop_fd = stop_fd_;
    for (unsigned i = 0; i < workers; ++i) {
      threads_.emplace_back([this] { detail::run_worker(worker_options_); });
    }
  }

  ~LocalCluster() {
    const std::uint64_t stop = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &stop, sizeof stop);  // stays readable
    for (std::thread& t : threads_) t.join();
    runtime_.reset();
    ::close(stop_fd_);
  }

  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  detail::Dispatcher& dispatcher() { return *runtime_->dispatcher(); }
  /// The slices the producer counts as returned by workers, over every job so far, from its
  /// STATUS answer: its own record of who computed what. A job computed locally adds nothing.
  std::uint64_t slices_from_workers() const {
    zmq::context_t context;
    zmq::socket_t asker(context, zmq::socket_type::dealer);
    asker.set(zmq::sockopt::linger, 0);
    asker.connect(runtime_->dispatcher()->endpoint());
    const std::string query = wire::encode(wire::StatusQuery{});
    (void)asker.send(zmq::buffer(query), zmq::send_flags::none);
    zmq::pollitem_t item{asker.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::seconds(30)) == 0) {
      throw std::runtime_error("the producer did not answer a status query");
    }
    zmq::message_t answer;
    (void)asker.recv(answer);
    const auto status = std::get<wire::Status>(wire::decode(answer.to_string_view(), 0));
    std::uint64_t slices = 0;
    for (const wire::WorkerStatus& w : status.workers) slices += w.slices_done;
    return slices;
  }

 private:
  std::unique_ptr<detail::Runtime> runtime_;
  detail::WorkerOptions worker_options_;
  int stop_fd_ = -1;
  std::vector<std::thread> threads_;
};

}  // namespace pymar::test
