// `task --status --pool`, with a real pool on a real socket: the supervisor tells what each of
// its worker processes does, and what it says is what happened (the pids are its children, the
// computing one is the one in the slow slice, a killed one shows as restarted). Only through a
// folder that only this user enters.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/process.hpp"

using namespace pymar::test;

namespace {

namespace fs = std::filesystem;
using Env = std::vector<std::pair<std::string, std::string>>;

/// A runtime folder of this test's own (XDG_RUNTIME_DIR), so that pools of other tests running
/// at the same time do not show.
struct RuntimeDir {
  fs::path root;
  RuntimeDir() {
    std::string pattern = (fs::temp_directory_path() / "pymar-runtime-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    root = pattern;
  }
  ~RuntimeDir() {
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
  Env env() const { return {{"XDG_RUNTIME_DIR", root.string()}}; }
};

struct Asked {
  int status = -1;
  std::string out;
  std::string err;
};

Asked ask(const RuntimeDir& dir, std::vector<std::string> extra) {
  std::vector<std::string> argv = {binary("test/test_task"), "--status", "--pool"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Process status(argv, dir.env());
  const auto code = status.wait(60s);
  REQUIRE(code.has_value());
  return {*code, status.out(), status.err()};
}

/// The supervisor's children, as the kernel lists them.
std::set<long> children_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::set<long> out;
  for (long child; in >> child;) out.insert(child);
  return out;
}

/// One worker of a POOL STATUS in JSON (the layout is pool_status_json's own; the schema check
/// covers the rest).
struct WorkerRecord {
  long slot = 0;
  long pid = 0;
  std::string state;
  bool connected = false;
  long restarts = 0;
  long crashes = 0;
  std::string job;
  std::string slice;
  std::string previous_end;
};

std::vector<WorkerRecord> workers_of(const std::string& json) {
  static const std::regex pattern(
      "\\{\"slot\": (\\d+), \"pid\": (\\d+|null), \"state\": \"(\\w+)\", \"connected\": "
      "(true|false), \"restarts\": (\\d+), \"crashes\": (\\d+), \"job\": (\\d+|null), "
      "\"slice\": (\\d+|null), \"previous_end\": (null|\"[^\"]*\")\\}");
  std::vector<WorkerRecord> out;
  for (std::sregex_iterator it(json.begin(), json.end(), pattern), end; it != end; ++it) {
    const auto& m = *it;
    out.push_back({std::stol(m[1]), m[2] == "null" ? 0 : std::stol(m[2]), m[3], m[4] == "true",
                   std::stol(m[5]), std::stol(m[6]), m[7], m[8], m[9]});
  }
  return out;
}

/// Runs tools/check-stats.py with doc/pool-status.schema.json on `json`.
bool validates(const std::string& json, const std::string& name) {
  const fs::path path = fs::temp_directory_path() / name;
  std::ofstream(path) << json;
  Process check({source_file("tools/check-stats.py"), path.string(),
                 source_file("doc/pool-status.schema.json")});
  const auto status = check.wait(60s);
  INFO("check-stats stdout: " << check.out() << "\nstderr: " << check.err());
  CHECK(status == 0);
  fs::remove(path);
  return status == 0;
}

}  // namespace

TEST_SUITE("status") {
  TEST_CASE("--status --pool shows each worker process as it is, and a killed one as restarted" *
            doctest::timeout(180)) {
    RuntimeDir dir;
    const unsigned port = free_port();
    const std::string queue = "127.0.0.1:" + std::to_string(port);
    const std::string marker = (dir.root / "slow-marker").string();
    // Slice 1 of 4 takes a minute the first time: one worker computes it while we ask.
    Process producer(
        {binary("test/test_task"), "--produce", "-q", queue, "--grace", "60", "--no-speculation"},
        {{"TEST_JOB", "doubled"},
         {"TEST_LENGTH", "100"},
         {"TEST_SLOW_AT", "30"},
         {"TEST_SLOW_MS", "60000"},
         {"TEST_SLOW_MARKER", marker}});
    Env env = dir.env();
    Process pool({binary("test/test_task"), "--worker", "-vv", "-q", queue, "-w", "2"}, env);
    const auto first = pool.wait_for_stderr("first attempt at a scripted slice");
    REQUIRE(first.has_value());
    const long busy = pid_of_log_line(*first);
    REQUIRE(fs::exists(dir.root / "pymar" / ("pool-" + std::to_string(pool.pid()) + ".sock")));
    CHECK((fs::status(dir.root / "pymar").permissions() & fs::perms::all) == fs::perms::owner_all);

    Asked asked = ask(dir, {std::to_string(pool.pid()), "--json"});
    INFO("answer:\n" << asked.out << asked.err);
    REQUIRE(asked.status == 0);
    CHECK(validates(asked.out, "pymar-pool-status-" + std::to_string(port) + ".json"));
    CHECK(asked.out.find("\"pid\": " + std::to_string(pool.pid()) + ",") != std::string::npos);
    CHECK(asked.out.find("\"producer\": \"tcp://" + queue + "\"") != std::string::npos);
    CHECK(asked.out.find("\"workers_total\": 2,") != std::string::npos);
    std::vector<WorkerRecord> workers = workers_of(asked.out);
    REQUIRE(workers.size() == 2);
    std::set<long> pids;
    for (const WorkerRecord& w : workers) {
      pids.insert(w.pid);
      CHECK(w.restarts == 0);
      CHECK(w.crashes == 0);
      CHECK(w.previous_end == "null");
      if (w.pid == busy) {
        // The first job of this producer run, slice 1: the slow one.
        CHECK(w.state == "computing");
        CHECK(w.job == "1");
        CHECK(w.slice == "1");
        CHECK(w.connected);
      }
    }
    CHECK(pids == children_of(pool.pid()));
    CHECK(pids.contains(busy));

    // Killed: the pool restarts it at once, and says so.
    REQUIRE(::kill(static_cast<pid_t>(busy), SIGKILL) == 0);
    REQUIRE(pool.wait_for_stderr("started worker process \\d+ in slot", 60s, 2));
    asked = ask(dir, {std::to_string(pool.pid()), "--json"});
    REQUIRE(asked.status == 0);
    workers = workers_of(asked.out);
    REQUIRE(workers.size() == 2);
    const auto restarted = std::find_if(workers.begin(), workers.end(),
                                        [](const WorkerRecord& w) { return w.restarts > 0; });
    REQUIRE(restarted != workers.end());
    CHECK(restarted->restarts == 1);
    CHECK(restarted->crashes == 1);
    CHECK(restarted->previous_end == "\"killed by SIGKILL\"");
    CHECK(restarted->pid != busy);
    std::set<long> now;
    for (const WorkerRecord& w : workers) now.insert(w.pid);
    CHECK(now == children_of(pool.pid()));

    // For people: one line for the pool, one per worker process.
    asked = ask(dir, {std::to_string(pool.pid())});
    CHECK(asked.status == 0);
    CHECK(asked.out.find("pool " + std::to_string(pool.pid()) + " of test_task (build ") == 0);
    CHECK(asked.out.find("2 worker process(es) serving the producer at tcp://" + queue) !=
          std::string::npos);
    CHECK(asked.out.find("killed by SIGKILL") != std::string::npos);
    // Without a pid: every pool of this user (here, of this test's runtime folder).
    asked = ask(dir, {"--json"});
    CHECK(asked.status == 0);
    CHECK(asked.out.find("{\"pools\": [{\"pid\": " + std::to_string(pool.pid()) + ",") == 0);

    CHECK(producer.wait(120s) == 0);
    pool.signal(SIGTERM);
    CHECK(pool.wait(60s) == 0);
    // The socket goes with the pool.
    CHECK_FALSE(fs::exists(dir.root / "pymar" / ("pool-" + std::to_string(pool.pid()) + ".sock")));
    asked = ask(dir, {});
    CHECK(asked.status == 0);
    CHECK(asked.out == "no worker pool of this user runs here\n");
    asked = ask(dir, {std::to_string(pool.pid())});
    CHECK(asked.status == 1);
    CHECK(asked.err.find("no such socket") != std::string::npos);
  }

  TEST_CASE("a pool whose socket folder others may enter keeps no status socket" *
            doctest::timeout(120)) {
    RuntimeDir dir;
    const fs::path open = dir.root / "pymar";
    fs::create_directory(open);
    fs::permissions(open, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    Process pool({binary("test/test_task"), "--worker", "-q",
                  "127.0.0.1:" + std::to_string(free_port()), "-w", "1"},
                 dir.env());
    const auto warning = pool.wait_for_stderr("no status socket for this pool");
    REQUIRE(warning.has_value());
    CHECK(warning->find("must be 0700") != std::string::npos);
    CHECK(fs::is_empty(open));
    const Asked asked = ask(dir, {std::to_string(pool.pid())});
    CHECK(asked.status == 1);
    CHECK(asked.err.find("must be 0700") != std::string::npos);
    pool.signal(SIGTERM);
    CHECK(pool.wait(60s) == 0);
  }
}
