// The `--stats` file over many jobs: one valid document with every job, and each job's write
// costs that job's JSON, not the jobs before it.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "producer/runtime.hpp"
#include "producer/stats_file.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/stats.hpp"

using namespace pymar;
using namespace pymar::detail;

namespace {

JobStats job_numbered(std::uint64_t n) {
  JobStats stats;
  stats.job = n;
  stats.producer = "Doubled";
  stats.source = "Numbers";
  stats.elements = 100 * n;
  stats.slices_total = 4;
  stats.slices_done = 4;
  for (std::size_t i = 0; i < 4; ++i) {
    SliceStats s;
    s.index = i;
    s.offset = i * 25 * n;
    s.length = 25 * n;
    s.worker = 0;
    s.attempts = 1;
    stats.slices.push_back(s);
  }
  return stats;
}

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("the stats file holds every job of a long run, each written at the cost of its own") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("pymar-stats-file-" + std::to_string(getpid()) + ".json");
  std::filesystem::remove(path);
  write_stats_to(path.string());
  constexpr std::uint64_t kJobs = 200;
  std::size_t largest_write = 0;
  for (std::uint64_t n = 1; n <= kJobs; ++n) {
    const JobStats stats = job_numbered(n);
    job_stats_done(stats);
    const StatsFileCost cost = stats_file_cost();
    REQUIRE(cost.jobs == n);
    const std::size_t own = to_json(stats).size();
    INFO("job " << n << ": " << cost.bytes_written << " bytes written for " << own
                << " bytes of JSON");
    REQUIRE(cost.bytes_written >= own);
    // The header, separator and trailer, and nothing of the earlier jobs.
    REQUIRE(cost.bytes_written <= own + 64);
    largest_write = std::max(largest_write, cost.bytes_written);
  }
  write_stats_to(std::nullopt);

  // Exactly the document a whole rewrite gives: a header, the jobs one per line, a trailer.
  std::string expected = "{\"format\":\"pymar-stats\",\"version\":2,\"jobs\":[\n";
  for (std::uint64_t n = 1; n <= kJobs; ++n) {
    expected += to_json(job_numbered(n));
    expected += n < kJobs ? ",\n" : "\n]}\n";
  }
  const std::string written = read_all(path);
  CHECK(written.size() == expected.size());
  CHECK(written == expected);
  CHECK(largest_write * 20 < written.size());
  std::filesystem::remove(path);
}

TEST_CASE("the stats file of a new run replaces the last run's") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("pymar-stats-again-" + std::to_string(getpid()) + ".json");
  {
    std::ofstream old(path);
    old << std::string(10000, 'x');
  }
  write_stats_to(path.string());
  job_stats_done(job_numbered(1));
  job_stats_done(job_numbered(2));
  write_stats_to(std::nullopt);
  CHECK(read_all(path) == "{\"format\":\"pymar-stats\",\"version\":2,\"jobs\":[\n" +
                              to_json(job_numbered(1)) + ",\n" + to_json(job_numbered(2)) +
                              "\n]}\n");
  std::filesystem::remove(path);
}

namespace {

/// The slices a job's JSON stands for, expanded from its slice runs.
std::vector<SliceStats> slices_in(const std::string& json) {
  static const std::regex run(
      "\\{\"index\":(\\d+),\"count\":(\\d+),\"offset\":(\\d+),\"length\":(\\d+),"
      "\"worker\":(\\d+|\"local\"|null),\"attempts\":(\\d+),\"start_ns\":(\\d+|null),"
      "\"end_ns\":(\\d+|null)\\}");
  const auto time = [](const std::string& text) { return text == "null" ? -1 : std::stoll(text); };
  std::vector<SliceStats> out;
  for (std::sregex_iterator it(json.begin(), json.end(), run), end; it != end; ++it) {
    const auto& m = *it;
    for (std::uint64_t k = 0; k < std::stoull(m[2]); ++k) {
      SliceStats s;
      s.index = std::stoull(m[1]) + k;
      s.length = std::stoull(m[4]);
      s.offset = std::stoull(m[3]) + k * s.length;
      s.worker = m[5] == "\"local\"" ? SliceStats::kLocal
                 : m[5] == "null"    ? SliceStats::kNone
                                     : std::stoll(m[5]);
      s.attempts = static_cast<std::uint32_t>(std::stoul(m[6]));
      s.start_ns = time(m[7]);
      s.end_ns = time(m[8]);
      out.push_back(s);
    }
  }
  return out;
}

bool same(const SliceStats& a, const SliceStats& b) {
  return a.index == b.index && a.offset == b.offset && a.length == b.length &&
         a.worker == b.worker && a.attempts == b.attempts && a.start_ns == b.start_ns &&
         a.end_ns == b.end_ns;
}

/// The number of slice runs in a job's JSON (no other record has a "count").
std::size_t runs_in(const std::string& json) {
  std::size_t runs = 0;
  for (auto at = json.find("\"count\":"); at != std::string::npos;
       at = json.find("\"count\":", at + 1)) {
    ++runs;
  }
  return runs;
}

}  // namespace

TEST_CASE("a job's slices are written in runs, and the runs give back every slice as it was") {
  // A job of 10^4 slices over 10,007 elements (the first 7 slices one element longer), in
  // batches of 500 sent to two workers in turns; slice 1234 was re-run on the other worker,
  // slice 4321 computed locally, and the last batch never came back.
  JobStats stats;
  stats.slices_total = 10000;
  stats.elements = 10007;
  std::uint64_t offset = 0;
  for (std::uint64_t i = 0; i < stats.slices_total; ++i) {
    SliceStats s;
    s.index = i;
    s.offset = offset;
    s.length = i < 7 ? 2 : 1;
    offset += s.length;
    const std::uint64_t batch = i / 500;
    s.worker = static_cast<std::int64_t>(batch % 2);
    s.attempts = 1;
    s.start_ns = static_cast<std::int64_t>(batch * 1000);
    s.end_ns = s.start_ns + 900;
    if (i == 1234) {
      s.worker = 1 - s.worker;
      s.attempts = 2;
      s.end_ns += 5000;
    }
    if (i == 4321) {
      s.worker = SliceStats::kLocal;
      s.start_ns = 77;
      s.end_ns = 88;
    }
    if (batch == 19) {
      s.worker = SliceStats::kNone;
      s.start_ns = s.end_ns = -1;
    }
    stats.slices.push_back(s);
  }
  const std::string json = to_json(stats);
  const std::vector<SliceStats> back = slices_in(json);
  REQUIRE(back.size() == stats.slices.size());
  for (std::size_t i = 0; i < back.size(); ++i) {
    INFO("slice " << i);
    REQUIRE(same(back[i], stats.slices[i]));
  }
  // 20 batches, one of them cut by the change of length and two cut by a slice of their own.
  CHECK(runs_in(json) == 20 + 1 + 2 * 2);
  CHECK(json.size() < 4096);
}

TEST_CASE("slices that differ are runs of one: nothing is merged that is not alike") {
  JobStats stats;
  for (std::uint64_t i = 0; i < 6; ++i) {
    SliceStats s;
    s.index = i;
    s.offset = 10 * i;
    s.length = 10;
    s.worker = SliceStats::kLocal;
    s.attempts = 1;
    s.start_ns = static_cast<std::int64_t>(100 * i);  // computed locally, one after another
    s.end_ns = s.start_ns + 90;
    stats.slices.push_back(s);
  }
  stats.slices[3].offset += 1;  // not where slice 2 ends: a record can't say so in a run
  stats.slices[3].start_ns = stats.slices[2].start_ns;
  stats.slices[3].end_ns = stats.slices[2].end_ns;
  const std::string json = to_json(stats);
  CHECK(runs_in(json) == 6);
  const std::vector<SliceStats> back = slices_in(json);
  REQUIRE(back.size() == 6);
  for (std::size_t i = 0; i < back.size(); ++i) CHECK(same(back[i], stats.slices[i]));
}

TEST_CASE("a written job's slice records are handed to the next job, emptied, once") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("pymar-stats-reuse-" + std::to_string(getpid()) + ".json");
  std::filesystem::remove(path);
  write_stats_to(path.string());
  (void)reuse_slice_records();  // whatever an earlier test left
  JobStats stats = job_numbered(1);
  stats.slices.resize(1000, stats.slices[0]);
  job_stats_done(stats);
  REQUIRE(stats_file_cost().jobs == 1);

  std::vector<SliceStats> records = reuse_slice_records();
  CHECK(records.empty());
  CHECK(records.capacity() >= 1000);
  // Filled anew, the records say nothing of the job before.
  records.resize(1000);
  CHECK(records[999].worker == SliceStats::kNone);
  CHECK(records[999].attempts == 0);
  CHECK(records[999].start_ns == -1);
  // Handed out once: the next job that asks gets none.
  CHECK(reuse_slice_records().capacity() == 0);
  write_stats_to(std::nullopt);
  std::filesystem::remove(path);
}
