// The core behaviours with real binaries on real sockets: examples answer right whichever way
// producer and workers are started, pools serve run after run, and the command line is clear.
#include <doctest/doctest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <pymar/codec.hpp>

#include "common/doorbell.hpp"
#include "common/time_slice.hpp"
#include "support/process.hpp"
#include "wire/protocol.hpp"

using namespace pymar::test;

namespace {

std::string queue(unsigned port) {
  return "127.0.0.1:" + std::to_string(port);
}

// A worker pool serving the producer at `port`.
std::unique_ptr<Process> start_pool(const std::string& task, unsigned port, unsigned workers,
                                    std::vector<std::string> extra = {},
                                    std::vector<std::pair<std::string, std::string>> env = {}) {
  std::vector<std::string> argv = {binary(task), "--worker", "-q",
                                   queue(port),  "-w",       std::to_string(workers)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, env);
}

// With -v, so that its log records which worker returned each slice (see computed_by_workers).
std::unique_ptr<Process> start_producer(const std::string& task, unsigned port,
                                        std::vector<std::string> extra = {},
                                        std::vector<std::pair<std::string, std::string>> env = {}) {
  std::vector<std::string> argv = {binary(task), "--produce", "-q", queue(port),
                                   "--grace",    "60",        "-v"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, env);
}

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

// The left Riemann sum of exp on [1, 10] with dx = 1e-6, in closed form.
double integration_closed_form() {
  const long double a = 1, dx = 1e-6L, n = 9'000'000;
  return static_cast<double>(dx * std::exp(a) * std::expm1(n * dx) / std::expm1(dx));
}

void check_integration(const std::string& answer) {
  const double value = std::stod(answer);
  CHECK(std::abs(value - integration_closed_form()) / integration_closed_form() < 1e-9);
}

const std::string kSquaredSum = "333333283333335000000";

// The time of day in a log line ("07:30:01.123456 producer[12] ..."), in microseconds.
std::int64_t log_time_us(const std::string& line) {
  std::smatch m;
  static const std::regex stamp(R"(^(\d\d):(\d\d):(\d\d)\.(\d{6}))");
  if (!std::regex_search(line, m, stamp)) return -1;
  return ((std::stoll(m[1]) * 60 + std::stoll(m[2])) * 60 + std::stoll(m[3])) * 1'000'000 +
         std::stoll(m[4]);
}

// The lines of `text` that match `pattern`.
std::vector<std::string> lines_matching(const std::string& text, const std::string& pattern) {
  const std::regex re(pattern);
  std::vector<std::string> found;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, re)) found.push_back(line);
  }
  return found;
}

// Checks, from the producer's own record (its -v lines "job J: worker W returned batch B:
// slices 0-3, 7" and "job J: ... in N slices"), that workers returned every slice of every job
// it ran: the local fallback gives the same answers, so answers alone cannot tell.
void check_computed_by_workers(Process& producer) {
  const std::string log = producer.err();
  INFO("producer stderr:\n" << log);
  static const std::regex started(R"(producer\[\d+\] info: job (\d+): .* in (\d+) slices)");
  static const std::regex returned(
      R"(producer\[\d+\] debug: job (\d+): worker .* returned batch \d+: slices ([\d, -]+)$)");
  std::map<int, std::size_t> slices_of_job;
  std::map<int, std::set<long>> returned_of_job;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, started)) {
      slices_of_job[std::stoi(m[1])] = std::stoul(m[2]);
    } else if (std::regex_search(line, m, returned)) {
      for (const long slice : slices_of_list(m[2].str())) {
        returned_of_job[std::stoi(m[1])].insert(slice);
      }
    }
  }
  REQUIRE_FALSE(slices_of_job.empty());
  for (const auto& [job, slices] : slices_of_job) {
    CAPTURE(job);
    CHECK(returned_of_job[job].size() == slices);
  }
  CHECK(producer.count_stderr("computing .* locally") == 0);
}

/// The pid of a -v pool's one worker process, once it waits for a producer.
std::string waiting_worker_pid(Process& pool) {
  const auto started = pool.wait_for_stderr("started worker process [0-9]+", scaled(30s));
  REQUIRE_MESSAGE(started, pool.err());
  std::smatch m;
  REQUIRE(std::regex_search(*started, m, std::regex("started worker process ([0-9]+)")));
  const std::string pid = m[1].str();
  REQUIRE(pool.wait_for_stderr("worker\\[" + pid + "\\] .*waiting for a producer", scaled(30s)));
  return pid;
}

}  // namespace

TEST_SUITE("examples") {
  // The reader the checks above rely on: a list it misread would make them count wrong.
  TEST_CASE("a -v list of slices reads as its numbers, runs expanded") {
    CHECK(slices_of_list("7") == std::vector<long>{7});
    CHECK(slices_of_list("0-3, 7, 9-10") == std::vector<long>{0, 1, 2, 3, 7, 9, 10});
    CHECK_THROWS(slices_of_list("0, 1,"));
    CHECK_THROWS(slices_of_list("0 1"));
  }

  TEST_CASE("the examples answer right with a pool of 4 started first") {
    const unsigned port = free_port();
    auto pool = start_pool("examples/integration", port, 4);
    auto producer = start_producer("examples/integration", port);
    check_integration(answer_of(*producer));
    check_computed_by_workers(*producer);
    CHECK(pool->running());
  }

  TEST_CASE("squaredsum answers right with a pool of 4 started first") {
    const unsigned port = free_port();
    auto pool = start_pool("examples/squaredsum", port, 4);
    auto producer = start_producer("examples/squaredsum", port);
    CHECK(answer_of(*producer) == kSquaredSum);
    check_computed_by_workers(*producer);
  }

  TEST_CASE("squaredsum2 answers right with a pool of 4 started first") {
    const unsigned port = free_port();
    auto pool = start_pool("examples/squaredsum2", port, 4);
    auto producer = start_producer("examples/squaredsum2", port);
    CHECK(answer_of(*producer) == kSquaredSum);
    check_computed_by_workers(*producer);
  }

  TEST_CASE("the examples answer right with the workers started after the producer") {
    for (const char* task :
         {"examples/integration", "examples/squaredsum", "examples/squaredsum2"}) {
      CAPTURE(task);
      const unsigned port = free_port();
      auto producer = start_producer(task, port);
      REQUIRE(producer->wait_for_stderr("job 1: .* 0 worker\\(s\\) connected"));
      auto pool = start_pool(task, port, 4);
      const std::string answer = answer_of(*producer);
      if (std::string(task) == "examples/integration") {
        check_integration(answer);
      } else {
        CHECK(answer == kSquaredSum);
      }
      check_computed_by_workers(*producer);
    }
  }

  TEST_CASE("--produce -w N runs the job with workers of its own and stops them") {
    const unsigned port = free_port();
    Process producer(
        {binary("examples/integration"), "--produce", "-q", queue(port), "-w", "2", "-v"});
    check_integration(answer_of(producer));
    check_computed_by_workers(producer);
    // Its pool (forked from the producer, logging to the same stderr) stopped before it ended.
    CHECK(producer.count_stderr("pool\\[[0-9]+\\] info: worker pool stopped") == 1);
  }

  TEST_CASE("--produce -w N that cannot listen ends at once, with the pool it started") {
    // The pool and its workers start beside the producer and wait for the endpoint it binds:
    // when there is none, they end without trying to connect anywhere.
    const unsigned port = free_port();
    zmq::context_t context;
    zmq::socket_t squatter(context, zmq::socket_type::router);
    squatter.set(zmq::sockopt::linger, 0);
    squatter.bind("tcp://" + queue(port));
    Process producer(
        {binary("examples/integration"), "--produce", "-q", queue(port), "-w", "2", "-v"});
    const auto status = producer.wait();
    INFO("producer stderr:\n" << producer.err());
    CHECK(status == 1);
    CHECK(producer.count_stderr("cannot listen on") == 1);
    CHECK(producer.count_stderr("waiting for a producer") == 0);
    CHECK(producer.count_stderr("(warning|error): (?!cannot listen)") == 0);
    // Every worker process it started is gone (the pool waited for them before it ended).
    const std::regex started("started worker process ([0-9]+)");
    std::istringstream lines(producer.err());
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, started)) continue;
      CAPTURE(line);
      CHECK(::kill(static_cast<pid_t>(std::stol(m[1].str())), 0) == -1);
    }
  }
}

TEST_SUITE("pool") {
  TEST_CASE("one pool serves two producer runs in a row") {
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 2);
    for (int run = 0; run < 2; ++run) {
      auto producer = start_producer("test/test_task", port, {},
                                     {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}});
      CHECK(answer_of(*producer) == "999000");
      check_computed_by_workers(*producer);
    }
    CHECK(pool->running());
  }

  TEST_CASE("one worker serves a job of 16 slices") {
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 1);
    auto producer =
        start_producer("test/test_task", port, {},
                       {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}, {"TEST_PARTS", "16"}});
    CHECK(answer_of(*producer) == "999000");
    check_computed_by_workers(*producer);
  }

  TEST_CASE("WORKERS_NUMBER larger than full_length() makes one slice per element") {
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 2);
    auto producer =
        start_producer("test/test_task", port, {},
                       {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "5"}, {"TEST_PARTS", "64"}});
    CHECK(answer_of(*producer) == "20");
    CHECK(producer->count_stderr("5 elements in 5 slices") == 1);
    check_computed_by_workers(*producer);
  }

  TEST_CASE("a map over 7 elements computes each element exactly once") {
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 3);
    auto producer = start_producer("test/test_task", port, {},
                                   {{"TEST_JOB", "elements"}, {"TEST_LENGTH", "7"}});
    CHECK(answer_of(*producer) == "0,1,2,3,4,5,6");
    check_computed_by_workers(*producer);
  }

  TEST_CASE("with no workers at all the producer computes locally, with a warning") {
    const unsigned port = free_port();
    Process producer({binary("test/test_task"), "--produce", "-q", queue(port), "--grace", "0.2"},
                     {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "10"}});
    CHECK(answer_of(producer) == "90");
    CHECK(producer.count_stderr("warn.*computing 4 slice\\(s\\) locally") == 1);
  }

  TEST_CASE("--local computes on this machine without a socket") {
    Process producer({binary("test/test_task"), "--local"},
                     {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "10"}});
    CHECK(answer_of(producer) == "90");
  }

  TEST_CASE("strings and maps travel through msgpack") {
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 2);
    auto producer = start_producer("test/test_task", port, {}, {{"TEST_JOB", "words"}});
    CHECK(answer_of(*producer) ==
          "(\"w1\", 6),(\"w2\", 5),(\"w3\", 4),(\"w4\", 3),(\"w5\", 2),(\"w6\", 1)");
    check_computed_by_workers(*producer);
  }

  TEST_CASE("a warm pool has all its workers registered when a new producer's first job starts") {
    constexpr std::size_t kWorkers = 3;
    const unsigned port = free_port();
    // Each slice takes 20 ms on a worker: the job lasts ~80 ms on 3 workers, ~240 ms on one.
    auto pool = start_pool("test/test_task", port, kWorkers, {"-v"}, {{"TEST_ELEMENT_MS", "20"}});
    const std::vector<std::pair<std::string, std::string>> job = {
        {"TEST_JOB", "doubled"}, {"TEST_LENGTH", "12"}, {"TEST_PARTS", "16"}};
    REQUIRE(pool->wait_for_stderr("waiting for a producer", 60s, kWorkers - 1));
    auto first = start_producer("test/test_task", port, {"--no-speculation"}, job);
    CHECK(answer_of(*first) == "132");
    REQUIRE(pool->wait_for_stderr("the producer at .* went away", 60s, kWorkers - 1));
    // The deliberate idle period, well past libzmq's longest backoff (100 ms): a worker without
    // a doorbell now retries only every 1 to 2 s.
    std::this_thread::sleep_for(500ms);
    const std::size_t before = pool->err().size();

    auto second = start_producer("test/test_task", port, {"--no-speculation"}, job);
    CHECK(answer_of(*second) == "132");
    const std::string producer_log = second->err();
    INFO("producer stderr:\n" << producer_log);
    CHECK(lines_matching(producer_log, "rang 3 worker doorbell\\(s\\)").size() == 1);
    CHECK(lines_matching(producer_log, "job 1: .* 3 worker\\(s\\) connected").size() == 1);
    // Each worker registered within a fraction of its 1 to 2 s fallback timer (about 3 ms on an
    // idle machine; the bound leaves room for a busy one)...
    const auto bound = lines_matching(producer_log, "debug: bound tcp://");
    const auto joined = lines_matching(producer_log, "debug: worker .* joined");
    REQUIRE(bound.size() == 1);
    REQUIRE(joined.size() == kWorkers);
    for (const std::string& line : joined) {
      CAPTURE(line);
      CHECK(log_time_us(line) - log_time_us(bound[0]) < 250'000);
    }
    // ... so that every one of them computed slices of the new producer's first job.
    const std::string pool_log = pool->err().substr(before);
    INFO("pool stderr since the second producer started:\n" << pool_log);
    std::set<pid_t> computed;
    for (const std::string& line : lines_matching(pool_log, "slice [0-9]+ of job 1 finished")) {
      computed.insert(pid_of_log_line(line));
    }
    CHECK(computed.size() == kWorkers);
  }

  TEST_CASE("a worker queues nothing while its producer is away: a new one hears READY first") {
    namespace wire = pymar::wire;
    const unsigned port = free_port();
    // Heartbeats every 200 ms; a silent producer is given up on only after 10 s.
    auto pool =
        start_pool("test/test_task", port, 1, {"-v", "--heartbeat", "0.2", "--liveness", "10"});
    zmq::context_t context;
    auto listen = [&] {
      auto router = std::make_unique<zmq::socket_t>(context, zmq::socket_type::router);
      router->set(zmq::sockopt::linger, 0);
      // No doorbell rung: the worker finds it on its timer, as it would a producer elsewhere,
      // keeping what it may have queued meanwhile (a bell makes it start a fresh connection).
      router->bind("tcp://127.0.0.1:" + std::to_string(port));
      return router;
    };
    // The next message within `timeout`, if any.
    auto receive = [&](zmq::socket_t& router, std::chrono::milliseconds timeout) {
      std::optional<wire::Message> message;
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, timeout) == 0) return message;
      std::vector<zmq::message_t> frames;
      REQUIRE(zmq::recv_multipart(router, std::back_inserter(frames)));
      REQUIRE(frames.size() >= 2);
      message = wire::decode(frames[1].to_string_view(), frames.size() - 2);
      return message;
    };
    {
      auto first = listen();
      const auto hello = receive(*first, 30s);
      REQUIRE(hello.has_value());
      CHECK(std::holds_alternative<wire::Ready>(*hello));
    }  // this "producer" goes away
    REQUIRE(pool->wait_for_stderr("the producer at .* went away"));
    // The deliberate idle period: two heartbeat intervals and more with nobody to hear them.
    std::this_thread::sleep_for(500ms);

    auto second = listen();
    const auto hello = receive(*second, 30s);
    REQUIRE(hello.has_value());
    CHECK(std::holds_alternative<wire::Ready>(*hello));
    // The worker's next heartbeat is due 200 ms after its READY: anything sooner was held back.
    const auto next = receive(*second, 100ms);
    CHECK_FALSE(next.has_value());
    CHECK(pool->running());
  }

  TEST_CASE("a worker added while a job runs takes slices") {
    const unsigned port = free_port();
    const std::string marker = fresh_temp_path("pymar-test-" + std::to_string(port));
    auto first = start_pool("test/test_task", port, 1, {"-v"});
    // Slice 0 sleeps long; the other 15 slices wait for a worker.
    auto producer = start_producer("test/test_task", port, {},
                                   {{"TEST_JOB", "doubled"},
                                    {"TEST_LENGTH", "160"},
                                    {"TEST_PARTS", "16"},
                                    {"TEST_SLOW_AT", "0"},
                                    {"TEST_SLOW_MS", "3000"},
                                    {"TEST_RETRY_MS", "3000"}});
    REQUIRE(first->wait_for_stderr("slice 0 of job 1 started"));
    auto second = start_pool("test/test_task", port, 1, {"-v"});
    CHECK(answer_of(*producer) == "25440");
    // Waited for: the harness reads the pool's stderr behind the producer's answer.
    CHECK(second->wait_for_stderr("slice [0-9]+ of job 1 finished"));
  }
}

TEST_SUITE("command line") {
  TEST_CASE("a bad flag or value is one clear line and exit status 2") {
    for (std::vector<std::string> args : {std::vector<std::string>{"--bogus"},
                                          {"-w", "lots"},
                                          {"-w", "0"},
                                          {"-q", "host:99999"},
                                          {"--worker", "--produce"},
                                          {"--liveness", "1", "--heartbeat", "1"},
                                          {"-p", "X"}}) {
      std::vector<std::string> argv = {binary("examples/integration")};
      argv.insert(argv.end(), args.begin(), args.end());
      Process p(argv);
      CHECK(p.wait() == 2);
      const std::string err = p.err();
      CHECK(std::count(err.begin(), err.end(), '\n') == 1);
      CHECK(err.starts_with("integration: error: "));
      CHECK(p.out().empty());
    }
  }

  TEST_CASE("arguments after -- reach the job; a task that takes none refuses them") {
    Process with({binary("test/test_task"), "--local", "--", "in.txt", "-w", "3"},
                 {{"TEST_JOB", "arguments"}});
    CHECK(with.wait() == 0);
    CHECK(line_after(with.out(), "Answer: ") == "in.txt,-w,3");
    Process without({binary("examples/integration"), "--local", "extra"});
    CHECK(without.wait() == 2);
    CHECK(without.err().find("extra") != std::string::npos);
  }

  TEST_CASE("--help and --version print to stdout and exit 0") {
    Process help({binary("examples/integration"), "--help"});
    CHECK(help.wait() == 0);
    CHECK(help.out().find("--worker") != std::string::npos);
    CHECK(help.out().find("--queue") != std::string::npos);
    Process version({binary("examples/integration"), "--version"});
    CHECK(version.wait() == 0);
    CHECK(version.out().find("pymar 0.1.0") != std::string::npos);
  }

  TEST_CASE("--metrics and --dashboard without the HTTP module: one line naming it, exit 2") {
    std::string empty = (std::filesystem::temp_directory_path() / "pymar-no-http-XXXXXX").string();
    REQUIRE(mkdtemp(empty.data()) != nullptr);
    std::string broken =
        (std::filesystem::temp_directory_path() / "pymar-bad-http-XXXXXX").string();
    REQUIRE(mkdtemp(broken.data()) != nullptr);
    std::ofstream(std::filesystem::path(broken) / "libpymar-http.so") << "not a library\n";
    for (const char* flag : {"--metrics", "--dashboard"}) {
      for (const std::string& folder : {empty, broken}) {
        CAPTURE(flag);
        CAPTURE(folder);
        Process p({binary("test/test_task"), "--produce", flag, "0"},
                  {{"TEST_JOB", "doubled"}, {"PYMAR_HTTP_MODULE_DIR", folder}});
        CHECK(p.wait(scaled(30s)) == 2);
        const std::string err = p.err();
        INFO(err);
        CHECK(std::count(err.begin(), err.end(), '\n') == 1);
        CHECK(err.starts_with(std::string("test_task: error: ") + flag + ": "));
#ifdef PYMAR_TEST_HTTP_MODULE
        if (folder == empty) {
          CHECK(err.find("the HTTP module libpymar-http.so is missing (looked in " + empty + ")") !=
                std::string::npos);
        } else {
          CHECK(err.find("cannot load the HTTP module " + broken + "/libpymar-http.so: ") !=
                std::string::npos);
        }
#else
        CHECK(err.find("built without HTTP support") != std::string::npos);
#endif
        CHECK(p.out().empty());
      }
    }
    std::filesystem::remove_all(empty);
    std::filesystem::remove_all(broken);
  }

  TEST_CASE("a pool and its workers load no HTTP, TLS or compression library") {
    // Only --metrics and --dashboard load the HTTP module (and with it cpp-httplib, OpenSSL,
    // zlib and Brotli): everything else starts without them.
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 1, {"-v"});
    const std::string worker = waiting_worker_pid(*pool);
    for (const std::string& pid : {std::to_string(pool->pid()), worker}) {
      std::ifstream maps("/proc/" + pid + "/maps");
      const std::string mapped{std::istreambuf_iterator<char>(maps), {}};
      CAPTURE(pid);
      REQUIRE(mapped.find("libpymar.so") != std::string::npos);
      for (const std::string& library : std::vector<std::string>{
               "libpymar-http", "libcpp-httplib", "libssl", "libcrypto", "libbrotli", "libz.so"}) {
        CAPTURE(library);
        CHECK(mapped.find(library) == std::string::npos);
      }
    }
  }

  TEST_CASE("a worker's compute thread runs with a long time slice, its other threads short") {
    // Where the kernel keeps a time slice per thread (EEVDF, Linux 6.12 and later), the worker's
    // messaging threads run as soon as a message wakes them, ahead of its compute thread.
    std::uint64_t probe = 0;
    std::thread([&] {
      if (pymar::detail::request_time_slice(pymar::detail::kComputeSliceNs)) {
        probe = pymar::detail::time_slice_of(static_cast<int>(::syscall(SYS_gettid)));
      }
    }).join();
    if (probe != pymar::detail::kComputeSliceNs) {
      MESSAGE("skipped: this kernel keeps no time slice per thread");
      return;
    }
    const unsigned port = free_port();
    auto pool = start_pool("test/test_task", port, 1, {"-v"});
    const std::string worker = waiting_worker_pid(*pool);
    std::map<std::uint64_t, int> threads_by_slice;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + worker + "/task")) {
      ++threads_by_slice[pymar::detail::time_slice_of(std::stoi(task.path().filename()))];
    }
    CAPTURE(threads_by_slice.size());
    CHECK(threads_by_slice.count(pymar::detail::kComputeSliceNs) == 1);
    CHECK(threads_by_slice.count(pymar::detail::kMessagingSliceNs) == 1);
    CHECK(threads_by_slice.size() == 2);
    if (threads_by_slice.size() == 2) {
      CHECK(threads_by_slice.at(pymar::detail::kComputeSliceNs) == 1);
      // The I/O thread and libzmq's I/O and reaper threads.
      CHECK(threads_by_slice.at(pymar::detail::kMessagingSliceNs) >= 3);
    }
  }

  TEST_CASE("--list shows what the binary registered") {
    Process list({binary("test/test_task"), "--list"});
    CHECK(list.wait() == 0);
    CHECK(list.out().find("DoubleSum<16>") != std::string::npos);
    CHECK(list.out().find("Scripted") != std::string::npos);
  }

  TEST_CASE("registering a name twice is an error at start-up naming both places") {
    Process p({binary("test/duplicate_registration"), "--help"});
    CHECK(p.wait() == 1);
    CHECK(p.err().find("producer 'Twice' is registered twice") != std::string::npos);
    CHECK(p.err().find("duplicate_registration.cpp:8 and at ") != std::string::npos);
    CHECK(p.err().find("registered twice, as 'Twice' and as 'again::Twice'") != std::string::npos);
  }

  TEST_CASE("-p with a name the binary does not have is refused") {
    Process p({binary("test/test_task"), "--worker", "-p", "NoSuchProducer"});
    CHECK(p.wait() == 2);
    CHECK(p.err().find("unknown producer 'NoSuchProducer'") != std::string::npos);
  }

  TEST_CASE("a worker asked for an unknown name refuses that slice and keeps serving") {
    namespace wire = pymar::wire;
    zmq::context_t context;
    zmq::socket_t router(context, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
    const unsigned port =
        static_cast<unsigned>(std::stoul(endpoint.substr(endpoint.rfind(':') + 1)));
    router.set(zmq::sockopt::rcvtimeo, 30000);
    auto pool = start_pool("test/test_task", port, 1);

    auto receive = [&](std::vector<zmq::message_t>& frames) {
      frames.clear();
      REQUIRE(zmq::recv_multipart(router, std::back_inserter(frames)));
      return wire::decode(frames[1].to_string_view(), frames.size() - 2);
    };
    std::vector<zmq::message_t> frames;
    wire::Message first = receive(frames);
    REQUIRE(std::holds_alternative<wire::Ready>(first));
    const std::string worker = frames[0].to_string();

    auto assign = [&](const std::string& producer, std::uint64_t batch) {
      wire::Assign a;
      a.job = {1, 1};
      a.batch = batch;
      a.producer = producer;
      a.source = "Scripted";
      // The fields of the task's Script parameters: 10 elements, nothing scripted.
      a.params = pymar::encode(std::make_tuple(std::uint64_t{10}, -1, -1, "", -1, 0, 0, "", false));
      a.slices = {{0, 0, 10}};
      std::string header = wire::encode(a);
      (void)router.send(zmq::buffer(worker), zmq::send_flags::sndmore);
      (void)router.send(zmq::buffer(header));
    };
    auto next_result = [&]() -> wire::Result {
      while (true) {
        wire::Message m = receive(frames);
        if (auto* r = std::get_if<wire::Result>(&m)) return *r;
      }
    };

    assign("NoSuchProducer", 1);
    wire::Result refused = next_result();
    REQUIRE(refused.outcomes.size() == 1);
    CHECK_FALSE(refused.outcomes[0].ok);
    CHECK(refused.outcomes[0].error_message.find("does not serve producer 'NoSuchProducer'") !=
          std::string::npos);

    assign("DoubleSum<4>", 2);
    wire::Result served = next_result();
    REQUIRE(served.outcomes.size() == 1);
    CHECK(served.outcomes[0].ok);
    REQUIRE(frames.size() == 3);
    CHECK(pymar::decode<std::int64_t>(frames[2].to_string_view()) == 90);
    CHECK(pool->running());
  }
}
