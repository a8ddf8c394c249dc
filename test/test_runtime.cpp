// Who owns what `map` runs on: pymar::main owns the producer's runtime for the run, runtimes nest,
// and a program without one computes locally.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include <pymar/pymar.hpp>

#include "common/build_id.hpp"
#include "producer/runtime.hpp"

namespace {

struct Count : pymar::DataSource {
  struct Params {
    std::size_t length = 0;
    MSGPACK_DEFINE(length)
  };
  explicit Count(Params) {}
  static std::size_t full_length(const Params& p) { return p.length; }
  auto items() const { return indices(); }
};

struct Tripler : pymar::Producer<Tripler> {
  static constexpr std::size_t WORKERS_NUMBER = 3;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto x) { return 3 * static_cast<long>(x); });
  }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};

/// Where the job of `Tripler` over 10 elements was computed: "local mode" (no dispatcher), "no
/// workers" (a dispatcher found none within its grace period).
std::string where_computed() {
  const auto [value, stats] = Tripler().map_with_stats(pymar::factory<Count>({10}));
  CHECK(value == 135);
  return stats.local_reason;
}

/// Whether a TCP socket can listen on 127.0.0.1:port (SO_REUSEADDR: connections of the past
/// waiting out TIME_WAIT do not count, a listener does). Port 0: a free port, returned.
std::optional<std::uint16_t> listen_once(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  socklen_t size = sizeof address;
  std::optional<std::uint16_t> bound;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::listen(fd, 1) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0) {
    bound = ntohs(address.sin_port);
  }
  ::close(fd);
  return bound;
}

pymar::detail::DispatcherOptions loopback_options() {
  pymar::detail::DispatcherOptions options;
  options.bind = "tcp://127.0.0.1:*";
  options.grace = std::chrono::milliseconds(50);
  options.ring_doorbells = false;
  options.scheduler.build = pymar::detail::build_fingerprint();
  return options;
}

}  // namespace

REGISTER_PRODUCER(Tripler);
REGISTER_DATASOURCE(Count);

TEST_CASE("pymar::main owns the producer's runtime: map runs on it, its port closes with main" *
          doctest::timeout(60)) {
  const std::optional<std::uint16_t> port = listen_once(0);
  REQUIRE(port.has_value());
  const std::string queue = "127.0.0.1:" + std::to_string(*port);
  std::vector<std::string> arguments{"unit_tests", "--produce", "-q",      queue,
                                     "--grace",    "0.05",      "--quiet", "--no-progress"};
  std::vector<char*> argv;
  for (std::string& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The producer blocks SIGINT and SIGTERM for its dispatcher's signalfd: give them back after.
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  bool ran = false;
  const int status = pymar::main(static_cast<int>(arguments.size()), argv.data(), [&] {
    ran = true;
    CHECK_FALSE(listen_once(*port).has_value());  // main's dispatcher listens there
    CHECK(where_computed() == "no workers");      // map went through it
    {
      const pymar::detail::Runtime local(false);
      CHECK(where_computed() == "local mode");  // the runtime made last is the one in use
    }
    CHECK(where_computed() == "no workers");  // and main's again once it ends
  });
  pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  CHECK(ran);
  CHECK(status == 0);
  CHECK(listen_once(*port).has_value());    // the port is free: main's runtime ended with it
  CHECK(where_computed() == "local mode");  // and map no longer goes anywhere near it
}

TEST_CASE("runtimes destroyed out of order leave the one made last in use" * doctest::timeout(60)) {
  auto first = std::make_unique<pymar::detail::Runtime>(loopback_options());
  const std::uint16_t first_port = first->dispatcher()->port();
  auto second = std::make_unique<pymar::detail::Runtime>(false);
  auto third = std::make_unique<pymar::detail::Runtime>(loopback_options());
  const std::uint16_t third_port = third->dispatcher()->port();
  CHECK(where_computed() == "no workers");
  second.reset();  // from the middle of the chain
  CHECK(where_computed() == "no workers");
  third.reset();
  CHECK(listen_once(third_port).has_value());
  CHECK(where_computed() == "no workers");  // the first's dispatcher, still listening
  CHECK_FALSE(listen_once(first_port).has_value());
  first.reset();
  CHECK(listen_once(first_port).has_value());
  CHECK(where_computed() == "local mode");
}

TEST_CASE("a runtime ends only after the map calls running on it have returned" *
          doctest::timeout(60)) {
  pymar::detail::DispatcherOptions options = loopback_options();
  options.grace = std::chrono::milliseconds(300);  // the job waits this long for a worker
  auto runtime = std::make_unique<pymar::detail::Runtime>(options);
  pymar::detail::Dispatcher& dispatcher = *runtime->dispatcher();
  (void)dispatcher.observe();  // snapshots from now on, the job's start among them
  long value = 0;
  std::string where;
  std::thread caller([&] {
    auto [v, stats] = Tripler().map_with_stats(pymar::factory<Count>({10}));
    value = v;
    where = stats.local_reason;
  });
  while (dispatcher.observe_fresh(std::chrono::milliseconds(500))->jobs_started == 0) {
  }
  runtime.reset();  // while the job waits for a worker on the other thread
  caller.join();
  CHECK(value == 135);
  CHECK(where == "no workers");
}
