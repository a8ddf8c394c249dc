// The `--stats` file over many jobs: one valid document with every job, and each job's write
// costs that job's JSON, not the jobs before it.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

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
  std::string expected = "{\"format\":\"pymar-stats\",\"version\":1,\"jobs\":[\n";
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
  CHECK(read_all(path) == "{\"format\":\"pymar-stats\",\"version\":1,\"jobs\":[\n" +
                              to_json(job_numbered(1)) + ",\n" + to_json(job_numbered(2)) +
                              "\n]}\n");
  std::filesystem::remove(path);
}
