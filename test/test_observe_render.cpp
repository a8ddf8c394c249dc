// What --metrics and --dashboard serve, made from a hand-built Observation: Prometheus text a
// scraper accepts, and a dashboard state that stays small whatever the job's size.
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "observe/render.hpp"

using namespace pymar;
using namespace pymar::detail;

namespace {

Observation busy_producer() {
  Observation o;
  o.sequence = 7;
  o.jobs_started = 3;
  o.jobs_done = 2;
  o.jobs_failed = 1;
  o.jobs_here = 1;
  o.slices_done = 48;
  o.reruns = 2;
  o.bytes_in = 1000;
  o.bytes_out = 2000;
  o.faults = {{"worker_dropped", 1}, {"slice_crash", 1}};
  o.workers_connected = 2;
  WorkerTotals odd;
  odd.host = "we\"ird\\host\nname";
  odd.pid = 42;
  odd.slices = 30;
  odd.busy_ns = 1'500'000'000;
  odd.connected = true;
  WorkerTotals plain = odd;
  plain.host = "node7";
  plain.pid = 43;
  plain.slices = 18;
  plain.busy_ns = 250'000'000;
  o.workers = {odd, plain};
  JobStats job;
  job.job = 3;
  job.producer = "DoubleSum<16>";
  job.source = "Scripted";
  job.slices_total = 16;
  job.slices_done = 5;
  o.current = job;
  return o;
}

/// Sample lines of a Prometheus text answer: metric name with labels -> value.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

}  // namespace

TEST_CASE("metrics are Prometheus text: each family has HELP and TYPE, counters end in _total") {
  const std::string text = prometheus_text(busy_producer());
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::istringstream lines(text);
  const std::regex sample(R"(^([a-z_]+)(\{[^}]*\})? [0-9.e+-]+$)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      types[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
    } else {
      INFO(line);
      REQUIRE(std::regex_match(line, m, sample));
      const std::string name = m[1];
      CHECK(types.count(name) == 1);  // TYPE comes before the family's samples
      CHECK(helped.count(name) == 1);
    }
  }
  for (const auto& [name, type] : types) {
    INFO(name);
    CHECK((type == "counter" || type == "gauge"));
    CHECK((type == "counter") == name.ends_with("_total"));
  }
  for (const char* name :
       {"pymar_jobs_total", "pymar_jobs_here_total", "pymar_slices_total", "pymar_reruns_total",
        "pymar_faults_total", "pymar_bytes_total", "pymar_worker_busy_seconds_total",
        "pymar_workers_connected", "pymar_job_slices_done", "pymar_job_slices"}) {
    INFO(name);
    CHECK(types.count(name) == 1);
  }
}

TEST_CASE("metrics carry the producer's counters, with label values escaped") {
  const auto values = samples(prometheus_text(busy_producer()));
  CHECK(values.at("pymar_jobs_total{outcome=\"done\"}") == "2");
  CHECK(values.at("pymar_jobs_total{outcome=\"failed\"}") == "1");
  CHECK(values.at("pymar_jobs_here_total") == "1");
  CHECK(values.at("pymar_slices_total") == "48");
  CHECK(values.at("pymar_reruns_total") == "2");
  CHECK(values.at("pymar_faults_total{kind=\"worker_dropped\"}") == "1");
  CHECK(values.at("pymar_faults_total{kind=\"late_result\"}") == "0");  // every kind, from 0
  CHECK(values.at("pymar_bytes_total{direction=\"in\"}") == "1000");
  CHECK(values.at("pymar_bytes_total{direction=\"out\"}") == "2000");
  // A host name with a quote, a backslash and a newline stays one line, one label value.
  CHECK(values.at(R"(pymar_worker_busy_seconds_total{host="we\"ird\\host\nname",pid="42"})") ==
        "1.5");
  CHECK(values.at(R"(pymar_worker_busy_seconds_total{host="node7",pid="43"})") == "0.25");
  CHECK(values.at("pymar_workers_connected") == "2");
  CHECK(values.at("pymar_job_slices_done") == "5");
  CHECK(values.at("pymar_job_slices") == "16");
}

TEST_CASE("the dashboard's state keeps the newest slices and faults and stays small") {
  Observation o = busy_producer();
  JobStats& job = *o.current;
  job.slices_total = 100000;
  job.slices_done = 5000;
  for (std::size_t w = 0; w < 1000; ++w) {
    WorkerStats worker;
    worker.host = "host-" + std::to_string(w);
    worker.pid = static_cast<std::int64_t>(10000 + w);
    worker.dropped = w == 3;
    worker.drop_reason = w == 3 ? "killed by signal 9" : "";
    job.workers.push_back(worker);
  }
  for (std::uint64_t i = 0; i < 5000; ++i) {
    SliceStats slice;
    slice.index = i;
    slice.worker = static_cast<std::int64_t>(i % 100);
    slice.start_ns = static_cast<std::int64_t>(i) * 1'000'000;
    slice.end_ns = slice.start_ns + 900'000;
    job.slices.push_back(slice);
  }
  for (int i = 0; i < 2000; ++i) {
    job.faults.push_back({i * 1000, FaultKind::late_result, "fault " + std::to_string(i)});
  }
  const std::string json = dashboard_state_json(o);
  CHECK(json.size() < 100 * 1024);
  CHECK(json.find("\"running\":true") != std::string::npos);
  CHECK(json.find("\"slices_total\":100000") != std::string::npos);
  CHECK(json.find("host-127") != std::string::npos);
  CHECK(json.find("host-128") == std::string::npos);  // over kStateWorkers
  CHECK(json.find("\"workers_not_shown\":872") != std::string::npos);
  CHECK(json.find("\"dropped\":true,\"drop_reason\":\"killed by signal 9\"") != std::string::npos);
  CHECK(json.find(",4999]") != std::string::npos);  // the newest slice
  CHECK(json.find(",3975]") == std::string::npos);  // older than the newest kStateSlices
  CHECK(json.find("fault 1999") != std::string::npos);
  CHECK(json.find("fault 1949\"") == std::string::npos);
}

TEST_CASE("the dashboard's state shows the last job once none runs, and escapes peers' text") {
  Observation o = busy_producer();
  JobStats last = *o.current;
  last.ending = JobEnding::done;
  last.slices_done = 16;
  WorkerStats odd;
  odd.host = "a\"b\\c\x01\xff";
  last.workers.push_back(odd);
  o.current.reset();
  o.last = std::make_shared<const JobStats>(last);
  const std::string json = dashboard_state_json(o);
  CHECK(json.find("\"running\":false") != std::string::npos);
  CHECK(json.find("\"ending\":\"done\"") != std::string::npos);
  CHECK(json.find(R"("host":"a\"b\\c\u0001\u00ff")") != std::string::npos);
  CHECK(dashboard_state_json(Observation{}).ends_with("\"job\":null}"));
}

TEST_CASE("the dashboard's page is self-contained: nothing loaded from elsewhere") {
  const std::string_view page = dashboard_page();
  CHECK(page.starts_with("<!DOCTYPE html>"));
  CHECK(page.find("/api/state") != std::string_view::npos);
  CHECK(page.find("http://") == std::string_view::npos);
  CHECK(page.find("https://") == std::string_view::npos);
  CHECK(page.find("src=") == std::string_view::npos);
}
