// Job statistics with real binaries on real sockets: `--stats FILE` and map_with_stats say who
// computed what, and it is what the workers' own logs say they computed; a killed worker shows
// as a drop and its slice as re-run; the file validates against doc/stats.schema.json. And the
// log levels: stdout carries only the user's output, whatever goes to stderr.
#include <doctest/doctest.h>

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/process.hpp"

using namespace pymar::test;

namespace {

namespace fs = std::filesystem;
using Env = std::vector<std::pair<std::string, std::string>>;

std::string queue(unsigned port) {
  return "127.0.0.1:" + std::to_string(port);
}

const std::vector<std::string> kQuick = {"--heartbeat", "0.1", "--liveness", "0.6"};

// -v: each worker process logs every slice it starts, which the statistics must match.
std::unique_ptr<Process> pool(unsigned port, unsigned workers) {
  std::vector<std::string> argv = {
      binary("test/test_task"), "--worker", "-v", "-q", queue(port), "-w", std::to_string(workers)};
  argv.insert(argv.end(), kQuick.begin(), kQuick.end());
  return std::make_unique<Process>(argv);
}

std::unique_ptr<Process> producer(unsigned port, const std::string& stats, Env env,
                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {
      binary("test/test_task"), "--produce", "-q", queue(port), "--grace", "60",
      "--no-speculation",       "--stats",   stats};
  argv.insert(argv.end(), kQuick.begin(), kQuick.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, env);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Runs tools/check-stats.py on `path`: true when it validates against the schema.
bool validates(const std::string& path) {
  Process check({source_file("tools/check-stats.py"), path});
  const auto status = check.wait(60s);
  INFO("check-stats stdout: " << check.out() << "\nstderr: " << check.err());
  CHECK(status == 0);
  return status == 0;
}

/// The JSON objects of the "jobs" array, each as text (the file writes one job per line).
std::vector<std::string> jobs_of(const std::string& document) {
  std::vector<std::string> jobs;
  std::istringstream lines(document);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("{\"job\":")) jobs.push_back(line.substr(0, line.rfind('}') + 1));
  }
  return jobs;
}

struct WorkerRecord {
  long pid = 0;
  long slices = 0;
  long elements = 0;
  bool dropped = false;
  std::string drop_reason;
};

struct SliceRecord {
  long index = 0;
  long length = 0;
  std::string worker;  // an index, "local" or null
  long attempts = 0;
};

// The layout is to_json's own (compact, fields in schema order); the schema check covers the
// rest. Regexes suffice for the fields the tests compare with what happened.
std::vector<WorkerRecord> workers_of(const std::string& job) {
  static const std::regex pattern(
      "\\{\"index\":\\d+,\"host\":\"[^\"]*\",\"pid\":(\\d+),\"slices\":(\\d+),"
      "\"elements\":(\\d+),\"compute_ns\":\\d+,\"bytes_out\":\\d+,\"bytes_in\":\\d+,"
      "\"dropped\":(true|false),\"drop_reason\":(null|\"[^\"]*\")\\}");
  std::vector<WorkerRecord> out;
  for (std::sregex_iterator it(job.begin(), job.end(), pattern), end; it != end; ++it) {
    out.push_back({std::stol((*it)[1]), std::stol((*it)[2]), std::stol((*it)[3]),
                   (*it)[4] == "true", (*it)[5]});
  }
  return out;
}

/// Every slice, by index, from the job's slice runs (a run stands for `count` slices alike).
std::vector<SliceRecord> slices_of(const std::string& job) {
  static const std::regex pattern(
      "\\{\"index\":(\\d+),\"count\":(\\d+),\"offset\":\\d+,\"length\":(\\d+),"
      "\"worker\":(\\d+|\"local\"|null),\"attempts\":(\\d+),");
  std::vector<SliceRecord> out;
  for (std::sregex_iterator it(job.begin(), job.end(), pattern), end; it != end; ++it) {
    const long first = std::stol((*it)[1]);
    for (long k = 0; k < std::stol((*it)[2]); ++k) {
      out.push_back({first + k, std::stol((*it)[3]), (*it)[4], std::stol((*it)[5])});
    }
  }
  return out;
}

long number(const std::string& json, const std::string& field) {
  const std::string key = "\"" + field + "\":";
  const auto at = json.find(key);
  REQUIRE(at != std::string::npos);
  return std::strtol(json.c_str() + at + key.size(), nullptr, 10);
}

std::string text(const std::string& json, const std::string& field) {
  const std::string key = "\"" + field + "\":";
  const auto at = json.find(key);
  REQUIRE(at != std::string::npos);
  const auto from = at + key.size();
  if (json.compare(from, 4, "null") == 0) return "null";
  REQUIRE(json[from] == '"');
  return json.substr(from + 1, json.find('"', from + 1) - from - 1);
}

/// Slices each worker process logged starting in job `job` (-v: "slice N of job J started").
std::map<long, long> slices_started_by_pid(Process& pool, int job) {
  std::map<long, long> by_pid;
  std::istringstream lines(pool.err());
  const std::regex started("slice \\d+ of job " + std::to_string(job) + " started");
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, started)) ++by_pid[pid_of_log_line(line)];
  }
  return by_pid;
}

}  // namespace

TEST_SUITE("stats") {
  TEST_CASE("--stats: each worker's slices are the ones its log says it computed") {
    const unsigned port = free_port();
    const std::string stats = fresh_temp_path("pymar-stats-" + std::to_string(port) + ".json");
    auto workers = pool(port, 2);
    // Two jobs of 1000 elements in 16 slices: a plain map, then map_with_stats.
    auto p = producer(port, stats,
                      {{"TEST_JOB", "doubled"},
                       {"TEST_LENGTH", "1000"},
                       {"TEST_PARTS", "16"},
                       {"TEST_REPEAT", "2"},
                       {"TEST_WITH_STATS", "1"}});
    REQUIRE(p->wait() == 0);
    INFO("producer stderr:\n" << p->err());
    // map_with_stats gives the value map gives.
    const std::string out = p->out();
    CHECK(out.find("Answer: 999000\nAnswer: 999000\n") == 0);

    REQUIRE(validates(stats));
    const std::vector<std::string> jobs = jobs_of(read_file(stats));
    REQUIRE(jobs.size() == 2);
    // The record map_with_stats returned is the one the file holds.
    CHECK(line_after(out, "Stats: ") == jobs[1]);

    for (int job = 1; job <= 2; ++job) {
      const std::string& record = jobs[static_cast<std::size_t>(job - 1)];
      INFO("job " << job << ": " << record);
      CHECK(number(record, "job") == job);
      CHECK(text(record, "ending") == "done");
      CHECK(number(record, "slices_total") == 16);
      CHECK(number(record, "slices_done") == 16);
      CHECK(number(record, "local_slices") == 0);
      CHECK(number(record, "first_result_ns") <= number(record, "wall_ns"));
      CHECK(number(record, "bytes_out") > 0);
      CHECK(number(record, "bytes_in") > 0);

      const auto worker_records = workers_of(record);
      const auto started = slices_started_by_pid(*workers, job);
      long slices = 0;
      long elements = 0;
      std::map<long, long> recorded;
      for (const WorkerRecord& w : worker_records) {
        slices += w.slices;
        elements += w.elements;
        recorded[w.pid] = w.slices;
        CHECK_FALSE(w.dropped);
      }
      CHECK(slices == 16);
      CHECK(elements == 1000);
      // Nobody was lost and nothing ran twice: each slice a worker started is one it returned.
      CHECK(recorded == started);

      const auto slice_records = slices_of(record);
      REQUIRE(slice_records.size() == 16);
      long length = 0;
      for (std::size_t i = 0; i < slice_records.size(); ++i) {
        CHECK(slice_records[i].index == static_cast<long>(i));
        CHECK(slice_records[i].attempts == 1);
        CHECK(slice_records[i].worker != "null");
        CHECK(slice_records[i].worker != "local");
        length += slice_records[i].length;
      }
      CHECK(length == 1000);
    }
  }

  TEST_CASE("--stats: a worker killed mid-slice shows as a drop, and its slice as re-run") {
    const unsigned port = free_port();
    const std::string stats = fresh_temp_path("pymar-stats-kill-" + std::to_string(port) + ".json");
    const std::string marker = fresh_temp_path("pymar-stats-kill-marker-" + std::to_string(port));
    auto workers = pool(port, 2);
    // Slice 1 (elements 25 to 49) takes a minute the first time, so the kill lands inside it.
    auto p = producer(port, stats,
                      {{"TEST_JOB", "doubled"},
                       {"TEST_LENGTH", "100"},
                       {"TEST_SLOW_AT", "30"},
                       {"TEST_SLOW_MS", "60000"},
                       {"TEST_SLOW_MARKER", marker}});
    const auto first = workers->wait_for_stderr("first attempt at a scripted slice");
    REQUIRE(first.has_value());
    const pid_t victim = pid_of_log_line(*first);
    REQUIRE(::kill(victim, SIGKILL) == 0);
    REQUIRE(p->wait() == 0);
    INFO("producer stderr:\n" << p->err());
    CHECK(line_after(p->out(), "Answer: ") == "9900");

    REQUIRE(validates(stats));
    const std::vector<std::string> jobs = jobs_of(read_file(stats));
    REQUIRE(jobs.size() == 1);
    const std::string& record = jobs[0];
    INFO("record: " << record);
    CHECK(text(record, "ending") == "done");
    CHECK(number(record, "reruns") >= 1);

    const auto worker_records = workers_of(record);
    std::optional<std::size_t> killed;
    for (std::size_t i = 0; i < worker_records.size(); ++i) {
      if (worker_records[i].pid == victim) killed = i;
    }
    REQUIRE(killed.has_value());
    CHECK(worker_records[*killed].dropped);
    // Its pool reports the SIGKILL when it restarts it; on a starved host the producer may
    // first give it up for its silence. Either is the drop of the killed process.
    CHECK(std::regex_search(worker_records[*killed].drop_reason,
                            std::regex("killed by SIGKILL|silent for")));
    CHECK(record.find("{\"time_ns\":") != std::string::npos);
    CHECK(std::regex_search(record, std::regex("\"kind\":\"worker_dropped\",\"detail\":\"[^\"]*"
                                               "pid " +
                                               std::to_string(victim))));
    CHECK(std::regex_search(record, std::regex("\"fault_counts\":\\{[^}]*\"worker_dropped\":1")));

    const auto slice_records = slices_of(record);
    REQUIRE(slice_records.size() == 4);
    CHECK(slice_records[1].attempts >= 2);
    // The counted result came from a worker other than the one killed.
    CHECK(slice_records[1].worker != std::to_string(*killed));
    CHECK(slice_records[1].worker != "null");
    long slices = 0;
    for (const WorkerRecord& w : worker_records) slices += w.slices;
    CHECK(slices == 4);
  }

  TEST_CASE("--local --stats: every slice is recorded as computed locally") {
    const std::string stats = fresh_temp_path("pymar-stats-local-" + std::to_string(free_port()));
    Process p({binary("test/test_task"), "--local", "--stats", stats}, {{"TEST_JOB", "doubled"},
                                                                        {"TEST_LENGTH", "1000"},
                                                                        {"TEST_REPEAT", "2"},
                                                                        {"TEST_WITH_STATS", "1"}});
    REQUIRE(p.wait() == 0);
    CHECK(p.out().find("Answer: 999000\nAnswer: 999000\n") == 0);
    REQUIRE(validates(stats));
    const std::vector<std::string> jobs = jobs_of(read_file(stats));
    REQUIRE(jobs.size() == 2);
    CHECK(line_after(p.out(), "Stats: ") == jobs[1]);
    const std::string& record = jobs[1];
    INFO("record: " << record);
    CHECK(text(record, "local_reason") == "local mode");
    CHECK(number(record, "local_slices") == 16);
    CHECK(number(record, "slices_done") == 16);
    for (const SliceRecord& s : slices_of(record)) {
      CHECK(s.worker == "\"local\"");
      CHECK(s.attempts == 1);
    }
  }

  TEST_CASE("--stats: a job that found no workers records every slice as computed locally") {
    // Only the file asks for statistics here: the I/O thread records the slices as runs, and the
    // slices computed locally after it are recorded one by one over them.
    const std::string stats =
        fresh_temp_path("pymar-stats-no-workers-" + std::to_string(free_port()));
    Process p({binary("test/test_task"), "--produce", "-q", queue(free_port()), "--grace", "0.2",
               "--stats", stats},
              {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "1000"}});
    REQUIRE(p.wait() == 0);
    CHECK(p.out().find("Answer: 999000\n") == 0);
    REQUIRE(validates(stats));
    const std::vector<std::string> jobs = jobs_of(read_file(stats));
    REQUIRE(jobs.size() == 1);
    const std::string& record = jobs[0];
    INFO("record: " << record);
    CHECK(text(record, "local_reason") == "no workers");
    CHECK(number(record, "local_slices") == 4);
    CHECK(number(record, "slices_done") == 4);
    const auto slice_records = slices_of(record);
    REQUIRE(slice_records.size() == 4);
    for (std::size_t i = 0; i < slice_records.size(); ++i) {
      CAPTURE(i);
      CHECK(slice_records[i].index == static_cast<long>(i));
      CHECK(slice_records[i].worker == "\"local\"");
      CHECK(slice_records[i].attempts == 1);
    }
  }

  TEST_CASE("--stats: two hundred jobs in one run make one valid file with every job") {
    const std::string stats = fresh_temp_path("pymar-stats-many-" + std::to_string(free_port()));
    Process p({binary("test/test_task"), "--local", "--stats", stats},
              {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "100"}, {"TEST_REPEAT", "200"}});
    REQUIRE(p.wait() == 0);
    REQUIRE(validates(stats));
    const std::vector<std::string> jobs = jobs_of(read_file(stats));
    REQUIRE(jobs.size() == 200);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      INFO("record " << i << ": " << jobs[i]);
      CHECK(number(jobs[i], "job") == static_cast<long>(i + 1));
      CHECK(text(jobs[i], "ending") == "done");
      CHECK(number(jobs[i], "slices_done") == 4);
    }
  }

  TEST_CASE("--stats: a failed job is written too, ending failed") {
    const std::string stats = fresh_temp_path("pymar-stats-failed-" + std::to_string(free_port()));
    Process p({binary("test/test_task"), "--local", "--stats", stats},
              {{"TEST_JOB", "doubled"}, {"TEST_LENGTH", "100"}, {"TEST_THROW_AT", "7"}});
    CHECK(p.wait() == 1);
    REQUIRE(validates(stats));
    const std::vector<std::string> jobs = jobs_of(read_file(stats));
    REQUIRE(jobs.size() == 1);
    CHECK(text(jobs[0], "ending") == "failed");
  }
}

TEST_SUITE("command line") {
  TEST_CASE("-vv: stdout carries only the answer, stderr every message") {
    // The integration example as a user runs it, with its own workers and every log line.
    Process p({binary("examples/integration"), "--produce", "-w", "2", "-vv", "-q",
               "127.0.0.1:" + std::to_string(free_port())});
    REQUIRE(p.wait() == 0);
    CHECK(p.out() == "Answer: 22023.7365011059\n");
    INFO("stderr:\n" << p.err());
    // Per-message lines (-vv), per-batch lines (-v) and information, all on stderr. The job may
    // end before the second worker registers: one READY is certain.
    CHECK(p.count_stderr("producer\\[\\d+\\] trace: received READY from") >= 1);
    CHECK(p.count_stderr("producer\\[\\d+\\] trace: sent ASSIGN of \\d+ slice\\(s\\) to") >= 1);
    CHECK(p.count_stderr("producer\\[\\d+\\] debug: job 1: worker .* returned batch") >= 1);
    CHECK(p.count_stderr("producer\\[\\d+\\] info: job 1 done") == 1);
    // Its workers log their side of each message too.
    CHECK(p.count_stderr("worker\\[\\d+\\] trace: sent READY to the producer") >= 1);
    CHECK(p.count_stderr(
              "worker\\[\\d+\\] trace: received ASSIGN of \\d+ slice\\(s\\) from the producer") >=
          1);
    CHECK(p.count_stderr(
              "worker\\[\\d+\\] trace: sent RESULT of \\d+ slice\\(s\\) to the producer") >= 1);
  }

  TEST_CASE("--quiet: nothing but warnings and errors on stderr, the answer on stdout") {
    Process p({binary("examples/integration"), "--produce", "-w", "2", "--quiet", "-q",
               "127.0.0.1:" + std::to_string(free_port())});
    REQUIRE(p.wait() == 0);
    CHECK(p.out() == "Answer: 22023.7365011059\n");
    INFO("stderr:\n" << p.err());
    CHECK(p.count_stderr(" (info|debug|trace): ") == 0);
  }
}
