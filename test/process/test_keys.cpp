// Keys and exposure, with real binaries on real sockets: a producer with CurveZMQ keys serves
// only the workers it was told to let in, workers talk only to the producer key they were given,
// and nothing listens beyond loopback without keys unless the user says --insecure.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
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

const std::string kAnswer = "999000";  // TEST_JOB=doubled over 1000 elements

std::string queue(unsigned port) {
  return "127.0.0.1:" + std::to_string(port);
}

/// A folder of key pairs made by the task's own --keygen, removed at the end of the test.
class KeyFolder {
 public:
  KeyFolder() {
    std::string pattern = (fs::temp_directory_path() / "pymar-keys-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    root_ = pattern;
  }
  ~KeyFolder() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  KeyFolder(const KeyFolder&) = delete;
  KeyFolder& operator=(const KeyFolder&) = delete;

  /// Makes SUBDIR/NAME.key and SUBDIR/NAME.key_secret; returns the public key's path.
  std::string make(const std::string& subdir, const std::string& name) {
    Process keygen(
        {binary("test/test_task"), "--keygen", (root_ / subdir).string(), "--key-name", name});
    const auto status = keygen.wait(60s);
    INFO("keygen stderr: " << keygen.err());
    REQUIRE(status == 0);
    return (root_ / subdir / (name + ".key")).string();
  }

  std::string path(const std::string& relative) const { return (root_ / relative).string(); }

 private:
  fs::path root_;
};

/// The usual keys of a test: a producer, and a worker it allows in keys/allowed.
struct Keys {
  KeyFolder folder;
  std::string producer_public = folder.make("producer", "producer");
  std::string producer_secret = producer_public + "_secret";
  std::string worker_public = folder.make("allowed", "worker");
  std::string worker_secret = worker_public + "_secret";
  std::string allowed = folder.path("allowed");

  std::vector<std::string> producer_flags() const {
    return {"--secret-key", producer_secret, "--allow", allowed};
  }
  std::vector<std::string> worker_flags() const {
    return {"--secret-key", worker_secret, "--producer-key", producer_public};
  }
};

std::unique_ptr<Process> start_pool(unsigned port, unsigned workers,
                                    std::vector<std::string> extra) {
  std::vector<std::string> argv = {
      binary("test/test_task"), "--worker", "-v", "-q", queue(port), "-w", std::to_string(workers)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv);
}

/// A producer of TEST_JOB=doubled over 1000 elements in 16 slices, logging each worker joining.
/// With `slow`, slice 0 takes 3 s the first time, so that the job is still running while a test
/// throws things at it.
std::unique_ptr<Process> start_producer(unsigned port, std::vector<std::string> extra,
                                        const std::string& grace = "60", bool slow = false) {
  std::vector<std::string> argv = {
      binary("test/test_task"), "--produce", "-v", "-q", queue(port), "--grace", grace};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::vector<std::pair<std::string, std::string>> env = {
      {"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}, {"TEST_PARTS", "16"}};
  if (slow) {
    env.insert(env.end(),
               {{"TEST_SLOW_AT", "0"},
                {"TEST_SLOW_MS", "3000"},
                {"TEST_SLOW_MARKER", fresh_temp_path("pymar-keys-" + std::to_string(port))}});
  }
  return std::make_unique<Process>(argv, env);
}

std::string answer_of(Process& producer) {
  const auto status = producer.wait();
  INFO("producer stderr:\n" << producer.err());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  const auto answer = line_after(producer.out(), "Answer: ");
  REQUIRE(answer.has_value());
  return *answer;
}

/// A worker of the pool logs each slice of job 1 it computed (with -v).
const std::string kSliceFinished = "worker\\[[0-9]+\\] debug: slice [0-9]+ of job 1 finished";

/// Slices of job 1 that the pool's workers said they computed, so far.
std::size_t slices_computed_by(Process& pool) {
  return pool.count_stderr(kSliceFinished);
}

/// Whether the pool's workers say they computed at least `slices` slices of job 1. Waits for
/// the lines: a worker logs a slice before sending it, but the harness reads the pool's stderr
/// on a thread of its own, which may still be behind when the producer has its answer.
bool pool_computed_at_least(Process& pool, std::size_t slices) {
  return pool.wait_for_stderr(kSliceFinished, 60s, slices - 1).has_value();
}

long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The Z85 value of `field` ("public-key", "secret-key") in a certificate file.
std::string key_in(const std::string& path, const std::string& field) {
  const std::string text = read_file(path);
  const auto at = text.find(field + " = \"");
  REQUIRE(at != std::string::npos);
  return text.substr(at + field.size() + 4, 40);
}

/// The build the producer runs, from its "listening on ... (build X)" line: what a peer learns
/// from a refusal, and all a forging peer needs to register.
std::string build_of(Process& producer) {
  const auto listening = producer.wait_for_stderr("listening on .* \\(build [^)]+\\)");
  REQUIRE(listening);
  const std::size_t at = listening->rfind("(build ") + 7;
  return listening->substr(at, listening->find(')', at) - at);
}

}  // namespace

TEST_SUITE("keys") {
  TEST_CASE("--keygen makes certificates only their owner can read, and refuses to overwrite" *
            doctest::timeout(120)) {
    KeyFolder folder;
    const std::string public_path = folder.make("k", "node1");
    for (const std::string& path : {public_path, public_path + "_secret"}) {
      struct stat info {};
      REQUIRE(stat(path.c_str(), &info) == 0);
      CHECK((info.st_mode & 0777) == 0600);
    }
    const std::string public_text = read_file(public_path);
    const std::string secret_text = read_file(public_path + "_secret");
    CHECK(public_text.find("public-key = \"") != std::string::npos);
    CHECK(public_text.find("secret-key") == std::string::npos);
    CHECK(secret_text.find("secret-key = \"") != std::string::npos);

    Process again({binary("test/test_task"), "--keygen", folder.path("k"), "--key-name", "node1"});
    CHECK(again.wait(60s) == 1);
    CHECK(again.err().find("File exists") != std::string::npos);
    CHECK(read_file(public_path) == public_text);  // the old key is still there

    // Without --key-name, the pair is named after the host.
    Process unnamed({binary("test/test_task"), "--keygen", folder.path("host")});
    CHECK(unnamed.wait(60s) == 0);
    std::array<char, 256> host{};
    REQUIRE(gethostname(host.data(), host.size() - 1) == 0);
    CHECK(fs::exists(folder.path("host/" + std::string(host.data()) + ".key")));
    CHECK(fs::exists(folder.path("host/" + std::string(host.data()) + ".key_secret")));
  }

  TEST_CASE("a secret key file others can read is refused, with the command that fixes it" *
            doctest::timeout(120)) {
    Keys keys;
    REQUIRE(chmod(keys.producer_secret.c_str(), 0644) == 0);
    const unsigned port = free_port();
    auto producer = start_producer(port, keys.producer_flags());
    CHECK(producer->wait(60s) == 2);
    CHECK(producer->err().find("chmod 600 " + keys.producer_secret) != std::string::npos);
  }

  TEST_CASE("with keys, an allowed pool computes the job and gets the exact answer" *
            doctest::timeout(180)) {
    Keys keys;
    const unsigned port = free_port();
    auto producer = start_producer(port, keys.producer_flags());
    REQUIRE(producer->wait_for_stderr("listening on .* with key"));
    auto pool = start_pool(port, 2, keys.worker_flags());
    CHECK(answer_of(*producer) == kAnswer);
    // Registrations carry the worker's key in their id; the workers computed every slice.
    const std::string worker_key = key_in(keys.worker_public, "public-key");
    const auto joined = producer->wait_for_stderr("debug: worker .* joined");
    REQUIRE(joined);
    CHECK(joined->find("worker " + worker_key + "/") != std::string::npos);
    CHECK(producer->count_stderr("refused a peer") == 0);
    CHECK(pool_computed_at_least(*pool, 16));
    pool->signal(SIGTERM);
    CHECK(pool->wait(60s) == 0);
  }

  TEST_CASE("--produce -w N with keys lets its own workers in and nobody else" *
            doctest::timeout(180)) {
    Keys keys;
    const unsigned port = free_port();
    auto producer = start_producer(
        port, {"--secret-key", keys.producer_secret, "--allow", keys.allowed, "-w", "2"});
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(producer->count_stderr("debug: worker .* joined") >= 1);
    CHECK(producer->count_stderr("computing .* locally") == 0);
  }

  TEST_CASE("a worker whose key is not allowed gets nothing, says why, and its pool exits 3" *
            doctest::timeout(180)) {
    Keys keys;
    const std::string stranger = keys.folder.make("elsewhere", "stranger");
    const unsigned port = free_port();
    // A short grace: with no worker let in, the producer computes locally.
    auto producer = start_producer(port, keys.producer_flags(), "2");
    REQUIRE(producer->wait_for_stderr("listening on"));
    auto pool = start_pool(
        port, 2, {"--secret-key", stranger + "_secret", "--producer-key", keys.producer_public});
    const auto status = pool->wait(60s);
    INFO("pool stderr:\n" << pool->err());
    CHECK(status == 3);
    CHECK(pool->count_stderr("refused this worker's key") >= 1);
    CHECK(producer->wait_for_stderr("refused a peer at .* whose public key .* is not allowed"));
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(producer->count_stderr("joined") == 0);
    CHECK(slices_computed_by(*pool) == 0);
    // Rate-limited: at most one line per key for each doubling of its refusals.
    CHECK(producer->count_stderr("refused a peer") <= 3);
  }

  TEST_CASE("a worker without keys is refused by a producer with keys and exits 3" *
            doctest::timeout(180)) {
    Keys keys;
    const unsigned port = free_port();
    auto producer = start_producer(port, keys.producer_flags(), "2");
    REQUIRE(producer->wait_for_stderr("listening on"));
    auto pool = start_pool(port, 1, {});
    const auto status = pool->wait(60s);
    INFO("pool stderr:\n" << pool->err());
    CHECK(status == 3);
    CHECK(pool->count_stderr("requires keys: give this worker --secret-key and --producer-key") ==
          1);
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(producer->count_stderr("joined") == 0);
  }

  TEST_CASE("a worker never talks to a producer whose key is not the one it was given" *
            doctest::timeout(180)) {
    // The squatter is a real producer on the port, with keys of its own and the worker's key
    // allowed: it would hand out slices of its choosing if the worker talked to it.
    Keys keys;
    KeyFolder other;
    const std::string squatter_key = other.make("producer", "squatter");
    const unsigned port = free_port();
    auto squatter = start_producer(
        port, {"--secret-key", squatter_key + "_secret", "--allow", keys.allowed}, "3");
    REQUIRE(squatter->wait_for_stderr("listening on"));
    auto pool = start_pool(port, 1, keys.worker_flags());
    REQUIRE(
        pool->wait_for_stderr("not the producer this worker was given .*its key is not the "
                              "one given with --producer-key"));
    CHECK(answer_of(*squatter) == kAnswer);  // computed locally: the worker never joined
    CHECK(squatter->count_stderr("joined") == 0);
    CHECK(slices_computed_by(*pool) == 0);
    CHECK(pool->running());  // a squatter does not stop the pool; the real producer may come
  }

  TEST_CASE("a worker with keys does not talk to a producer without keys" * doctest::timeout(180)) {
    Keys keys;
    const unsigned port = free_port();
    auto squatter = start_producer(port, {}, "3");
    REQUIRE(squatter->wait_for_stderr("listening on"));
    auto pool = start_pool(port, 1, keys.worker_flags());
    REQUIRE(pool->wait_for_stderr("not the producer this worker was given .*does not use keys"));
    CHECK(answer_of(*squatter) == kAnswer);
    CHECK(squatter->count_stderr("joined") == 0);
    CHECK(slices_computed_by(*pool) == 0);
  }

  TEST_CASE("an allowed peer cannot speak for a registration made with another key" *
            doctest::timeout(180)) {
    Keys keys;
    const std::string intruder = keys.folder.make("allowed", "intruder");
    const unsigned port = free_port();
    auto producer = start_producer(port, keys.producer_flags(), "60", true);
    REQUIRE(producer->wait_for_stderr("listening on"));
    auto pool = start_pool(port, 1, keys.worker_flags());
    const auto joined = producer->wait_for_stderr("debug: worker .* joined");
    REQUIRE(joined);
    // The real worker's routing id, as the producer logged it.
    const std::size_t start = joined->find("worker ", joined->find("debug:")) + 7;
    const std::string victim = joined->substr(start, joined->find(" joined") - start);
    REQUIRE(victim.size() > 41);

    {
      // An invited peer (its key is allowed) that takes the victim's routing id. Every message
      // it sends carries its own key, so the producer drops it as speaking for another key.
      zmq::context_t context;
      zmq::socket_t peer(context, zmq::socket_type::dealer);
      peer.set(zmq::sockopt::linger, 0);
      peer.set(zmq::sockopt::routing_id, victim);
      peer.set(zmq::sockopt::curve_serverkey, key_in(keys.producer_public, "public-key"));
      peer.set(zmq::sockopt::curve_publickey, key_in(intruder + "_secret", "public-key"));
      peer.set(zmq::sockopt::curve_secretkey, key_in(intruder + "_secret", "secret-key"));
      peer.connect("tcp://" + queue(port));
      std::string header;
      wire::encode(wire::Result{{1, 1}, 1, {{0, false, 10, 0, "std::runtime_error", "forged"}}},
                   header);
      for (int i = 0; i < 50; ++i) (void)peer.send(zmq::buffer(header), zmq::send_flags::none);
      REQUIRE(producer->wait_for_stderr("routing id names another peer's key"));
    }
    CHECK(answer_of(*producer) == kAnswer);  // the forged failure changed nothing
    CHECK(pool_computed_at_least(*pool, 16));
    CHECK(producer->count_stderr("routing id names another peer's key") <= 10);
  }

  TEST_CASE("without keys, a peer cannot guess a worker's routing id and take over its link" *
            doctest::timeout(180)) {
    // The producer lets a reconnecting worker take over its own routing id. An id made of the
    // host, pid and a counter alone would let any peer that knows them take over the link.
    const unsigned port = free_port();
    auto producer = start_producer(port, {}, "60", true);
    REQUIRE(producer->wait_for_stderr("listening on"));
    auto pool = start_pool(port, 1, {});
    const auto joined = producer->wait_for_stderr("debug: worker .* joined \\(pid [0-9]+ on");
    REQUIRE(joined);
    const std::size_t at = joined->find("(pid ") + 5;
    const std::string pid = joined->substr(at, joined->find(' ', at) - at);
    std::array<char, 256> host{};
    REQUIRE(gethostname(host.data(), host.size() - 1) == 0);

    zmq::context_t context;
    zmq::socket_t impostor(context, zmq::socket_type::dealer);
    impostor.set(zmq::sockopt::linger, 0);
    impostor.set(zmq::sockopt::routing_id, std::string(host.data()) + "/" + pid + "/1");
    impostor.connect("tcp://" + queue(port));
    (void)impostor.send(zmq::buffer(wire::encode(wire::Heartbeat{0})), zmq::send_flags::none);
    // Had it taken the worker's place, the slow slice's batch-mates, heartbeats and CANCELs
    // meant for the worker would come here. A stranger is only asked who it is.
    std::vector<std::string> received;
    while (producer->running()) {
      zmq::pollitem_t item{impostor.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
      std::vector<zmq::message_t> frames;
      REQUIRE(zmq::recv_multipart(impostor, std::back_inserter(frames)));
      received.push_back(
          wire::type_name(wire::decode(frames[0].to_string_view(), frames.size() - 1)));
    }
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(pool_computed_at_least(*pool, 16));
    for (const std::string& type : received) CHECK(type == "WHO");
  }

  TEST_CASE("a raw TCP peer sending a never-ending message costs a producer with keys nothing" *
            doctest::timeout(180)) {
    Keys keys;
    const unsigned port = free_port();
    auto producer = start_producer(port, keys.producer_flags());
    REQUIRE(producer->wait_for_stderr("job 1: .* 0 worker\\(s\\) connected"));
    const long before = resident_kib(producer->pid());
    REQUIRE(before > 0);
    // Up to 512 MiB of an unfinished message: the producer hangs up at the greeting instead.
    Process endless(
        {binary("test/hostile_peer"), "endless", "127.0.0.1", std::to_string(port), "512"});
    REQUIRE(endless.wait_for_stdout("sent [0-9]+ bytes; the producer"));
    CHECK(endless.out().find("the producer hung up") != std::string::npos);
    const long after = resident_kib(producer->pid());
    INFO("producer RSS before " << before << " KiB, after " << after << " KiB");
    CHECK(after - before < 16 * 1024);  // stated bound: 16 MiB
    CHECK(endless.wait(60s) == 0);

    auto pool = start_pool(port, 2, keys.worker_flags());
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(pool_computed_at_least(*pool, 16));
  }

  TEST_CASE("a forging peer gets no slice from a producer with keys, with no key or a stranger's" *
            doctest::timeout(180)) {
    Keys keys;
    const std::string stranger = keys.folder.make("elsewhere", "stranger");
    const unsigned port = free_port();
    auto producer = start_producer(port, keys.producer_flags(), "60", true);
    const std::string build = build_of(*producer);
    // Both know the build and answer every slice with 1 at once: they would win every race.
    Process keyless({binary("test/hostile_peer"), "forge", queue(port), build, "DoubleSum<16>",
                     "Scripted", "1"});
    Process stranger_peer({binary("test/hostile_peer"), "forge", queue(port), build,
                           "DoubleSum<16>", "Scripted", "1", stranger + "_secret",
                           keys.producer_public});
    REQUIRE(producer->wait_for_stderr("refused a peer at .* whose public key .* is not allowed"));
    auto pool = start_pool(port, 2, keys.worker_flags());
    CHECK(answer_of(*producer) == kAnswer);
    CHECK(pool_computed_at_least(*pool, 16));
    for (Process* peer : {&keyless, &stranger_peer}) {
      peer->signal(SIGTERM);
      CHECK(peer->wait(60s) == 0);
      CHECK(peer->out().find("forged 0 slices") != std::string::npos);
      CHECK(peer->out().find("given") == std::string::npos);
    }
  }

  TEST_CASE("without keys every peer that reaches the port is trusted, as the README warns" *
            doctest::timeout(180)) {
    // What a network must be trusted not to do when keys are off (loopback, or --insecure).
    const unsigned port = free_port();
    auto producer = start_producer(port, {});
    const std::string build = build_of(*producer);
    REQUIRE(producer->wait_for_stderr("job 1: .* 0 worker\\(s\\) connected"));

    // An unfinished message is held whole while the connection stays open.
    const long before = resident_kib(producer->pid());
    Process endless(
        {binary("test/hostile_peer"), "endless", "127.0.0.1", std::to_string(port), "64"});
    REQUIRE(endless.wait_for_stdout("sent [0-9]+ bytes; the producer"));
    CHECK(endless.out().find("the producer took it all") != std::string::npos);
    const long after = resident_kib(producer->pid());
    INFO("producer RSS before " << before << " KiB, after " << after << " KiB");
    CHECK(after - before > 32 * 1024);
    endless.signal(SIGTERM);
    CHECK(endless.wait(60s) == 0);

    // A peer that knows the build registers and its forged partials make the answer: 16 x 1.
    Process forger({binary("test/hostile_peer"), "forge", queue(port), build, "DoubleSum<16>",
                    "Scripted", "1"});
    CHECK(answer_of(*producer) == "16");
    forger.signal(SIGTERM);
    CHECK(forger.wait(60s) == 0);
    CHECK(forger.out().find("forged 16 slices") != std::string::npos);
  }

  TEST_CASE("nothing listens beyond loopback without keys, unless --insecure says so" *
            doctest::timeout(120)) {
    const unsigned port = free_port();
    Process producer({binary("test/test_task"), "--produce", "-q", "*:" + std::to_string(port)});
    CHECK(producer.wait(60s) == 2);
    CHECK(producer.err().find("needs keys: make them with") != std::string::npos);
    CHECK(producer.count_stderr(".") == 1);  // one line

    // A worker pool is just as closed: it would let any producer there pick its files.
    Process pool({binary("test/test_task"), "--worker", "-q", "192.0.2.1:7627"});
    CHECK(pool.wait(60s) == 2);
    CHECK(pool.err().find("needs keys") != std::string::npos);

    // The default is loopback, and --insecure opens every interface, with a warning.
    Process insecure(
        {binary("test/test_task"), "--produce", "-q", "*:0", "--insecure", "--grace", "0"},
        {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}, {"TEST_PARTS", "16"}});
    CHECK(answer_of(insecure) == kAnswer);
    CHECK(insecure.count_stderr("warning: --insecure: listening on \\*:0 without keys") == 1);
    Process local({binary("test/test_task"), "--produce", "-q", ":0", "--grace", "0"},
                  {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}, {"TEST_PARTS", "16"}});
    CHECK(local.wait_for_stderr("listening on tcp://127\\.0\\.0\\.1:"));
    CHECK(answer_of(local) == kAnswer);
  }
}
