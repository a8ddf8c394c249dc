// The dispatcher's construction: what it holds is released on every way out, a throw included.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include <zmq.hpp>

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
