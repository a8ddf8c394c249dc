// COMPUTE_SMALL_JOBS_HERE: a job too small to be worth a round trip is computed by the thread
// that calls `map`, decided from what earlier runs measured; every other job goes to the workers.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>

#include <numeric>
#include <vector>

#include <pymar/pymar.hpp>

#include "producer/small_jobs.hpp"
#include "pymar/detail/job.hpp"
#include "support/cluster.hpp"

namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

struct Span : pymar::DataSource {
  struct Params {
    std::size_t length = 0;
    int nap_ms = 0;  // what each element costs
    MSGPACK_DEFINE(length, nap_ms)
  };
  explicit Span(Params p) : nap(p.nap_ms) {}
  static std::size_t full_length(const Params& p) { return p.length; }
  auto items() const {
    return indices() | std::views::transform([nap = nap](std::size_t i) {
             if (nap > 0) std::this_thread::sleep_for(milliseconds(nap));
             return i;
           });
  }
  int nap = 0;
};

template <bool kHere>
struct Doubling : pymar::Producer<Doubling<kHere>> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = kHere;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto x) { return 2 * static_cast<long>(x); });
  }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};
using DoublingHere = Doubling<true>;
using DoublingThere = Doubling<false>;

// Set on the thread that calls `map` in the test that needs to tell it from a worker's.
thread_local bool t_calls_map = false;
std::atomic<int> g_threw_here{0};

// Allows small jobs here, but its user code fails on the thread that calls `map`: as a source
// whose files exist only where the workers run.
struct FailsHere : pymar::Producer<FailsHere> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = true;
  static auto map_fn(auto&& xs) {
    if (t_calls_map) {
      ++g_threw_here;
      throw std::runtime_error("no such file here");
    }
    return Doubling<true>::map_fn(xs);
  }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};

struct MemoryDoubling : pymar::Producer<MemoryDoubling> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = true;
  static auto map_fn(auto&& xs) { return Doubling<true>::map_fn(xs); }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};

struct WordLengths : pymar::Producer<WordLengths> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = true;
  static auto map_fn(auto&& words) {
    return words | std::views::transform([](const auto& w) { return static_cast<long>(w.size()); });
  }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};

/// Where a job ran, by its statistics: "" on the workers, "small job" here.
template <class P>
std::string where(const pymar::JobStats& stats) {
  if (stats.local_reason.empty()) {
    CHECK(stats.local_slices == 0);
    CHECK_FALSE(stats.workers.empty());
  } else {
    CHECK(stats.local_slices == stats.slices_total);
    CHECK(stats.workers.empty());
  }
  return stats.local_reason;
}

template <class P>
std::string run_doubling(std::size_t length, int nap_ms = 0) {
  const auto [value, stats] = P().map_with_stats(pymar::factory<Span>({length, nap_ms}));
  CHECK(value == static_cast<long>(length * (length - 1)));
  return where<P>(stats);
}

pymar::detail::JobRequest request(std::string params, std::size_t length) {
  pymar::detail::JobRequest job;
  job.producer = "P";
  job.source = "S";
  job.params = std::move(params);
  job.length = length;
  job.parts = 10;
  return job;
}

std::int64_t ns(auto duration) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
}

}  // namespace

REGISTER_DATASOURCE(Span);
REGISTER_PRODUCER(DoublingHere);
REGISTER_PRODUCER(DoublingThere);
REGISTER_PRODUCER(FailsHere);
REGISTER_PRODUCER(MemoryDoubling);
REGISTER_PRODUCER(WordLengths);

TEST_SUITE("small jobs") {
  TEST_CASE("a small job runs on the workers first, then on map's thread, counted as a job") {
    pymar::test::LocalCluster cluster(2);
    CHECK(cluster.dispatcher().observe() != nullptr);  // starts publishing
    CHECK(run_doubling<DoublingHere>(10) == "");
    CHECK(cluster.slices_from_workers() == 4);
    const auto [value, stats] = DoublingHere().map_with_stats(pymar::factory<Span>({10, 0}));
    CHECK(value == 90);
    CHECK(where<DoublingHere>(stats) == "small job");
    CHECK(stats.job == 2);  // numbered with the workers' jobs
    CHECK(stats.slices_done == 4);
    CHECK(cluster.slices_from_workers() == 4);  // no worker saw it
    const auto observed = cluster.dispatcher().observe_fresh(milliseconds(10000));
    CHECK(observed->jobs_here == 1);
    CHECK(observed->jobs_started == 2);
    CHECK(observed->jobs_done == 2);
    CHECK(run_doubling<DoublingThere>(10) == "");  // job 3, on the workers
    CHECK(run_doubling<DoublingHere>(10) == "small job");
  }

  TEST_CASE("without COMPUTE_SMALL_JOBS_HERE every job goes to the workers") {
    pymar::test::LocalCluster cluster(2);
    for (int run = 1; run <= 3; ++run) {
      CHECK(run_doubling<DoublingThere>(10) == "");
      CHECK(cluster.slices_from_workers() == 4u * static_cast<unsigned>(run));
    }
  }

  TEST_CASE("a job whose slices take longer than the quickest job on the workers stays there") {
    pymar::test::LocalCluster cluster(2);
    CHECK(run_doubling<DoublingHere>(10) == "");
    CHECK(run_doubling<DoublingHere>(10) == "small job");
    // 4 elements of 200 ms: 800 ms of slices, far over the quickest job on the workers (a few ms,
    // or tens on a loaded host).
    CHECK(run_doubling<DoublingHere>(4, 200) == "");
    CHECK(run_doubling<DoublingHere>(4, 200) == "");
    CHECK(run_doubling<DoublingHere>(10) == "small job");
  }

  TEST_CASE("a small job whose code throws here is computed by the workers, and stays there") {
    pymar::test::LocalCluster cluster(2);
    t_calls_map = true;
    g_threw_here = 0;
    for (int run = 1; run <= 4; ++run) {
      const auto [value, stats] = FailsHere().map_with_stats(pymar::factory<Span>({10, 0}));
      CHECK(value == 90);
      CHECK(where<FailsHere>(stats) == "");
      CHECK(cluster.slices_from_workers() == 4u * static_cast<unsigned>(run));
    }
    t_calls_map = false;
    CHECK(g_threw_here == 1);  // tried here once: the second run, after the first measured it
  }

  TEST_CASE("a job with a timeout always goes to the workers") {
    pymar::test::LocalCluster cluster(2);
    for (int run = 1; run <= 3; ++run) {
      const auto [value, stats] =
          DoublingHere().map_with_stats(pymar::factory<Span>({10, 0}), std::chrono::seconds(60));
      CHECK(value == 90);
      CHECK(where<DoublingHere>(stats) == "");
    }
  }

  TEST_CASE("plain map computes a small job here too, and counts its slices") {
    pymar::test::LocalCluster cluster(2);
    CHECK(DoublingHere().map(pymar::factory<Span>({10, 0})) == 90);
    CHECK(DoublingHere().map(pymar::factory<Span>({10, 0})) == 90);
    CHECK(cluster.slices_from_workers() == 4);
    const auto observed = cluster.dispatcher().observe_fresh(milliseconds(10000));
    CHECK(observed->jobs_here == 1);
    CHECK(observed->slices_done == 8);
  }

  TEST_CASE("data from memory: known by its bytes; encoded element by element, never here") {
    pymar::test::LocalCluster cluster(2);
    std::vector<long> numbers(10);
    std::iota(numbers.begin(), numbers.end(), 0);
    auto run_numbers = [&] {
      const auto [value, stats] = MemoryDoubling().map_with_stats(pymar::factory(numbers));
      CHECK(value == 2 * std::accumulate(numbers.begin(), numbers.end(), 0L));
      return where<MemoryDoubling>(stats);
    };
    CHECK(run_numbers() == "");
    CHECK(run_numbers() == "small job");
    numbers[3] = 1000;  // the same length, other data: measured anew, on the workers
    CHECK(run_numbers() == "");
    CHECK(run_numbers() == "small job");
    const std::vector<std::string> words{"a", "bb", "ccc", "dddd", "eeeee"};
    for (int run = 1; run <= 3; ++run) {
      const auto [value, stats] = WordLengths().map_with_stats(pymar::factory(words));
      CHECK(value == 15);
      CHECK(where<WordLengths>(stats) == "");
    }
  }

  TEST_CASE("one run in kProbeEvery of a job computed here goes to the workers") {
    pymar::test::LocalCluster cluster(2);
    CHECK(run_doubling<DoublingHere>(10) == "");
    for (std::uint64_t run = 0; run < pymar::detail::SmallJobs::kProbeEvery; ++run) {
      REQUIRE(run_doubling<DoublingHere>(10) == "small job");
    }
    CHECK(run_doubling<DoublingHere>(10) == "");
    CHECK(run_doubling<DoublingHere>(10) == "small job");
  }

  TEST_CASE("SmallJobs: a job is small only under the quickest job the workers returned") {
    pymar::detail::SmallJobs small;
    const auto job = request("a", 1000);
    CHECK_FALSE(small.small_here(job, 10));  // never measured
    small.ran_here(job, 10, ns(microseconds(5)));
    CHECK_FALSE(small.small_here(job, 10));  // the workers never returned a job: no bar yet
    small.ran_on_workers(job, 10, ns(milliseconds(1)), ns(microseconds(100)));
    CHECK(small.quickest_on_workers() == ns(milliseconds(1)));
    CHECK(small.small_here(job, 10) == ns(microseconds(100)));
    small.ran_on_workers(request("b", 1000), 10, ns(milliseconds(2)), ns(milliseconds(3)));
    CHECK(small.quickest_on_workers() == ns(milliseconds(1)));  // the quickest stays
    CHECK_FALSE(small.small_here(request("b", 1000), 10));      // 3 ms here against 1 ms there
    CHECK_FALSE(small.small_here(request("c", 1000), 10));      // other parameters: unmeasured
    small.threw_here(job);
    CHECK_FALSE(small.small_here(job, 10));
    small.ran_on_workers(job, 10, ns(milliseconds(1)), ns(microseconds(100)));
    CHECK_FALSE(small.small_here(job, 10));  // for good
  }

  TEST_CASE("SmallJobs: a job's cost here is the least of its last runs here") {
    pymar::detail::SmallJobs small;
    const auto job = request("a", 1000);
    small.ran_on_workers(job, 10, ns(milliseconds(1)), ns(microseconds(100)));
    REQUIRE(small.small_here(job, 10));
    small.ran_here(job, 10, ns(microseconds(40)));  // the first run here replaces the workers'
    REQUIRE(small.small_here(job, 10) == ns(microseconds(40)));
    small.ran_here(job, 10, ns(microseconds(2000)));  // one preempted run changes nothing
    REQUIRE(small.small_here(job, 10) == ns(microseconds(40)));
    // A job grown costlier: once its last kRunsHereKept runs all say so.
    for (std::size_t run = 1; run < pymar::detail::SmallJobs::kRunsHereKept; ++run) {
      small.ran_here(job, 10, ns(microseconds(1500)));
      if (run + 1 < pymar::detail::SmallJobs::kRunsHereKept) REQUIRE(small.small_here(job, 10));
    }
    CHECK_FALSE(small.small_here(job, 10));  // 1.5 ms here, over the quickest 1 ms there
  }

  TEST_CASE("SmallJobs: a measure is scaled by what grew, slices or elements") {
    pymar::detail::SmallJobs small;
    small.ran_on_workers(request("a", 1000), 10, ns(milliseconds(1)), ns(microseconds(100)));
    CHECK(small.small_here(request("a", 5000), 10) == ns(microseconds(500)));
    CHECK(small.small_here(request("a", 1000), 50) == ns(microseconds(500)));
    CHECK(small.small_here(request("a", 500), 5) == ns(microseconds(100)));  // never scaled down
    CHECK_FALSE(small.small_here(request("a", 10000), 10));  // 1 ms: not under the quickest
    // A run here replaces the workers' measure with its own.
    small.ran_here(request("a", 1000), 10, ns(microseconds(300)));
    CHECK(small.small_here(request("a", 1000), 10) == ns(microseconds(300)));
  }

  TEST_CASE("SmallJobs: the memory of jobs is bounded, and forgets the least recently run") {
    pymar::detail::SmallJobs small;
    for (std::size_t i = 0; i < pymar::detail::SmallJobs::kMaxJobs; ++i) {
      small.ran_on_workers(request(std::to_string(i), 10), 10, ns(milliseconds(1)),
                           ns(microseconds(1)));
    }
    CHECK(small.small_here(request("0", 10), 10));  // full, all there; "0" is now the most recent
    small.ran_on_workers(request("one more", 10), 10, ns(milliseconds(1)), ns(microseconds(1)));
    CHECK_FALSE(small.small_here(request("1", 10), 10));  // the least recently run, forgotten
    for (std::size_t i = 2; i < pymar::detail::SmallJobs::kMaxJobs; ++i) {
      CAPTURE(i);
      CHECK(small.small_here(request(std::to_string(i), 10), 10));
    }
    CHECK(small.small_here(request("0", 10), 10));
    CHECK(small.small_here(request("one more", 10), 10));
  }
}
