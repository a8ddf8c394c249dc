// `task --status`, with real binaries on real sockets: it shows what a running producer does and
// who works for it, honours the producer's keys like a worker does, and says clearly when no
// producer answers. A flood of queries costs the producer a bounded number of answers and lines.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "support/process.hpp"
#include "wire/protocol.hpp"

using namespace pymar::test;

namespace {

namespace fs = std::filesystem;
namespace wire = pymar::wire;

std::string queue(unsigned port) {
  return "127.0.0.1:" + std::to_string(port);
}

/// A producer of TEST_JOB=doubled over 1000 elements in 16 slices whose slice 0 takes 4 s the
/// first time, with no speculative copy: the job runs for 4 s whatever the workers do.
std::unique_ptr<Process> start_slow_producer(unsigned port, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {
      binary("test/test_task"), "--produce", "-v", "-q", queue(port), "--grace", "60",
      "--no-speculation"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(
      argv, std::vector<std::pair<std::string, std::string>>{
                {"TEST_JOB", "doubled"},
                {"TEST_LENGTH", "1000"},
                {"TEST_PARTS", "16"},
                {"TEST_SLOW_AT", "0"},
                {"TEST_SLOW_MS", "4000"},
                {"TEST_SLOW_MARKER", fresh_temp_path("pymar-status-" + std::to_string(port))}});
}

std::unique_ptr<Process> start_pool(unsigned port, unsigned workers,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {binary("test/test_task"), "--worker", "-q", queue(port), "-w",
                                   std::to_string(workers)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv);
}

/// Runs `task --status` with `extra` flags; returns its exit status.
int ask(unsigned port, std::vector<std::string> extra, std::string& out, std::string& err) {
  std::vector<std::string> argv = {binary("test/test_task"), "--status", "-q", queue(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Process status(argv);
  const auto code = status.wait(60s);
  out = status.out();
  err = status.err();
  REQUIRE(code.has_value());
  return *code;
}

/// Every number that follows `"field": ` in a JSON text, in order.
std::vector<long> numbers_of(const std::string& json, const std::string& field) {
  std::vector<long> found;
  const std::string key = "\"" + field + "\": ";
  for (auto at = json.find(key); at != std::string::npos; at = json.find(key, at + 1)) {
    found.push_back(std::strtol(json.c_str() + at + key.size(), nullptr, 10));
  }
  return found;
}

/// A folder with a producer's key pair, an allowed worker's and a stranger's.
struct KeyFolder {
  fs::path root;
  KeyFolder() {
    std::string pattern = (fs::temp_directory_path() / "pymar-status-keys-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    root = pattern;
    for (const auto& [dir, name] :
         {std::pair{"producer", "producer"}, {"allowed", "worker"}, {"elsewhere", "stranger"}}) {
      Process keygen(
          {binary("test/test_task"), "--keygen", (root / dir).string(), "--key-name", name});
      REQUIRE(keygen.wait(60s) == 0);
    }
  }
  ~KeyFolder() {
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
  std::string operator()(const std::string& relative) const { return (root / relative).string(); }
};

}  // namespace

TEST_SUITE("status") {
  TEST_CASE("--status shows the running job, how far it is and each worker; --json for scripts" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_slow_producer(port);
    REQUIRE(producer->wait_for_stderr("listening on"));
    auto pool = start_pool(port, 2);
    REQUIRE(producer->wait_for_stderr("debug: worker .* joined .* 2 worker\\(s\\)"));

    std::string out, err;
    CHECK(ask(port, {}, out, err) == 0);
    INFO("status:\n" << out << err);
    CHECK(out.find("producer test_task (build ") != std::string::npos);
    CHECK(out.find("job 1: DoubleSum<16> over Scripted: ") != std::string::npos);
    CHECK(out.find(" of 16 slices done") != std::string::npos);
    CHECK(out.find("2 worker(s) connected") != std::string::npos);
    // One row per worker process of the pool: host, pid, credit 2, ..., "ago".
    std::vector<std::string> pids;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("  ", 0) != 0 || line.find(" ago") == std::string::npos) continue;
      std::istringstream fields(line);
      std::string host, pid, credit;
      fields >> host >> pid >> credit;
      CHECK(credit == "2");
      pids.push_back(pid);
    }
    CHECK(pids.size() == 2);
    for (const std::string& pid : pids) {
      CHECK(pool->count_stderr("worker\\[" + pid + "\\]") >= 1);
    }

    CHECK(ask(port, {"--json"}, out, err) == 0);
    INFO("json:\n" << out);
    CHECK(numbers_of(out, "slices_total") == std::vector<long>{16});
    CHECK(numbers_of(out, "workers_total") == std::vector<long>{2});
    // The job's count first, then each worker's: one snapshot, so they add up.
    const std::vector<long> done = numbers_of(out, "slices_done");
    REQUIRE(done.size() == 3);
    CHECK(done[0] == done[1] + done[2]);
    CHECK(done[0] < 16);  // slice 0 is still running
    CHECK(out.find("\"producer\": \"DoubleSum<16>\"") != std::string::npos);

    CHECK(producer->wait(60s) == 0);
    CHECK(producer->count_stderr("answered a status query") == 2);
  }

  TEST_CASE("with keys, --status needs a key the producer allows, as a worker does" *
            doctest::timeout(180)) {
    KeyFolder keys;
    const unsigned port = free_port();
    auto producer = start_slow_producer(
        port, {"--secret-key", keys("producer/producer.key_secret"), "--allow", keys("allowed")});
    REQUIRE(producer->wait_for_stderr("listening on .* with key"));

    std::string out, err;
    CHECK(ask(port,
              {"--secret-key", keys("allowed/worker.key_secret"), "--producer-key",
               keys("producer/producer.key")},
              out, err) == 0);
    CHECK(out.find("job 1: DoubleSum<16> over Scripted") != std::string::npos);

    CHECK(ask(port,
              {"--secret-key", keys("elsewhere/stranger.key_secret"), "--producer-key",
               keys("producer/producer.key")},
              out, err) == 3);
    CHECK(err.find("refused this key") != std::string::npos);
    CHECK(out.empty());

    CHECK(ask(port, {}, out, err) == 3);
    CHECK(err.find("requires keys: give --secret-key and --producer-key") != std::string::npos);
    CHECK(out.empty());

    // The answer comes from the producer it expects, or not at all.
    CHECK(ask(port,
              {"--secret-key", keys("allowed/worker.key_secret"), "--producer-key",
               keys("allowed/worker.key")},
              out, err) == 1);
    CHECK(err.find("not the producer this key expects") != std::string::npos);
    CHECK(out.empty());

    auto pool = start_pool(port, 2,
                           {"--secret-key", keys("allowed/worker.key_secret"), "--producer-key",
                            keys("producer/producer.key")});
    CHECK(producer->wait(60s) == 0);
    CHECK(producer->count_stderr("answered a status query") == 1);
  }

  TEST_CASE("--status with no producer there says so and exits 1" * doctest::timeout(120)) {
    const unsigned port = free_port();
    std::string out, err;
    CHECK(ask(port, {}, out, err) == 1);
    CHECK(err.find("no answer from a producer at tcp://127.0.0.1:" + std::to_string(port)) !=
          std::string::npos);
    CHECK(out.empty());
  }

  TEST_CASE("a flood of status queries gets a bounded number of answers and log lines" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    auto producer = start_slow_producer(port);
    REQUIRE(producer->wait_for_stderr("listening on"));
    zmq::context_t context;
    zmq::socket_t asker(context, zmq::socket_type::dealer);
    asker.set(zmq::sockopt::linger, 0);
    asker.set(zmq::sockopt::rcvhwm, 0);
    asker.connect("tcp://" + queue(port));
    const std::string query = wire::encode(wire::StatusQuery{});
    constexpr int kQueries = 2000;
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < kQueries; ++i) (void)asker.send(zmq::buffer(query), zmq::send_flags::none);
    int answers = 0;
    while (true) {
      zmq::pollitem_t item{asker.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(1500)) == 0) break;
      zmq::message_t frame;
      REQUIRE(asker.recv(frame));
      CHECK(std::holds_alternative<wire::Status>(wire::decode(frame.to_string_view(), 0)));
      ++answers;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    INFO(answers << " answers in " << seconds << " s");
    CHECK(answers >= 1);
    CHECK(answers <= 50 * (static_cast<int>(seconds) + 2));  // 50 a second at most
    CHECK(producer->running());
    auto pool = start_pool(port, 2);
    CHECK(producer->wait(60s) == 0);
    CHECK(producer->count_stderr("dropped a status query") <= 16);
  }
}

namespace {

/// The slow job of start_slow_producer with its own pool of 2, whose slice 0 takes `slow_ms`.
std::vector<std::string> slow_job_command(unsigned port, const std::string& slow_ms,
                                          std::vector<std::string> extra) {
  std::vector<std::string> argv = {
      "/usr/bin/env",
      "TEST_JOB=doubled",
      "TEST_LENGTH=1000",
      "TEST_PARTS=16",
      "TEST_SLOW_AT=0",
      "TEST_SLOW_MS=" + slow_ms,
      "TEST_SLOW_MARKER=" + fresh_temp_path("pymar-progress-" + std::to_string(port)),
      binary("test/test_task"),
      "--produce",
      "-q",
      queue(port),
      "-w",
      "2",
      "--no-speculation"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

/// Runs `argv` on a pseudo-terminal (util-linux's `script`); returns what the terminal showed.
std::string on_a_terminal(const std::vector<std::string>& argv) {
  std::string command;
  for (const std::string& arg : argv) command += "'" + arg + "' ";
  Process terminal({"/usr/bin/script", "-qfec", command, "/dev/null"});
  const auto status = terminal.wait(120s);
  INFO("terminal:\n" << terminal.out() << terminal.err());
  REQUIRE(status == 0);
  return terminal.out();
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_SUITE("status") {
  TEST_CASE("on a terminal the producer redraws one live progress line, under its log lines" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    const std::string shown = on_a_terminal(slow_job_command(port, "1500", {}));
    INFO("terminal:\n" << shown);
    CHECK(shown.find("Answer: 999000") != std::string::npos);
    // Drawn in place again and again: erase the line, write it anew.
    CHECK(count(shown, "\r\033[Kjob 1: ") >= 3);
    CHECK(shown.find("/16 (") != std::string::npos);
    CHECK(shown.find(" elem/s | 2 workers | 0 re-run | ") != std::string::npos);
    // Log lines are never glued to the live line, and it is gone once the job ends.
    const auto last = shown.find("job 1 done after");
    REQUIRE(last != std::string::npos);
    const auto live_text = shown.rfind(" left", last);
    REQUIRE(live_text != std::string::npos);
    CHECK(shown.find("\r\033[K", live_text) < last);  // erased before the log line
    CHECK(shown.find("elem/s", last) == std::string::npos);
  }

  TEST_CASE("--no-progress shows no progress; piped, progress is a plain log line every 5 s" *
            doctest::timeout(180)) {
    const unsigned port = free_port();
    const std::string quiet = on_a_terminal(slow_job_command(port, "1500", {"--no-progress"}));
    CHECK(quiet.find("Answer: 999000") != std::string::npos);
    CHECK(quiet.find("elem/s") == std::string::npos);

    const unsigned piped_port = free_port();
    const auto argv = slow_job_command(piped_port, "5600", {});
    Process piped(argv);
    CHECK(piped.wait(120s) == 0);
    INFO("stderr:\n" << piped.err());
    CHECK(piped.count_stderr("info: job 1: 15 of 16 slices done \\(94%\\) after 5\\.0 s on 2 "
                             "worker\\(s\\), [0-9.]+ k? ?elements/s, 0 re-run") == 1);
    CHECK(piped.err().find("\033[K") == std::string::npos);
    CHECK(piped.out() == "Answer: 999000\n");  // stdout carries only the task's own output
  }
}
