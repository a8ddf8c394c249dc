// Several hosts on one machine: the producer on one host of a test network, worker pools on
// others, each host with its own key, and links cut, restored and impaired for real
// (tools/testnet.sh: network namespaces on a bridge). Meson runs this binary through
// `tools/testnet.sh run 4`, which sets TESTNET and always tears the network down; run alone,
// the binary brings up a network of its own for each test.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/process.hpp"

using namespace pymar::test;

namespace {

namespace fs = std::filesystem;
using Env = std::vector<std::pair<std::string, std::string>>;
using Clock = std::chrono::steady_clock;

const std::string kTestnet = source_file("tools/testnet.sh");
const std::string kRelay = source_file("tools/net/delay_relay.py");

// Short heartbeats, so that a cut link is noticed within a second.
constexpr auto kHeartbeat = 200ms;
constexpr auto kLiveness = 1000ms;
const std::vector<std::string> kQuick = {"--heartbeat", "0.2", "--liveness", "1"};

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// TEST_JOB=doubled over 1000 elements: twice the sum of 0..999.
const Env kDoubled = {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}, {"TEST_PARTS", "16"}};
const std::string kAnswer = "999000";

std::string address(int host) {
  return "10.77.0." + std::to_string(host);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// `text` with the characters that mean something in an ECMAScript regex escaped (keys in
/// Z85 use several of them).
std::string literal(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// A folder made for one test, removed at its end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "pymar-net-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    root_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path(const std::string& relative) const { return (root_ / relative).string(); }

 private:
  fs::path root_;
};

/// The test network: the one tools/testnet.sh named in TESTNET, or one of this test's own.
/// Every cut and impairment is undone when the test ends.
class TestNet {
 public:
  TestNet() {
    if (const char* name = std::getenv("TESTNET"); name && *name) {
      name_ = name;
    } else {
      Process up({kTestnet, "up", "4"}, {{"TESTNET_OWNER", std::to_string(getpid())}});
      const auto status = up.wait(60s);
      if (status == 77) {
        MESSAGE("skipped: needs CAP_NET_ADMIN");
        skipped_ = true;
        return;
      }
      INFO("testnet.sh up: " << up.err());
      REQUIRE(status == 0);
      const auto named = line_after(up.out(), "TESTNET=");
      REQUIRE(named.has_value());
      name_ = *named;
      owned_ = true;
    }
    run({"clear"});
  }

  ~TestNet() {
    if (name_.empty()) return;
    Process undo({kTestnet, owned_ ? "down" : "clear"}, env());
    undo.wait(60s);
  }
  TestNet(const TestNet&) = delete;
  TestNet& operator=(const TestNet&) = delete;

  bool skipped() const { return skipped_; }

  /// Runs a testnet.sh subcommand on this network; its stdout.
  std::string run(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kTestnet};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, env());
    const auto status = p.wait(60s);
    INFO("testnet.sh " << args.front() << ": " << p.err());
    REQUIRE(status == 0);
    return p.out();
  }

  void cut(int host) { run({"cut", "h" + std::to_string(host)}); }
  void restore(int host) { run({"restore", "h" + std::to_string(host)}); }

  /// `argv` run on a host ("h1".."h4", or "bridge").
  std::vector<std::string> on(const std::string& host, std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {kTestnet, "exec", host});
    return argv;
  }

  Env env(Env more = {}) const {
    more.emplace_back("TESTNET", name_);
    return more;
  }

 private:
  std::string name_;
  bool owned_ = false;
  bool skipped_ = false;
};

/// A producer key pair and one key pair per worker host, made by the task's own --keygen.
class HostKeys {
 public:
  HostKeys() {
    producer_public_ = make("producer", "producer");
    for (int host = 2; host <= 4; ++host) make("allowed", "h" + std::to_string(host));
  }

  std::vector<std::string> producer_flags() const {
    return {"--secret-key", producer_public_ + "_secret", "--allow", dir_.path("allowed")};
  }
  std::vector<std::string> worker_flags(int host) const {
    return {"--secret-key", dir_.path("allowed/h" + std::to_string(host) + ".key_secret"),
            "--producer-key", producer_public_};
  }

  /// The host's public key (Z85): the producer's log names each worker by it.
  std::string key(int host) const {
    const std::string text = read_file(dir_.path("allowed/h" + std::to_string(host) + ".key"));
    const auto at = text.find("public-key = \"");
    REQUIRE(at != std::string::npos);
    return text.substr(at + 14, 40);
  }

 private:
  std::string make(const std::string& subdir, const std::string& name) {
    Process keygen({binary("test/test_task"), "--keygen", dir_.path(subdir), "--key-name", name});
    const auto status = keygen.wait(60s);
    INFO("keygen: " << keygen.err());
    REQUIRE(status == 0);
    return dir_.path(subdir + "/" + name + ".key");
  }

  TempDir dir_;
  std::string producer_public_;
};

std::unique_ptr<Process> start_pool(const TestNet& net, int host, const std::string& producer,
                                    unsigned workers, const std::vector<std::string>& flags) {
  std::vector<std::string> argv = net.on(
      "h" + std::to_string(host),
      {binary("test/test_task"), "--worker", "-v", "-q", producer, "-w", std::to_string(workers)});
  argv.insert(argv.end(), flags.begin(), flags.end());
  return std::make_unique<Process>(argv, net.env());
}

/// A producer on h1 listening on `listen`. Speculation is off: these tests follow where each
/// slice goes, and a copy of a slow slice on another host would hide a cut.
std::unique_ptr<Process> start_producer(const TestNet& net, const std::string& listen, Env env,
                                        const std::vector<std::string>& flags) {
  std::vector<std::string> argv = net.on("h1", {binary("test/test_task"), "--produce", "-v", "-q",
                                                listen, "--grace", "60", "--no-speculation"});
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto producer = std::make_unique<Process>(argv, net.env(std::move(env)));
  INFO("producer: " << producer->err());
  REQUIRE(producer->wait_for_stderr("listening on", 30s));
  return producer;
}

/// Every answer the producer printed, after it exited with status 0.
std::vector<std::string> answers_of(Process& producer) {
  const auto status = producer.wait(90s);
  INFO("producer stderr:\n" << producer.err());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  std::vector<std::string> answers;
  for (const std::string& line : lines_of(producer.out())) {
    if (line.starts_with("Answer: ")) answers.push_back(line.substr(8));
  }
  return answers;
}

/// The slices of job `job` that the producer took from workers whose id starts with
/// `key_prefix` (its -v log: "job J: worker ID returned batch B: slices 1-3, 7").
std::set<int> slices_returned(Process& producer, int job, const std::string& key_prefix) {
  const std::regex re("job " + std::to_string(job) + ": worker " + literal(key_prefix) +
                      "\\S* returned batch [0-9]+: slices ([0-9, -]+)");
  std::set<int> slices;
  for (const std::string& line : lines_of(producer.err())) {
    std::smatch m;
    if (!std::regex_search(line, m, re)) continue;
    for (const long slice : slices_of_list(m[1].str())) slices.insert(static_cast<int>(slice));
  }
  return slices;
}

/// Waits (bounded) until one of the pools logs a line matching `pattern`; the index of that
/// pool, or -1.
int first_to_log(const std::vector<Process*>& pools, const std::string& pattern,
                 std::chrono::milliseconds timeout = 30s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    for (std::size_t i = 0; i < pools.size(); ++i) {
      if (pools[i]->wait_for_stderr(pattern, 50ms)) return static_cast<int>(i);
    }
  }
  return -1;
}

/// How long each job's `map` took, in seconds, by job number (TEST_TIMING=1).
std::map<int, double> job_times(Process& producer) {
  const std::regex re("test_task: job ([0-9]+) took ([0-9]+) us");
  std::map<int, double> times;
  for (const std::string& line : lines_of(producer.err())) {
    std::smatch m;
    if (std::regex_search(line, m, re)) times[std::stoi(m[1].str())] = std::stod(m[2].str()) / 1e6;
  }
  return times;
}

double median(std::vector<double> values) {
  REQUIRE(!values.empty());
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

TEST_SUITE("network") {
  TEST_CASE(
      "a worker host cut off mid-job: its slices go elsewhere; restored, it takes work again" *
      doctest::timeout(120)) {
    TestNet net;
    if (net.skipped()) return;
    HostKeys keys;
    TempDir tmp;
    const std::string queue = address(1) + ":7701";
    Env env = kDoubled;
    env.insert(env.end(), {{"TEST_SLOW_AT", "0"},  // slice 0 sleeps 5 s the first time only
                           {"TEST_SLOW_MS", "5000"},
                           {"TEST_RETRY_MS", "0"},
                           {"TEST_SLOW_MARKER", tmp.path("slow")},
                           {"TEST_REPEAT", "2"},
                           {"TEST_GATE", tmp.path("gate")}});
    auto producer = start_producer(net, queue, env, kQuick + keys.producer_flags());
    std::vector<std::unique_ptr<Process>> pools;
    for (int host = 2; host <= 4; ++host) {
      pools.push_back(start_pool(net, host, queue, 2, kQuick + keys.worker_flags(host)));
    }

    // The host whose worker is computing the slow slice is the one cut off.
    const int index =
        first_to_log({pools[0].get(), pools[1].get(), pools[2].get()}, "slice 0 of job 1 started");
    INFO("producer stderr:\n" << producer->err());
    REQUIRE(index >= 0);
    const int cut = index + 2;
    const std::string cut_key = keys.key(cut);
    const auto cut_at = Clock::now();
    net.cut(cut);

    // Given up on after the liveness limit, not before, and its slices handed out again.
    const auto lost = producer->wait_for_stderr(
        "worker " + literal(cut_key) + "/.* lost: .*re-queued slices 0(,|$)", 10s);
    const auto noticed_after = Clock::now() - cut_at;
    REQUIRE(lost.has_value());
    CHECK(noticed_after >= kLiveness - kHeartbeat);
    REQUIRE(producer->wait_for_stdout("^Answer: ", 30s));
    CHECK(slices_returned(*producer, 1, "").contains(0));
    CHECK_FALSE(slices_returned(*producer, 1, cut_key).contains(0));

    // Plugged back in: its workers register again and take work in the next job.
    const std::size_t joins_before =
        producer->count_stderr("worker " + literal(cut_key) + "/.* joined");
    net.restore(cut);
    REQUIRE(
        producer->wait_for_stderr("worker " + literal(cut_key) + "/.* joined", 20s, joins_before));
    std::ofstream(tmp.path("gate")) << "open";
    CHECK(answers_of(*producer) == std::vector<std::string>{kAnswer, kAnswer});
    CHECK(!slices_returned(*producer, 2, cut_key).empty());
    CHECK(slices_returned(*producer, 2, "").size() == 16);
  }

  TEST_CASE("the producer's link cut for less than the liveness limit: the job goes on" *
            doctest::timeout(120)) {
    TestNet net;
    if (net.skipped()) return;
    HostKeys keys;
    TempDir tmp;
    // TCP resends what a cut lost after 200 ms, then 400 ms, 800 ms...: a cut of C keeps a
    // connection silent for up to about C + 0.6 s. A 0.5 s cut against a 2 s liveness limit
    // must therefore go unnoticed.
    const std::vector<std::string> timing = {"--heartbeat", "0.2", "--liveness", "2"};
    constexpr auto kCut = 500ms;
    const std::string queue = address(1) + ":7702";
    Env env = kDoubled;
    env.insert(env.end(), {{"TEST_SLOW_AT", "0"},  // slice 0 sleeps 3 s, long enough to cut
                           {"TEST_SLOW_MS", "3000"},
                           {"TEST_SLOW_MARKER", tmp.path("slow")}});
    auto producer = start_producer(net, queue, env, timing + keys.producer_flags());
    auto pool2 = start_pool(net, 2, queue, 2, timing + keys.worker_flags(2));
    auto pool3 = start_pool(net, 3, queue, 2, timing + keys.worker_flags(3));

    const int index = first_to_log({pool2.get(), pool3.get()}, "slice 0 of job 1 started");
    INFO("producer stderr:\n" << producer->err());
    REQUIRE(index >= 0);
    const auto cut_at = Clock::now();
    net.cut(1);
    std::this_thread::sleep_for(kCut);  // the cut itself
    net.restore(1);
    const std::chrono::duration<double, std::milli> cut_for = Clock::now() - cut_at;
    INFO("the link was down for at most " << cut_for.count() << " ms");
    CHECK(cut_for < 1500ms);  // else the restore itself was too slow for this test to mean much

    CHECK(answers_of(*producer) == std::vector<std::string>{kAnswer});
    CHECK(producer->count_stderr(" (lost|left): ") == 0);
    CHECK(producer->count_stderr("job 1 done after .* 0 re-run") == 1);
    for (Process* pool : {pool2.get(), pool3.get()}) {
      INFO("pool stderr:\n" << pool->err());
      CHECK(pool->count_stderr("silent for") == 0);
    }
    // The slow slice was returned by the worker that was computing it across the cut.
    CHECK(slices_returned(*producer, 1, keys.key(index + 2)).contains(0));
  }

  TEST_CASE("50 ms delay and 1% loss on every link: the answer is exact; the cost is printed" *
            doctest::timeout(180)) {
    TestNet net;
    if (net.skipped()) return;
    HostKeys keys;
    TempDir tmp;
    const bool netem = [] {
      Process probe({kTestnet, "has-netem"});
      return probe.wait(30s) == 0;
    }();
    constexpr int kJobs = 12;  // timed, after one that warms the pools up
    const std::string queue = address(1) + ":7703";
    std::vector<std::unique_ptr<Process>> pools;
    for (int host = 2; host <= 4; ++host) {
      pools.push_back(start_pool(net, host, queue, 2, kQuick + keys.worker_flags(host)));
    }

    // The same job, the same pools: on a clean network, then on the impaired one.
    auto timed_run = [&](const std::string& listen, const std::string& gate) {
      Env env = kDoubled;
      env.insert(
          env.end(),
          {{"TEST_REPEAT", std::to_string(kJobs + 1)}, {"TEST_GATE", gate}, {"TEST_TIMING", "1"}});
      auto producer = start_producer(net, listen, env, kQuick + keys.producer_flags());
      // Every worker joined before the timed jobs start.
      INFO("producer stderr:\n" << producer->err());
      REQUIRE(producer->wait_for_stderr("debug: worker .* joined", 30s, 5));
      std::ofstream(gate) << "open";
      CHECK(answers_of(*producer) == std::vector<std::string>(kJobs + 1, kAnswer));
      std::vector<double> seconds;
      for (const auto& [job, s] : job_times(*producer)) {
        if (job > 1) seconds.push_back(s);
      }
      REQUIRE(seconds.size() == kJobs);
      return seconds;
    };
    const std::vector<double> clean = timed_run(queue, tmp.path("gate-clean"));

    std::unique_ptr<Process> relay;
    std::string listen = queue;
    if (netem) {
      net.run({"impair", "--delay", "50", "--loss", "1"});
    } else {
      // No netem in this kernel: nftables drops 1% of what each host sends, and a relay before
      // the producer delays each direction by 50 ms; the producer listens behind it.
      net.run({"impair", "--loss", "1"});
      listen = "127.0.0.1:7704";
      relay =
          std::make_unique<Process>(net.on("h1", {"/usr/bin/env", "python3", kRelay, "--listen",
                                                  queue, "--target", listen, "--delay-ms", "50"}),
                                    net.env());
      INFO("relay: " << relay->err());
      REQUIRE(relay->wait_for_stderr("listening on", 30s));
    }
    const std::vector<double> impaired = timed_run(listen, tmp.path("gate-impaired"));
    const std::string dropped = net.run({"dropped"});

    const double clean_ms = 1000 * median(clean);
    const double impaired_ms = 1000 * median(impaired);
    std::printf(
        "network: a job of 16 trivial slices, 3 worker hosts of 2 workers, keys on, median of %d "
        "jobs: clean %.1f ms (%.1f to %.1f), 50 ms delay and 1%% loss on every link %.1f ms (%.1f "
        "to %.1f), %.1fx; delay by %s, %s packet(s) dropped\n",
        kJobs, clean_ms, 1000 * *std::min_element(clean.begin(), clean.end()),
        1000 * *std::max_element(clean.begin(), clean.end()), impaired_ms,
        1000 * *std::min_element(impaired.begin(), impaired.end()),
        1000 * *std::max_element(impaired.begin(), impaired.end()), impaired_ms / clean_ms,
        netem ? "netem" : "tools/net/delay_relay.py",
        dropped.substr(0, dropped.find('\n')).c_str());
    std::fflush(stdout);
    // A job is at least one round trip (ASSIGN, RESULT): 100 ms more when the delay is real.
    CHECK(impaired_ms >= clean_ms + 90);
  }

  TEST_CASE("traffic on the wire: plain text with --insecure, encrypted with keys" *
            doctest::timeout(120)) {
    TestNet net;
    if (net.skipped()) return;
    HostKeys keys;
    TempDir tmp;
    bool with_keys = false;
    SUBCASE("with --insecure") {
      with_keys = false;
    }
    SUBCASE("with keys") {
      with_keys = true;
    }
    const std::string marker = "pymar-net-marker-" + std::to_string(std::random_device()());
    const std::string capture = tmp.path("capture.pcap");
    const std::string queue = address(1) + (with_keys ? ":7705" : ":7706");

    Process tcpdump(net.on("bridge", {"tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode", "-Z",
                                      "root", "-w", capture, "tcp"}),
                    net.env());
    INFO("tcpdump: " << tcpdump.err());
    REQUIRE(tcpdump.wait_for_stderr("listening on br0", 30s));

    Env env = kDoubled;
    env.emplace_back("TEST_SLOW_MARKER", marker);  // a source parameter; no slice is slowed
    const std::vector<std::string> insecure = {"--insecure"};
    auto producer =
        start_producer(net, queue, env, kQuick + (with_keys ? keys.producer_flags() : insecure));
    auto pool2 =
        start_pool(net, 2, queue, 1, kQuick + (with_keys ? keys.worker_flags(2) : insecure));
    auto pool3 =
        start_pool(net, 3, queue, 1, kQuick + (with_keys ? keys.worker_flags(3) : insecure));
    CHECK(answers_of(*producer) == std::vector<std::string>{kAnswer});
    CHECK(slices_returned(*producer, 1, "").size() == 16);  // all computed on the other hosts
    std::smatch started;
    const std::string log = producer->err();
    REQUIRE(std::regex_search(log, started, std::regex("job 1: (\\S+) over ")));
    const std::string producer_name = started[1].str();
    CHECK(producer_name == "DoubleSum<16>");

    pool2.reset();
    pool3.reset();
    tcpdump.signal(SIGINT);
    REQUIRE(tcpdump.wait(30s) == 0);
    const std::string traffic = read_file(capture);
    INFO("capture: " << traffic.size() << " bytes; " << tcpdump.err());
    REQUIRE(traffic.size() > 1000);
    // The ZMTP greeting names its security mechanism in the clear: proof of what was captured.
    CHECK((traffic.find("CURVE") != std::string::npos) == with_keys);
    CHECK((traffic.find(marker) != std::string::npos) == !with_keys);
    CHECK((traffic.find(producer_name) != std::string::npos) == !with_keys);
  }
}
