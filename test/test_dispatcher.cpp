// The dispatcher's construction: what it holds is released on every way out, a throw included;
// the threads it starts pass messages with a short time slice, and its caller's is left as it was.
#include <doctest/doctest.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "common/time_slice.hpp"
#include "producer/dispatcher.hpp"
#include "pymar/error.hpp"

using namespace pymar::detail;

namespace {

std::size_t open_descriptors() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++count;
  return count;
}

std::set<int> own_threads() {
  std::set<int> tids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    tids.insert(std::stoi(entry.path().filename()));
  }
  return tids;
}

int own_tid() {
  return static_cast<int>(::syscall(SYS_gettid));
}

}  // namespace

TEST_CASE("a dispatcher that cannot bind its port throws and leaves no descriptor open") {
  zmq::context_t context;
  zmq::socket_t squatter(context, zmq::socket_type::router);
  squatter.bind("tcp://127.0.0.1:*");
  const std::string taken = squatter.get(zmq::sockopt::last_endpoint);

  DispatcherOptions options;
  options.bind = taken;
  options.ring_doorbells = false;
  const std::size_t before = open_descriptors();
  for (int attempt = 0; attempt < 3; ++attempt) {
    CHECK_THROWS_AS(Dispatcher{options}, pymar::Error);
  }
  CHECK(open_descriptors() == before);
}

TEST_CASE("a dispatcher's threads get the messaging time slice; its caller keeps its own") {
  std::thread([] {
    // A caller with a slice of its own: the dispatcher must give it back, not the default.
    if (!request_time_slice(2 * kMessagingSliceNs) ||
        time_slice_of(own_tid()) != 2 * kMessagingSliceNs) {
      MESSAGE("skipped: this kernel keeps no time slice per thread");
      return;
    }
    const std::set<int> before = own_threads();
    DispatcherOptions options;
    options.bind = "tcp://127.0.0.1:*";
    options.ring_doorbells = false;
    Dispatcher dispatcher(options);
    CHECK(time_slice_of(own_tid()) == 2 * kMessagingSliceNs);
    std::size_t started = 0;
    for (int tid : own_threads()) {
      if (before.contains(tid)) continue;
      ++started;
      CAPTURE(tid);
      CHECK(time_slice_of(tid) == kMessagingSliceNs);
    }
    CHECK(started >= 3);  // the dispatcher's thread and libzmq's I/O and reaper threads
  }).join();
}
