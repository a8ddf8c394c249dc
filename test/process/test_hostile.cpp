// Hostile and broken input on real sockets: the test process plays the hostile peer of a real
// producer (a DEALER or a raw TCP connection at its port) or of a real worker pool (a ROUTER the
// pool connects to, as a fake producer). Whatever it sends, the processes keep running, log each
// kind of problem a bounded number of times, and a proper job still gets the exact answer.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <pymar/codec.hpp>
#include <pymar/version.hpp>

#include "support/process.hpp"
#include "wire/protocol.hpp"

using namespace pymar::test;

namespace {

namespace wire = pymar::wire;
using Frames = std::vector<std::string>;

// How many of each kind of bad message a test sends: enough to see a log flood.
constexpr int kFlood = 300;

// The most log lines `count` bad messages may cause: a line for the first few and then one each
// time the count doubles is fine; one per message is a flood.
std::size_t few_lines(int count) {
  return static_cast<std::size_t>(std::log2(count)) + 3;
}

// Each kind of problem a message can have (wire::ProtocolError::Kind: oversized, not a message,
// another version, wrong shape, wrong payload frames) is reported on its own, so a mix of them
// may cause that many times a few lines.
constexpr int kProblemKinds = 5;

std::string queue(unsigned port) {
  return "127.0.0.1:" + std::to_string(port);
}

std::unique_ptr<Process> start_pool(unsigned port, unsigned workers,
                                    std::vector<std::string> extra = {},
                                    std::vector<std::pair<std::string, std::string>> env = {}) {
  std::vector<std::string> argv = {binary("test/test_task"), "--worker", "-q", queue(port), "-w",
                                   std::to_string(workers)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, env);
}

// A producer of TEST_JOB=doubled over 1000 elements in 16 slices: the answer is 999000. With
// `slow`, slice 0 takes 1.5 s the first time, so that the job is still running while a test
// throws things at it.
std::unique_ptr<Process> start_producer(unsigned port, bool slow = true,
                                        std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {
      binary("test/test_task"), "--produce", "-q", queue(port), "--grace", "60"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::vector<std::pair<std::string, std::string>> env = {
      {"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}, {"TEST_PARTS", "16"}};
  if (slow) {
    env.insert(env.end(),
               {{"TEST_SLOW_AT", "0"},
                {"TEST_SLOW_MS", "1500"},
                {"TEST_SLOW_MARKER", fresh_temp_path("pymar-hostile-" + std::to_string(port))}});
  }
  return std::make_unique<Process>(argv, env);
}

const std::string kAnswer = "999000";

// Waits for the producer to finish and returns what it printed after "Answer: ".
std::string answer_of(Process& producer) {
  const auto status = producer.wait();
  INFO("producer stderr:\n" << producer.err());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  const auto answer = line_after(producer.out(), "Answer: ");
  REQUIRE(answer.has_value());
  return *answer;
}

// Waits until the producer has started its job and is waiting for workers.
void wait_for_job(Process& producer) {
  REQUIRE(producer.wait_for_stderr("job 1: .* 0 worker\\(s\\) connected"));
}

// The build fingerprint the producer runs, from its "listening on ... (build X)" line.
std::string build_of(Process& producer) {
  const auto line = producer.wait_for_stderr("listening on .* \\(build [^)]+\\)");
  REQUIRE(line.has_value());
  const std::size_t start = line->rfind("(build ") + 7;
  return line->substr(start, line->find(')', start) - start);
}

// A msgpack array of `fields`, as a header of any shape.
template <class... Fields>
std::string pack(const Fields&... fields) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(sizeof...(fields));
  (p.pack(fields), ...);
  return std::string(buffer.data(), buffer.size());
}

std::string random_bytes(std::mt19937_64& random, std::size_t max_size) {
  std::string out(std::uniform_int_distribution<std::size_t>(0, max_size)(random), '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

// (Without <regex>, which GCC 12 warns about under the sanitizers.)
std::string escape_regex(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// Stops a pool and waits until everything it logged has been read, so that counts are final.
void stop(Process& pool) {
  pool.signal(SIGTERM);
  CHECK(pool.wait(60s).has_value());
}

// --- kinds of bad messages -----------------------------------------------------------------

// Each returns the frames of the i-th bad message of its kind (the header first).
using BadMessage = std::function<Frames(std::mt19937_64&, int)>;

struct Kind {
  std::string name;
  /// What the receiver's log lines say about these messages (regexes): each must be logged.
  std::vector<std::string> logged;
  BadMessage make;
  int count = kFlood;  ///< how many to send
};

wire::Ready sample_ready(const std::string& build) {
  wire::Ready r;
  r.build = build;
  r.task = "test_task";
  r.host = "hostile";
  r.pid = 4242;
  r.credit = 2;
  r.producers = {"DoubleSum<16>"};
  r.sources = {"Scripted"};
  return r;
}

wire::Result sample_result() {
  wire::Result r;
  r.job = {12345, 1};
  r.batch = 7;
  r.outcomes = {{0, true, 1000, 1, "", ""}, {1, false, 10, 0, "std::domain_error", "no"}};
  return r;
}

wire::Assign sample_assign() {
  wire::Assign a;
  a.job = {1, 1};
  a.batch = 1;
  a.producer = "DoubleSum<4>";
  a.source = "Scripted";
  a.params = pymar::encode(std::make_tuple(std::uint64_t{10}, -1, -1, "", -1, 0, 0, "", false));
  a.slices = {{0, 0, 10}};
  return a;
}

// An encoding cut short: every prefix of a valid header is malformed.
Frames truncated(const std::string& header, int i) {
  return {header.substr(0, static_cast<std::size_t>(i) % header.size())};
}

// Headers whose lengths claim far more than the frame holds.
std::string forged_length(int i) {
  const std::string v = pack(pymar::protocol_version());
  switch (i % 6) {
    case 0:  // [1, 3, array32 of 2^32 - 1 elements]
      return std::string("\x93\x01\x03\xdd\xff\xff\xff\xff", 8);
    case 1:  // a str32 of 4 GiB
      return std::string(
          "\x93\x01\x01\xdb\xff\xff\xff\xff"
          "abc",
          11);
    case 2:  // a bin32 of 4 GiB
      return std::string(
          "\x93\x01\x02\xc6\xff\xff\xff\xff"
          "abc",
          11);
    case 3:  // an array32 header of 2^32 - 1 fields
      return std::string("\xdd\xff\xff\xff\xff\x01\x01", 7);
    case 4:  // nested arrays deeper than the header allows
      return std::string(64, '\x91') + '\x01';
    default:  // a map32 of 2^32 - 1 entries
      return std::string("\xdf\xff\xff\xff\xff\x01\x01", 7);
  }
}

// Bad messages that any receiver must drop: the same for a producer and a worker.
std::vector<Kind> common_kinds(const std::string& truncatable) {
  return {
      {"random frames",
       {"header: trailing bytes after a msgpack value", "header: truncated msgpack data",
        "header: malformed msgpack data \\(map size overflow\\)"},
       [](std::mt19937_64& r, int i) {
         Frames frames;
         for (int f = 0; f <= i % 4; ++f) frames.push_back(random_bytes(r, 200));
         if (frames[0].empty()) frames[0] = "\xc1";  // never valid msgpack
         return frames;
       }},
      {"truncated headers",
       {"header: truncated msgpack data"},
       [truncatable](std::mt19937_64&, int i) { return truncated(truncatable, i); }},
      {"msgpack of the wrong shape",
       {"header: malformed msgpack data \\(map size overflow\\)", "header: not a message",
        "READY: field 3: expected a string", "HEARTBEAT: field 3: expected an unsigned integer",
        "header: unknown message type 99", "WHO: field 0: expected 2 to 2 fields, got 3"},
       [](std::mt19937_64&, int i) -> Frames {
         switch (i % 6) {
           case 0:
             return {pymar::encode(std::map<std::string, int>{{"version", 1}})};
           case 1:
             return {pymar::encode(std::string("READY"))};
           case 2:  // READY whose fields all have the wrong type
             return {pack(pymar::protocol_version(), 1, 1, 2, 3, "pid", -1, "a", "b", 0)};
           case 3:  // HEARTBEAT with a negative session
             return {pack(pymar::protocol_version(), 4, -5)};
           case 4:  // an unknown message type
             return {pack(pymar::protocol_version(), 99)};
           default:  // a header with one field too many
             return {pack(pymar::protocol_version(), 8, 0)};
         }
       }},
      {"an unknown protocol version",
       {"protocol version " + std::to_string(pymar::protocol_version() + 1) +
        " \\(this build speaks " + std::to_string(pymar::protocol_version()) + "\\)"},
       [](std::mt19937_64&, int i) -> Frames {
         return {pack(pymar::protocol_version() + 1, 1 + i % 8, "from", "the", "future")};
       }},
      {"forged lengths",
       // (Logged at the 1st, 2nd, 3rd, 4th, 8th... of 300: cases 0 to 3 of forged_length. A
       // string or binary longer than its frame is found truncated before its length is
       // weighed.)
       {"header: malformed msgpack data \\(array size overflow\\)",
        "header: truncated msgpack data"},
       [](std::mt19937_64&, int i) -> Frames { return {forged_length(i)}; }},
      {"a header over 1 MiB",
       {"header of 1048[0-9]{3} bytes exceeds the limit"},
       [](std::mt19937_64&, int) -> Frames {
         // A well-formed BYE whose reason makes the header 1 MiB + 16 bytes.
         return {pack(pymar::protocol_version(), 5, std::string(wire::kMaxHeaderBytes + 8, 'x'))};
       },
       20},
  };
}

// --- the test as a hostile worker: a DEALER at the producer's port ---------------------------

class HostileWorker {
 public:
  HostileWorker(zmq::context_t& context, unsigned port, const std::string& identity)
      : socket_(context, zmq::socket_type::dealer), identity_(identity) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::routing_id, identity);
    socket_.connect("tcp://" + queue(port));
  }

  void send(const Frames& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const bool more = i + 1 < frames.size();
      (void)socket_.send(zmq::buffer(frames[i]),
                         more ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  /// Sends `message` with `payloads` after it. A RESULT with a frame for each successful
  /// outcome is sent as a worker may send it: each outcome's value size is its frame's.
  void send(wire::Message message, const Frames& payloads = {}) {
    if (auto* result = std::get_if<wire::Result>(&message)) {
      const auto ok = static_cast<std::size_t>(std::count_if(
          result->outcomes.begin(), result->outcomes.end(), [](const auto& o) { return o.ok; }));
      std::size_t next = 0;
      for (wire::Outcome& o : result->outcomes) {
        if (o.ok && ok == payloads.size()) o.value_bytes = payloads[next++].size();
      }
    }
    Frames frames{wire::encode(message)};
    frames.insert(frames.end(), payloads.begin(), payloads.end());
    send(frames);
  }

  /// The next message from the producer within `timeout`, with its payload frames.
  std::optional<wire::Message> receive(std::chrono::milliseconds timeout = 30s) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    frames_.clear();
    REQUIRE(zmq::recv_multipart(socket_, std::back_inserter(frames_)));
    return wire::decode(frames_[0].to_string_view(), frames_.size() - 1);
  }

  /// Waits for a message of type T. On the way it passes over messages of the types this peer
  /// was told to expect (tolerate()), counting them; any other message fails the test: a
  /// producer that sends an unregistered peer an ASSIGN, or a registered one a REFUSE, is wrong
  /// even when the test's own step succeeds.
  template <class T>
  std::optional<T> receive_a(std::chrono::milliseconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto m = receive(left);
      if (!m) return std::nullopt;
      if (auto* t = std::get_if<T>(&*m)) return *t;
      const std::string type = wire::type_name(*m);
      if (std::find(tolerated_.begin(), tolerated_.end(), type) == tolerated_.end()) {
        unexpected_.push_back(type);
        FAIL_CHECK("peer '" << identity_ << "' was sent an unexpected " << type
                            << " while waiting for "
                            << std::string(wire::type_name(wire::Message(T{}))));
      }
      ++passed_[type];
    }
  }

  /// Messages of `type` may come before the one a test waits for (HEARTBEAT to a registered
  /// peer, REFUSE to one of another version).
  void tolerate(std::string type) { tolerated_.push_back(std::move(type)); }

  /// As an unregistered peer: sends a HEARTBEAT and waits for the producer's WHO, which it
  /// sends only after handling everything this peer sent before.
  void sync() {
    send(wire::Heartbeat{0});
    REQUIRE(receive_a<wire::Who>());
  }

  /// How many messages of `type` receive_a() passed over.
  int passed(const std::string& type) const {
    const auto it = passed_.find(type);
    return it == passed_.end() ? 0 : it->second;
  }

 private:
  zmq::socket_t socket_;
  std::string identity_;
  std::vector<zmq::message_t> frames_;
  std::vector<std::string> tolerated_;
  std::vector<std::string> unexpected_;
  std::map<std::string, int> passed_;
};

// The producer's log line for garbage from `identity`.
std::string garbage_line(const std::string& identity) {
  return "dropped a malformed message from peer '" + escape_regex(identity) + "'";
}

// --- the test as a hostile producer: a ROUTER the worker pool connects to ----------------------

class FakeProducer {
 public:
  explicit FakeProducer(zmq::context_t& context) : router_(context, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router_.get(zmq::sockopt::last_endpoint);
    port_ = static_cast<unsigned>(std::stoul(endpoint.substr(endpoint.rfind(':') + 1)));
  }

  unsigned port() const { return port_; }

  /// Waits for the worker's READY and remembers who it is.
  wire::Ready wait_ready() {
    auto ready = receive_a<wire::Ready>();
    REQUIRE(ready.has_value());
    return *ready;
  }

  void send(const Frames& frames) {
    (void)router_.send(zmq::buffer(worker_), zmq::send_flags::sndmore);
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const bool more = i + 1 < frames.size();
      (void)router_.send(zmq::buffer(frames[i]),
                         more ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  void send(const wire::Message& message, const Frames& payloads = {}) {
    Frames frames{wire::encode(message)};
    frames.insert(frames.end(), payloads.begin(), payloads.end());
    send(frames);
  }

  /// The next message from the worker within `timeout`.
  std::optional<wire::Message> receive(std::chrono::milliseconds timeout = 30s) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    frames_.clear();
    REQUIRE(zmq::recv_multipart(router_, std::back_inserter(frames_)));
    REQUIRE(frames_.size() >= 2);
    worker_ = frames_[0].to_string();  // a worker that reconnects has a new identity
    return wire::decode(frames_[1].to_string_view(), frames_.size() - 2);
  }

  template <class T>
  std::optional<T> receive_a(std::chrono::milliseconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto m = receive(left);
      if (!m) return std::nullopt;
      if (auto* t = std::get_if<T>(&*m)) return *t;
    }
  }

  /// Sends a valid ASSIGN and returns the worker's RESULT for it, with the value frames. Fails
  /// if the worker process died instead (its pool's next process says READY).
  std::pair<wire::Result, Frames> compute(const wire::Assign& assign, const Frames& payloads = {}) {
    send(assign, payloads);
    return await_result(assign);
  }

  /// The worker's RESULT for an ASSIGN sent earlier, as compute().
  std::pair<wire::Result, Frames> await_result(const wire::Assign& assign) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      REQUIRE(left.count() > 0);
      auto m = receive(left);
      REQUIRE_MESSAGE(m.has_value(), "no RESULT for batch " << assign.batch);
      if (auto* ready = std::get_if<wire::Ready>(&*m); ready && ready->predecessor) {
        FAIL("the worker process died (signal " << ready->predecessor->signal << ", status "
                                                << ready->predecessor->exit_code
                                                << ") instead of answering batch " << assign.batch);
      }
      auto* result = std::get_if<wire::Result>(&*m);
      if (result == nullptr || result->batch != assign.batch) continue;  // earlier ASSIGNs
      std::vector<std::string_view> payload;
      for (std::size_t i = 2; i < frames_.size(); ++i)
        payload.push_back(frames_[i].to_string_view());
      Frames values;
      for (const std::string_view value : wire::result_values(*result, payload)) {
        values.emplace_back(value);
      }
      return {*result, values};
    }
  }

  /// A worker's identity is HOST/PID/GENERATION.
  std::string worker() const { return worker_; }

 private:
  zmq::socket_t router_;
  unsigned port_ = 0;
  std::string worker_;
  std::vector<zmq::message_t> frames_;
};

// Checks that a pool's single worker computes DoubleSum<4> over 10 elements right (90).
void check_worker_computes(FakeProducer& producer, std::uint64_t batch) {
  wire::Assign assign = sample_assign();
  assign.batch = batch;
  auto [result, values] = producer.compute(assign);
  REQUIRE(result.outcomes.size() == 1);
  INFO("outcome: " << result.outcomes[0].error_type << ": " << result.outcomes[0].error_message);
  REQUIRE(result.outcomes[0].ok);
  REQUIRE(values.size() == 1);
  CHECK(pymar::decode<std::int64_t>(values[0]) == 90);
}

std::string pid_of(const std::string& worker_identity) {
  const auto first = worker_identity.find('/');
  return worker_identity.substr(first + 1, worker_identity.rfind('/') - first - 1);
}

}  // namespace

TEST_SUITE("hostile") {
  // --- at the producer -------------------------------------------------------------------------

  TEST_CASE("random bytes over raw TCP connections do not disturb the producer" *
            doctest::timeout(120)) {
    const unsigned port = free_port();
    auto producer = start_producer(port);
    wait_for_job(*producer);  // and waiting for workers: it stays up whatever the garbage takes
    std::mt19937_64 random(20240501);
    for (int connection = 0; connection < 20; ++connection) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      REQUIRE(fd >= 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<std::uint16_t>(port));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
      std::string bytes = random_bytes(random, 64 << 10);
      if (connection % 2 == 1) {
        // A valid ZMTP 3 signature first, so that the greeting is parsed further.
        bytes = std::string("\xff\0\0\0\0\0\0\0\x01\x7f\x03\x00NULL", 16) + bytes;
      }
      std::size_t sent = 0;
      while (sent < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the producer closed the connection: fine
        sent += static_cast<std::size_t>(n);
      }
      ::close(fd);
    }
    auto pool = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(pool->running());
    INFO("producer stderr:\n" << producer->err());
    // No line logged as an error (a dropped message's reason may say "parse error").
    CHECK(producer->count_stderr("\\] error: ") == 0);
    // ZeroMQ takes a connection that does not start with a ZMTP 3 greeting for a ZMTP 1.0 peer
    // and may make messages of its bytes, each connection with an identity of its own: at most
    // one line for each.
    CHECK(producer->count_stderr("warn") <= 20);
  }

  TEST_CASE("each kind of malformed message from a peer is dropped, logged, and counted" *
            doctest::timeout(300)) {
    zmq::context_t context;
    std::mt19937_64 random(20240502);
    std::vector<Kind> kinds = common_kinds(wire::encode(sample_ready("build")));
    kinds.push_back({"messages workers do not send",
                     {"a ASSIGN message, which workers do not send",
                      "a CANCEL message, which workers do not send",
                      "a REFUSE message, which workers do not send",
                      "a WHO message, which workers do not send"},
                     [](std::mt19937_64&, int i) -> Frames {
                       switch (i % 4) {
                         case 0:
                           return {wire::encode(sample_assign())};
                         case 1:
                           return {wire::encode(wire::Cancel{{1, 1}})};
                         case 2:
                           return {wire::encode(wire::Refuse{"no"})};
                         default:
                           return {wire::encode(wire::Who{})};
                       }
                     }});
    kinds.push_back({"a READY with no credit",
                     {"credit must be at least 1"},
                     [](std::mt19937_64&, int) -> Frames {
                       wire::Ready r = sample_ready("build");
                       r.credit = 0;
                       return {wire::encode(r)};
                     }});
    kinds.push_back({"payload frames a message does not announce",
                     {"HEARTBEAT: unexpected [2-4] payload frames",
                      "RESULT: 1 value\\(s\\) in [2-4] frame\\(s\\)"},
                     [](std::mt19937_64&, int i) -> Frames {
                       Frames frames{wire::encode(wire::Heartbeat{0})};
                       if (i % 2) frames[0] = wire::encode(sample_result());  // 1 ok outcome
                       frames.resize(static_cast<std::size_t>(3 + i % 3), "payload");
                       return frames;
                     }});
    kinds.push_back({"values of other sizes than their frames hold",
                     {"RESULT: the value of slice 0 \\(9 bytes\\) is not whole in its frame",
                      "RESULT: value frames hold more than the values"},
                     [](std::mt19937_64&, int i) -> Frames {
                       wire::Result r = sample_result();  // 1 ok outcome
                       r.outcomes[0].value_bytes = 9;
                       return {wire::encode(r), std::string(i % 2 ? 12 : 4, 'v')};
                     }});
    for (const Kind& kind : kinds) {
      CAPTURE(kind.name);
      // A producer of its own for each kind, so that each is the first problem it sees.
      const unsigned port = free_port();
      auto producer = start_producer(port, false);
      wait_for_job(*producer);
      INFO("producer stderr:\n" << producer->err());
      const std::string identity = "hostile " + kind.name;
      HostileWorker peer(context, port, identity);
      if (kind.name == "an unknown protocol version") peer.tolerate("REFUSE");
      for (int i = 0; i < kind.count; ++i) peer.send(kind.make(random, i));
      peer.sync();
      for (const std::string& logged : kind.logged) {
        CAPTURE(logged);
        CHECK(producer->wait_for_stderr(garbage_line(identity) + ".*" + logged, 10s));
      }
      CHECK(producer->running());
      if (kind.name == "an unknown protocol version") {
        // A peer of another version is told why, each time.
        CHECK(peer.passed("REFUSE") == kind.count);
      }
      auto pool = start_pool(port, 2);
      CHECK(answer_of(*producer) == kAnswer);
      CHECK(pool->running());
      // Logged, but a few lines for hundreds of messages; the job's summary counts them all.
      const std::size_t lines = producer->count_stderr(garbage_line(identity));
      CHECK(lines >= 1);
      CHECK(lines <= kProblemKinds * few_lines(kind.count));
      CHECK(producer->count_stderr("job 1 dropped .* and " + std::to_string(kind.count) +
                                   " malformed message\\(s\\)") == 1);
    }
  }

  TEST_CASE("hundreds of peers each sending one malformed message do not flood the log" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_producer(port, false);
    wait_for_job(*producer);
    zmq::context_t context;
    for (int i = 0; i < kFlood; ++i) {
      HostileWorker peer(context, port, "hostile-" + std::to_string(i));
      peer.send(Frames{"\xc1"});
      peer.sync();
    }
    CHECK(producer->running());
    auto pool = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    INFO("producer stderr:\n" << producer->err());
    CHECK(producer->count_stderr("dropped a malformed message") <= few_lines(kFlood));
  }

  TEST_CASE("a peer's identity cannot forge lines in the producer's log" * doctest::timeout(120)) {
    const unsigned port = free_port();
    auto producer = start_producer(port, false);
    wait_for_job(*producer);
    zmq::context_t context;
    const std::string forged = "12:00:00.000 producer[1] error: forged by a peer";
    HostileWorker peer(context, port, "x\n" + forged + "\n\x1b[2J");
    peer.send(Frames{"\xc1"});
    peer.sync();
    auto pool = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    INFO("producer stderr:\n" << producer->err());
    CHECK(producer->count_stderr("^" + escape_regex(forged)) == 0);
    CHECK(producer->err().find('\x1b') == std::string::npos);
  }

  TEST_CASE("a peer that takes slices and never answers does not stall the job" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_producer(port, false);
    const std::string build = build_of(*producer);
    wait_for_job(*producer);
    zmq::context_t context;
    // It offers a huge credit, takes every slice it is given, and keeps itself alive with
    // heartbeats, but never computes anything.
    HostileWorker hoarder(context, port, "hostile hoarder");
    hoarder.tolerate("HEARTBEAT");  // registered: kept alive
    wire::Ready ready = sample_ready(build);
    ready.credit = 1'000'000;
    hoarder.send(ready);
    REQUIRE(hoarder.receive_a<wire::Assign>());
    auto pool = start_pool(port, 2);
    // The job takes well under a second with the pool alone.
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (producer->running() && std::chrono::steady_clock::now() < deadline) {
      (void)hoarder.receive(500ms);
      hoarder.send(wire::Heartbeat{0});
    }
    INFO("producer stderr:\n" << producer->err());
    REQUIRE_FALSE(producer->running());
    CHECK(answer_of(*producer) == kAnswer);
  }

  TEST_CASE("results from a peer the producer does not know are answered with WHO, quietly" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_producer(port);
    wait_for_job(*producer);
    zmq::context_t context;
    HostileWorker stranger(context, port, "hostile stranger");
    for (int i = 0; i < kFlood; ++i) {
      wire::Result r = sample_result();
      r.batch = static_cast<std::uint64_t>(i);
      stranger.send(r, {pymar::encode(std::int64_t{1} << 40)});
    }
    for (int i = 0; i < kFlood; ++i) REQUIRE(stranger.receive_a<wire::Who>());
    CHECK(producer->running());
    auto pool = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(pool->running());
    INFO("producer stderr:\n" << producer->err());
    CHECK(producer->count_stderr("hostile stranger") <= few_lines(kFlood));
  }

  TEST_CASE("results for a job or batch a registered peer was never given are dropped, quietly" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_producer(port);
    const std::string build = build_of(*producer);
    wait_for_job(*producer);
    zmq::context_t context;
    // A worker of the same build which serves nothing this job needs: results of another job,
    // of batches never sent, and with values that do not decode.
    HostileWorker registered(context, port, "hostile registered");
    registered.tolerate("HEARTBEAT");  // registered until its BYE
    wire::Ready ready = sample_ready(build);
    ready.producers = {"NoSuchProducer"};
    registered.send(ready);
    for (int i = 0; i < kFlood; ++i) {
      wire::Result r = sample_result();
      r.outcomes.resize(1);
      r.batch = static_cast<std::uint64_t>(i % 3 == 0 ? 1'000'000 + i : i);
      if (i % 3 == 1) r.job.seq = 7;  // another job of another producer run
      const std::string value =
          i % 2 ? pymar::encode(std::string("not a number")) : pymar::encode(std::int64_t{7});
      registered.send(r, {value});
    }
    registered.send(wire::Bye{"done"});
    registered.sync();  // unknown again after BYE: WHO comes after all of the above
    CHECK(producer->running());

    auto pool = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(pool->running());
    INFO("producer stderr:\n" << producer->err());
    CHECK(producer->count_stderr("hostile registered") <= few_lines(kFlood));
    CHECK(producer->count_stderr("job 1 dropped") == 1);
  }

  TEST_CASE("a worker pool of another build is refused in both logs, naming both builds" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_producer(port, false);
    const std::string build = build_of(*producer);
    wait_for_job(*producer);
    auto foreign = start_pool(port, 2, {}, {{"PYMAR_TEST_BUILD_ID", "another-build/9.9.9"}});

    const std::string both =
        "build another-build/9\\.9\\.9 of 'test_task'.*build " + escape_regex(build);
    REQUIRE(producer->wait_for_stderr("error.*refused worker .*" + both));
    REQUIRE(foreign->wait_for_stderr("error.*refused by the producer at .*" + both));
    REQUIRE(foreign->wait_for_stderr("error.*refused by the producer", 60s, 1));  // both workers

    // A forged READY of another build, sent hundreds of times, is refused each time and logged
    // once.
    zmq::context_t context;
    HostileWorker peer(context, port, "hostile foreign build");
    for (int i = 0; i < kFlood; ++i) peer.send(sample_ready("forged-build/0.0.1"));
    for (int i = 0; i < kFlood; ++i) {
      auto refuse = peer.receive_a<wire::Refuse>();
      REQUIRE(refuse.has_value());
      CHECK(refuse->reason.find("forged-build/0.0.1") != std::string::npos);
      CHECK(refuse->reason.find(build) != std::string::npos);
    }
    CHECK(producer->wait_for_stderr("refused worker hostile foreign build"));

    auto proper = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(foreign->running());
    CHECK(proper->running());
    INFO("producer stderr:\n" << producer->err());
    CHECK(producer->count_stderr("refused worker") == 3);
    CHECK(producer->count_stderr("refused worker hostile foreign build") == 1);
    stop(*foreign);
    CHECK(foreign->count_stderr("refused by the producer") == 2);
    CHECK(producer->count_stderr("computing .* locally") == 0);
  }

  TEST_CASE("a READY naming producers and sources the job does not use gets no slices" *
            doctest::timeout(120)) {
    const unsigned port = free_port();
    auto producer = start_producer(port);
    const std::string build = build_of(*producer);
    wait_for_job(*producer);
    zmq::context_t context;
    HostileWorker peer(context, port, "hostile names");
    wire::Ready ready = sample_ready(build);
    ready.producers = {"NoSuchProducer", std::string(1000, 'P'), ""};
    ready.sources = {"NoSuchSource", "Scripted"};
    for (int i = 0; i < 200; ++i) ready.sources.push_back("source " + std::to_string(i));
    peer.send(ready);
    ready.producers = {"DoubleSum<16>"};
    ready.sources = {"NoSuchSource"};
    peer.send(ready);  // registering again, still serving nothing useful
    // Registered: the producer keeps it in heartbeats.
    REQUIRE(peer.receive_a<wire::Heartbeat>());
    auto pool = start_pool(port, 2);
    CHECK(answer_of(*producer) == kAnswer);
    // What the peer got: heartbeats, perhaps, but never a slice.
    while (auto m = peer.receive(200ms)) CHECK_FALSE(std::holds_alternative<wire::Assign>(*m));
    CHECK(pool->running());
  }

  // --- at a worker -----------------------------------------------------------------------------

  TEST_CASE("a worker drops each kind of malformed message from its producer and keeps serving" *
            doctest::timeout(180)) {
    zmq::context_t context;
    FakeProducer producer(context);
    auto pool = start_pool(producer.port(), 1);
    producer.wait_ready();
    const std::string pid = pid_of(producer.worker());
    check_worker_computes(producer, 1);

    std::mt19937_64 random(20240503);
    std::vector<Kind> kinds = common_kinds(wire::encode(sample_assign()));
    kinds.push_back({"ASSIGNs with too few or too many payload frames",
                     {"payload frames"},
                     [](std::mt19937_64&, int i) -> Frames {
                       wire::Assign a = sample_assign();
                       a.batch = 1000 + static_cast<std::uint64_t>(i);
                       a.payload = pymar::detail::PayloadKind::raw;
                       a.slices = {{0, 0, 1}, {1, 1, 1}};
                       Frames frames{wire::encode(a)};
                       frames.resize(static_cast<std::size_t>(1 + (i % 2 ? 1 : 3)),
                                     std::string(8, '\0'));
                       if (i % 3 == 0) frames[0] = wire::encode(wire::Cancel{{1, 9}});
                       return frames;
                     }});
    std::uint64_t batch = 2;
    std::size_t total = 0;
    for (const Kind& kind : kinds) {
      CAPTURE(kind.name);
      for (int i = 0; i < kind.count; ++i) producer.send(kind.make(random, i));
      total += static_cast<std::size_t>(kind.count);
      check_worker_computes(producer, batch++);
      CHECK(pid_of(producer.worker()) == pid);  // the same process: it did not crash
      CHECK(pool->running());
    }
    stop(*pool);
    INFO("pool stderr:\n" << pool->err());
    // Logged at the 1st, 2nd, 3rd, 4th, 8th... of each kind: a handful of lines for thousands.
    CHECK(pool->count_stderr("dropped a malformed message from the producer") >= 1);
    CHECK(pool->count_stderr("dropped a malformed message from the producer") <=
          kProblemKinds * few_lines(static_cast<int>(total)));
  }

  TEST_CASE(
      "late messages of a replaced producer run do not make a worker drop its successor's "
      "slice" *
      doctest::timeout(120)) {
    zmq::context_t context;
    FakeProducer producer(context);
    auto pool = start_pool(producer.port(), 1, {"-v"});
    producer.wait_ready();
    const std::string pid = pid_of(producer.worker());
    constexpr std::uint64_t kOld = 1001, kNew = 2002;
    producer.send(wire::Heartbeat{kOld});
    // The run that replaced it assigns a slice that sleeps 1.5 s...
    wire::Assign assign = sample_assign();
    assign.job = {kNew, 1};
    assign.batch = 1;
    assign.params =
        pymar::encode(std::make_tuple(std::uint64_t{10}, -1, -1, "", 0, 1500, 1500, "", false));
    producer.send(assign);
    REQUIRE(pool->wait_for_stderr("slice 0 of job 1 started"));
    // ...and while it computes, a message of the old run arrives late, and an ASSIGN of it.
    producer.send(wire::Heartbeat{kOld});
    wire::Assign stale = sample_assign();
    stale.job = {kOld, 1};
    stale.batch = 2;
    producer.send(stale);
    // The slice is finished, not abandoned (a restarted process would say READY instead).
    const auto [result, values] = producer.await_result(assign);
    REQUIRE(result.outcomes.size() == 1);
    CHECK(result.outcomes[0].ok);
    CHECK(pid_of(producer.worker()) == pid);
    // One compute thread takes batches in order: had the stale ASSIGN been queued, it would
    // have finished before this one.
    wire::Assign next = sample_assign();
    next.job = {kNew, 2};
    next.batch = 3;
    (void)producer.compute(next);
    INFO("pool stderr:\n" << pool->err());
    // The worker logs after it sends: its line may reach us after its result did.
    CHECK(pool->wait_for_stderr("slice 0 of job 2 finished"));
    CHECK(pool->count_stderr("abandoning") == 0);
    CHECK(pool->count_stderr("slice 0 of job 1 finished") == 1);
    CHECK(pool->count_stderr("slice 0 of job 2 finished") == 1);
  }

  TEST_CASE("a worker sent messages producers do not send logs them without flooding" *
            doctest::timeout(120)) {
    zmq::context_t context;
    FakeProducer producer(context);
    auto pool = start_pool(producer.port(), 1);
    const wire::Ready ready = producer.wait_ready();
    for (int i = 0; i < kFlood; ++i) {
      switch (i % 3) {
        case 0:
          producer.send(ready);
          break;
        case 1:
          producer.send(sample_result(), {pymar::encode(1)});
          break;
        default:
          producer.send(wire::Bye{"bye"});
      }
    }
    check_worker_computes(producer, 1);
    CHECK(pool->running());
    stop(*pool);
    INFO("pool stderr:\n" << pool->err());
    CHECK(pool->count_stderr("which producers do not send") >= 1);
    CHECK(pool->count_stderr("which producers do not send") <= few_lines(kFlood));
  }

  TEST_CASE("a worker refuses slices whose params or payload do not decode, and keeps serving" *
            doctest::timeout(120)) {
    zmq::context_t context;
    FakeProducer producer(context);
    auto pool = start_pool(producer.port(), 1);
    const wire::Ready ready = producer.wait_ready();
    const std::string pid = pid_of(producer.worker());
    auto source_named = [&](const std::string& prefix) {
      for (const std::string& s : ready.sources) {
        if (s.starts_with(prefix)) return s;
      }
      FAIL("the worker serves no source named " << prefix << "...");
      return std::string();
    };
    const std::string longs = source_named("memory<long>");
    const std::string strings = source_named("memory<std::");

    struct Case {
      std::string what;
      wire::Assign assign;
      Frames payloads;
      const char* error;  ///< in the outcome's error message
    };
    std::vector<Case> cases;
    auto add = [&](const char* what, auto change, Frames payloads, const char* error) {
      wire::Assign a = sample_assign();
      change(a);
      cases.push_back({what, a, std::move(payloads), error});
    };
    using Payload = pymar::detail::PayloadKind;
    add(
        "params that are not msgpack", [](wire::Assign& a) { a.params = "\xc1\xc1"; }, {},
        "malformed msgpack");
    add(
        "no params", [](wire::Assign& a) { a.params.clear(); }, {}, "truncated msgpack data");
    add(
        "params of the wrong shape",
        [](wire::Assign& a) { a.params = pymar::encode(std::string("ten")); }, {},
        "expected shape");
    add(
        "params with a forged length",
        [](wire::Assign& a) { a.params = std::string("\xdd\xff\xff\xff\xff\x01", 6); }, {},
        "array size overflow");
    add(
        "raw payload one byte short",
        [&](wire::Assign& a) {
          a.producer = "DoubleSum<16>", a.source = longs, a.params.clear(),
          a.payload = Payload::raw;
        },
        {std::string(79, '\1')}, "holds 79 bytes");
    add(
        "raw payload one element long",
        [&](wire::Assign& a) {
          a.producer = "DoubleSum<16>", a.source = longs, a.params.clear(),
          a.payload = Payload::raw;
        },
        {std::string(88, '\1')}, "holds 88 bytes");
    add(
        "msgpack payload for raw elements",
        [&](wire::Assign& a) {
          a.producer = "DoubleSum<16>", a.source = longs, a.params.clear(),
          a.payload = Payload::msgpack;
        },
        {pymar::encode(std::vector<std::int64_t>(10, 1))}, "holds 11 bytes, not 10 elements");
    add(
        "msgpack payload that does not decode",
        [&](wire::Assign& a) {
          a.producer = "WordCount", a.source = strings, a.params.clear(),
          a.payload = Payload::msgpack, a.slices = {{0, 0, 3}};
        },
        {"\x93\xa1x\xa1"}, "truncated msgpack data");
    add(
        "msgpack payload with too few elements",
        [&](wire::Assign& a) {
          a.producer = "WordCount", a.source = strings, a.params.clear(),
          a.payload = Payload::msgpack, a.slices = {{0, 0, 3}};
        },
        {pymar::encode(std::vector<std::string>{"a", "b"})}, "holds 2 elements, expected 3");
    add(
        "msgpack payload with too many elements",
        [&](wire::Assign& a) {
          a.producer = "WordCount", a.source = strings, a.params.clear(),
          a.payload = Payload::msgpack, a.slices = {{0, 0, 1}};
        },
        {pymar::encode(std::vector<std::string>{"a", "b"})}, "holds 2 elements, expected 1");
    add(
        "msgpack payload of numbers for strings",
        [&](wire::Assign& a) {
          a.producer = "WordCount", a.source = strings, a.params.clear(),
          a.payload = Payload::msgpack, a.slices = {{0, 0, 2}};
        },
        {pymar::encode(std::vector<int>{1, 2})}, "expected shape");
    add(
        "no payload for in-memory data",
        [&](wire::Assign& a) {
          a.producer = "DoubleSum<16>", a.source = longs, a.params.clear(),
          a.payload = Payload::none;
        },
        {}, "holds 0 bytes, not 10 elements");

    std::uint64_t batch = 100;
    for (Case& c : cases) {
      CAPTURE(c.what);
      c.assign.batch = batch++;
      for (int repeat = 0; repeat < 20; ++repeat) {
        auto [result, values] = producer.compute(c.assign, c.payloads);
        REQUIRE(result.outcomes.size() == c.assign.slices.size());
        INFO("outcome: " << result.outcomes[0].error_type << ": "
                         << result.outcomes[0].error_message);
        CHECK_FALSE(result.outcomes[0].ok);
        CHECK(values.empty());
        CHECK(result.outcomes[0].error_message.find(c.error) != std::string::npos);
        c.assign.batch = batch++;
      }
      check_worker_computes(producer, batch++);
      CHECK(pid_of(producer.worker()) == pid);
    }
    CHECK(pool->running());
    stop(*pool);
    INFO("pool stderr:\n" << pool->err());
    CHECK(pool->count_stderr("warn|error") <= 2);
  }

  TEST_CASE("a worker refuses raw slices whose limit times the element size overflows" *
            doctest::timeout(120)) {
    zmq::context_t context;
    FakeProducer producer(context);
    auto pool = start_pool(producer.port(), 1);
    const wire::Ready ready = producer.wait_ready();
    const std::string pid = pid_of(producer.worker());
    wire::Assign a = sample_assign();
    a.producer = "DoubleSum<16>";
    a.source = "memory<long>";
    a.params.clear();
    a.payload = pymar::detail::PayloadKind::raw;
    // 8 * (2^61 + 2048) wraps around to 16 KiB: the size check passes for a payload of 16 KiB,
    // and map_fn is handed a span of 2^61 + 2048 elements. (The payload is large enough that
    // ZeroMQ gives it a buffer of its own, aligned, so that the worker does not copy it.)
    a.slices = {{0, 0, (std::uint64_t{1} << 61) + 2048}};
    a.batch = 1;
    INFO("pool stderr:\n" << pool->err());
    auto [result, values] = producer.compute(a, {std::string(16 << 10, '\1')});
    REQUIRE(result.outcomes.size() == 1);
    INFO("outcome: " << result.outcomes[0].error_type << ": " << result.outcomes[0].error_message);
    CHECK_FALSE(result.outcomes[0].ok);
    CHECK(pid_of(producer.worker()) == pid);
    CHECK(pool->count_stderr("killed|died|signal|exited") == 0);
    check_worker_computes(producer, 2);
  }
}
