// The task binary of the process-level tests. Which job the producer runs, and how its slices
// misbehave (throw, crash, take long), is chosen through TEST_* environment variables, so that
// one binary serves every scenario and its workers are the same build as its producer.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pymar/pymar.hpp>

namespace {

std::int64_t env_int(const char* name, std::int64_t fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::stoll(value) : fallback;
}

std::string env_text(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// True the first time any process of the test asks with this marker path (it creates the file).
// Says so on stderr, so that a test can wait for the first attempt to be under way.
bool first_time(const std::string& marker) {
  if (marker.empty()) return true;
  if (std::ifstream(marker).good()) return false;
  std::ofstream(marker) << getpid();
  fmt::print(stderr, "test_task[{}]: first attempt at a scripted slice\n", getpid());
  std::fflush(stderr);
  return true;
}

// With a gate, a job waits until the test creates this file (at most 60 s), so that a test can
// change the world between two jobs of one producer run (TEST_GATE, before the second job), or
// between the producer's start and its first job (TEST_FIRST_GATE).
void wait_for_gate(const std::string& gate, std::int64_t job) {
  if (gate.empty()) return;
  fmt::print(stderr, "test_task[{}]: job {} waits for {}\n", getpid(), job, gate);
  std::fflush(stderr);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!std::ifstream(gate).good() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polls a file, bounded
  }
}

// Waits, when the variable `name` names a file, until that file exists (at most 120 s).
void wait_for_file(const char* name, const char* what) {
  const std::string path = env_text(name);
  if (path.empty()) return;
  fmt::print(stderr, "test_task[{}]: {} waits for {}\n", getpid(), what, path);
  std::fflush(stderr);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::ifstream(path).good() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polls a file, bounded
  }
}

}  // namespace

// --- a source whose elements misbehave on request --------------------------------------------

struct Script {
  std::uint64_t length = 0;
  std::int64_t throw_at = -1;  // map_fn throws std::domain_error on this element
  std::int64_t segv_at = -1;   // map_fn dies of SIGSEGV on this element
  std::string segv_marker;     // if set, only the first process to reach segv_at crashes
  std::int64_t slow_at = -1;   // map_fn sleeps on this element...
  std::int64_t slow_ms = 0;    // ...this long the first time (per slow_marker)...
  std::int64_t retry_ms = 0;   // ...and this long afterwards
  std::string slow_marker;
  bool constructor_throws = false;
  MSGPACK_DEFINE(length, throw_at, segv_at, segv_marker, slow_at, slow_ms, retry_ms, slow_marker,
                 constructor_throws)

  static Script from_env() {
    Script s;
    s.length = static_cast<std::uint64_t>(env_int("TEST_LENGTH", 10));
    s.throw_at = env_int("TEST_THROW_AT", -1);
    s.segv_at = env_int("TEST_SEGV_AT", -1);
    s.segv_marker = env_text("TEST_SEGV_MARKER");
    s.slow_at = env_int("TEST_SLOW_AT", -1);
    s.slow_ms = env_int("TEST_SLOW_MS", 0);
    s.retry_ms = env_int("TEST_RETRY_MS", 0);
    s.slow_marker = env_text("TEST_SLOW_MARKER");
    s.constructor_throws = env_int("TEST_CONSTRUCTOR_THROWS", 0) != 0;
    return s;
  }
};

struct Step {
  std::int64_t value;
  const Script* script;

  std::int64_t perform() const {
    // Read by the worker: every element of every slice takes this long on its machine.
    static const std::int64_t element_ms = env_int("TEST_ELEMENT_MS", 0);
    if (element_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(element_ms));
    if (value == script->throw_at) {
      throw std::domain_error(fmt::format("element {} is out of the domain", value));
    }
    if (value == script->segv_at && first_time(script->segv_marker)) {
      // Read by the worker: end the process with this status instead, as user code may.
      static const std::int64_t exit_status = env_int("TEST_CRASH_EXIT", 0);
      if (exit_status != 0) std::_Exit(static_cast<int>(exit_status));
      std::raise(SIGSEGV);  // as a wild pointer would, without undefined behaviour in the test
    }
    if (value == script->slow_at) {
      const auto ms = first_time(script->slow_marker) ? script->slow_ms : script->retry_ms;
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));  // the workload: a slow slice
    }
    return value;
  }
};

struct Scripted : pymar::DataSource {
  using Params = Script;
  Script script;

  explicit Scripted(Script s) : script(std::move(s)) {
    if (script.constructor_throws) throw std::runtime_error("cannot open the scripted data");
  }
  static std::size_t full_length(const Script& s) { return s.length; }

  auto items() const {
    return indices() | std::views::transform([this](std::size_t i) {
             return Step{static_cast<std::int64_t>(i), &script};
           });
  }
};
REGISTER_DATASOURCE(Scripted);

// Twice each element, summed; N slices.
template <std::size_t N>
struct DoubleSum : pymar::Producer<DoubleSum<N>> {
  static constexpr std::size_t WORKERS_NUMBER = N;

  static auto map_fn(auto&& elements) {
    return elements | std::views::transform([](const auto& e) {
             if constexpr (std::is_same_v<std::remove_cvref_t<decltype(e)>, Step>) {
               return 2 * e.perform();
             } else {
               return 2 * static_cast<std::int64_t>(e);
             }
           });
  }

  static std::int64_t reduce_fn(auto&& values) { return pymar::sum<std::int64_t>(values); }
};
REGISTER_PRODUCER(DoubleSum<1>);
REGISTER_PRODUCER(DoubleSum<4>);
REGISTER_PRODUCER(DoubleSum<16>);
REGISTER_PRODUCER(DoubleSum<64>);

// Every element seen, so that a test can check each was computed exactly once.
struct CollectElements : pymar::Producer<CollectElements> {
  static constexpr std::size_t WORKERS_NUMBER = 3;

  static auto map_fn(auto&& elements) {
    return elements | std::views::transform(
                          [](const Step& e) { return std::vector<std::int64_t>{e.perform()}; });
  }

  static std::vector<std::int64_t> reduce_fn(auto&& lists) {
    std::vector<std::int64_t> all;
    for (const auto& list : lists) all.insert(all.end(), list.begin(), list.end());
    return all;
  }
};
REGISTER_PRODUCER(CollectElements);

// --- the integration example, with one slice slowed on request -------------------------------

constexpr double a = 1.0;
constexpr double dx = 1e-6;

struct SlowPoints : pymar::DataSource {
  struct Params {
    std::int64_t slow_offset = -1;  // the slice starting here sleeps before computing
    std::int64_t slow_ms = 0;       // the first time (per marker)
    std::int64_t retry_ms = 0;      // afterwards
    std::string marker;
    MSGPACK_DEFINE(slow_offset, slow_ms, retry_ms, marker)
  };
  Params params;

  explicit SlowPoints(Params p) : params(std::move(p)) {}
  static std::size_t full_length(const Params&) { return 9'000'000; }

  auto items() const {
    if (static_cast<std::int64_t>(offset) == params.slow_offset) {
      const auto ms = first_time(params.marker) ? params.slow_ms : params.retry_ms;
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));  // the workload: a slow slice
    }
    return indices() | std::views::transform([](std::size_t i) { return a + double(i) * dx; });
  }
};
REGISTER_DATASOURCE(SlowPoints);

struct Integral : pymar::Producer<Integral> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static auto map_fn(auto&& points) {
    return points | std::views::transform([](double x) { return std::exp(x) * dx; });
  }
  static double reduce_fn(auto&& values) { return pymar::sum(values); }
};
REGISTER_PRODUCER(Integral);

// --- strings travel through msgpack -----------------------------------------------------------

struct WordCount : pymar::Producer<WordCount> {
  static constexpr std::size_t WORKERS_NUMBER = 3;
  static auto map_fn(auto&& words) {
    return words | std::views::transform([](const std::string& w) {
             return std::map<std::string, std::int64_t>{{w, 1}};
           });
  }
  static std::map<std::string, std::int64_t> reduce_fn(auto&& counts) {
    std::map<std::string, std::int64_t> total;
    for (const auto& c : counts) {
      for (const auto& [word, n] : c) total[word] += n;
    }
    return total;
  }
};
REGISTER_PRODUCER(WordCount);

// --- a small job computed by the producer itself (COMPUTE_SMALL_JOBS_HERE) --------------------

// Each slice naps when computed in the producer's process (its pid travels in the parameters):
// quick on the workers, so the job is measured as small, and slow here, so that a test can
// interrupt it there.
struct NapsHere : pymar::DataSource {
  struct Params {
    std::size_t length = 0;
    std::int64_t producer_pid = 0;
    std::int64_t nap_here_ms = 0;
    MSGPACK_DEFINE(length, producer_pid, nap_here_ms)
  };
  explicit NapsHere(const Params& p) : params(p) {}
  static std::size_t full_length(const Params& p) { return p.length; }
  auto items() const {
    if (getpid() == params.producer_pid) {
      std::this_thread::sleep_for(std::chrono::milliseconds(params.nap_here_ms));
    }
    return indices();
  }
  Params params;
};
REGISTER_DATASOURCE(NapsHere);

struct DoubleSumHere : pymar::Producer<DoubleSumHere> {
  static constexpr std::size_t WORKERS_NUMBER = 8;
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = true;
  static auto map_fn(auto&& elements) { return DoubleSum<8>::map_fn(elements); }
  static std::int64_t reduce_fn(auto&& values) { return DoubleSum<8>::reduce_fn(values); }
};
REGISTER_PRODUCER(DoubleSumHere);

// --- the jobs ---------------------------------------------------------------------------------

namespace {

int run_job(const pymar::Arguments& arguments) {
  const std::string job = env_text("TEST_JOB");
  if (job == "arguments") {
    fmt::print("Answer: {}\n", fmt::join(arguments, ","));
    return 0;
  }
  const auto repeat = env_int("TEST_REPEAT", 1);
  const bool timing = env_int("TEST_TIMING", 0) != 0;
  wait_for_file("TEST_START_GATE", "job 1");  // e.g. until a test's browser shows the page
  for (std::int64_t run = 0; run < repeat; ++run) {
    if (run == 0) wait_for_gate(env_text("TEST_FIRST_GATE"), 1);
    if (run == 1) wait_for_gate(env_text("TEST_GATE"), 2);
    const auto started = std::chrono::steady_clock::now();
    if (job == "integration") {
      SlowPoints::Params p{env_int("TEST_SLOW_OFFSET", -1), env_int("TEST_SLOW_MS", 0),
                           env_int("TEST_RETRY_MS", 0), env_text("TEST_SLOW_MARKER")};
      fmt::print("Answer: {:.10f}\n", Integral().map(pymar::factory<SlowPoints>(p)));
    } else if (job == "doubled" && run > 0 && env_int("TEST_WITH_STATS", 0) != 0) {
      // After a plain map, the same job through map_with_stats: its value, and its record as
      // JSON on one line, which the test compares with the --stats file.
      const auto script = pymar::factory<Scripted>(Script::from_env());
      const auto [value, stats] = DoubleSum<16>().map_with_stats(script);
      fmt::print("Answer: {}\nStats: {}\n", value, pymar::to_json(stats));
    } else if (job == "doubled") {
      const auto script = pymar::factory<Scripted>(Script::from_env());
      switch (env_int("TEST_PARTS", 4)) {
        case 1:
          fmt::print("Answer: {}\n", DoubleSum<1>().map(script));
          break;
        case 16:
          fmt::print("Answer: {}\n", DoubleSum<16>().map(script));
          break;
        case 64:
          fmt::print("Answer: {}\n", DoubleSum<64>().map(script));
          break;
        default:
          fmt::print("Answer: {}\n", DoubleSum<4>().map(script));
      }
    } else if (job == "elements") {
      auto all = CollectElements().map(pymar::factory<Scripted>(Script::from_env()));
      std::sort(all.begin(), all.end());
      fmt::print("Answer: {}\n", fmt::join(all, ","));
    } else if (job == "memory") {
      std::vector<std::int64_t> numbers(static_cast<std::size_t>(env_int("TEST_LENGTH", 1000)));
      std::iota(numbers.begin(), numbers.end(), 0);
      fmt::print("Answer: {}\n", DoubleSum<16>().map(pymar::factory(numbers)));
    } else if (job == "here") {
      const NapsHere::Params params{static_cast<std::size_t>(env_int("TEST_LENGTH", 100)), getpid(),
                                    env_int("TEST_NAP_HERE_MS", 0)};
      try {
        fmt::print("Answer: {}\n", DoubleSumHere().map(pymar::factory<NapsHere>(params)));
      } catch (const pymar::Interrupted&) {
        fmt::print(stderr, "test_task: map threw pymar::Interrupted\n");
        throw;
      }
    } else if (job == "words") {
      std::vector<std::string> words;
      for (int i = 1; i <= 6; ++i) {
        for (int j = 1; j <= i; ++j) words.push_back(fmt::format("w{}", j));
      }
      const auto counts = WordCount().map(pymar::factory(words));
      fmt::print("Answer: {}\n", fmt::join(counts, ","));
    } else {
      fmt::print(stderr, "unknown TEST_JOB '{}'\n", job);
      return 3;
    }
    std::fflush(stdout);
    if (timing) {
      const std::chrono::duration<double, std::micro> took =
          std::chrono::steady_clock::now() - started;
      fmt::print(stderr, "test_task: job {} took {:.0f} us\n", run + 1, took.count());
    }
  }
  // The producer stays up (its HTTP endpoints too) until the test creates this file.
  wait_for_file("TEST_HOLD", "the jobs are over");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pymar::main(argc, argv, run_job);
}
