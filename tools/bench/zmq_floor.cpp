// ZeroMQ floors: what the sockets alone cost between two processes over TCP loopback, with the
// same socket types as Pymar (the parent binds a ROUTER, the child connects a DEALER).
//
//   bench_zmq_floor rtt ITERATIONS       64-byte round trips; prints "BENCH rtt_us X" (median)
//   bench_zmq_floor bulk REPS MEGABYTES  one message of that size, sent zero-copy and copied,
//                                        alternately; the child acknowledges each once received.
//                                        Prints "BENCH bulk_zero_copy_ms X" and
//                                        "BENCH bulk_copy_ms X" per repetition.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

namespace {

using Clock = std::chrono::steady_clock;

double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The child: connects a DEALER, says hello, then answers every message with a message of
// `echo` bytes (0: the same bytes back) until it receives an empty one.
int run_child(int port_pipe, bool echo_back) {
  std::uint16_t port = 0;
  if (::read(port_pipe, &port, sizeof port) != sizeof port) return 1;
  zmq::context_t context(1);
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(fmt::format("tcp://127.0.0.1:{}", port));
  (void)dealer.send(zmq::str_buffer("hello"));
  while (true) {
    zmq::message_t message;
    if (!dealer.recv(message)) return 1;
    if (message.size() == 0) return 0;
    if (echo_back) {
      (void)dealer.send(message, zmq::send_flags::none);
    } else {
      (void)dealer.send(zmq::str_buffer("ok"));
    }
  }
}

// Pins the calling process (and the threads it starts afterwards) to one core.
void pin_to(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  sched_setaffinity(0, sizeof set, &set);
}

struct Peer {
  zmq::context_t context{1};
  zmq::socket_t router{context, zmq::socket_type::router};
  zmq::message_t identity;
  pid_t child = -1;

  explicit Peer(bool echo_back) {
    int fds[2];
    if (::pipe(fds) != 0) std::exit(1);
    // BENCH_PIN=cross puts the two processes on different cores, BENCH_PIN=same on one.
    const char* pin = std::getenv("BENCH_PIN");
    const std::string_view placement = pin ? pin : "";
    child = fork();
    if (child == 0) {
      if (placement == "cross" || placement == "same") pin_to(placement == "cross" ? 1 : 0);
      ::close(fds[1]);
      std::_Exit(run_child(fds[0], echo_back));
    }
    if (placement == "cross" || placement == "same") pin_to(0);
    ::close(fds[0]);
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
    const auto port =
        static_cast<std::uint16_t>(std::stoul(endpoint.substr(endpoint.rfind(':') + 1)));
    if (::write(fds[1], &port, sizeof port) != sizeof port) std::exit(1);
    ::close(fds[1]);
    zmq::message_t hello;
    (void)router.recv(identity);
    (void)router.recv(hello);
  }

  void send(zmq::message_t& body) {
    zmq::message_t to;
    to.copy(identity);
    (void)router.send(to, zmq::send_flags::sndmore);
    (void)router.send(body, zmq::send_flags::none);
  }

  void receive(zmq::message_t& body) {
    zmq::message_t from;
    (void)router.recv(from);
    (void)router.recv(body);
  }

  ~Peer() {
    zmq::message_t stop;
    send(stop);
    int status = 0;
    waitpid(child, &status, 0);
  }
};

int round_trips(int iterations) {
  Peer peer(true);
  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(iterations));
  const std::string payload(64, 'x');
  for (int i = -iterations / 10; i < iterations; ++i) {  // the first tenth warms up
    zmq::message_t out(payload.data(), payload.size());
    zmq::message_t back;
    const Clock::time_point start = Clock::now();
    peer.send(out);
    peer.receive(back);
    const double us = micros(Clock::now() - start);
    if (back.size() != payload.size()) return 1;
    if (i >= 0) times.push_back(us);
  }
  std::sort(times.begin(), times.end());
  fmt::print("BENCH rtt_us {:.3f}\n", times[times.size() / 2]);
  fmt::print("BENCH rtt_p90_us {:.3f}\n", times[times.size() * 9 / 10]);
  return 0;
}

int bulk(int reps, std::size_t megabytes) {
  Peer peer(false);
  const std::size_t size = megabytes * 1'000'000;
  std::vector<char> data(size);
  for (std::size_t i = 0; i < size; i += 4096) data[i] = static_cast<char>(i);
  for (int rep = -1; rep < reps; ++rep) {  // the first round warms up
    for (const bool zero_copy : {true, false}) {
      const Clock::time_point start = Clock::now();
      zmq::message_t message;
      if (zero_copy) {
        message = zmq::message_t(data.data(), data.size(), nullptr, nullptr);  // never freed
      } else {
        message = zmq::message_t(data.data(), data.size());  // copied into the message
      }
      peer.send(message);
      zmq::message_t ack;
      peer.receive(ack);
      const double ms = micros(Clock::now() - start) / 1000;
      if (rep >= 0) fmt::print("BENCH bulk_{}_ms {:.3f}\n", zero_copy ? "zero_copy" : "copy", ms);
    }
  }
  return 0;
}

int usage() {
  fmt::print(stderr, "usage: bench_zmq_floor rtt ITERATIONS | bulk REPS MEGABYTES\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string_view mode = argv[1];
  if (mode == "rtt") return round_trips(std::max(1, std::atoi(argv[2])));
  if (mode == "bulk" && argc > 3) {
    return bulk(std::max(1, std::atoi(argv[2])), static_cast<std::size_t>(std::atoi(argv[3])));
  }
  return usage();
}
