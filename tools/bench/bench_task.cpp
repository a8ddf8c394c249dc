// The task binary the benchmark suite runs: the jobs whose time inside `map` it measures, written
// with the public API only, exactly as a user would. The same binary is the producer and the
// worker pool (`bench_task --worker -q HOST:PORT -w N`), so that their builds match.
//
// The producer's job is chosen with environment variables (the pool ignores them):
//   BENCH_JOB          integration | squaredsum | squaredsum2 | trivial | trivial_here | balance |
//                      balance_serial (trivial_here: small jobs computed in the producer)
//   BENCH_REPS         timed `map` calls (default 10), each printed as "BENCH map_ms X"
//   BENCH_WARMUP       untimed `map` calls first, so that the workers have joined (default 2)
//   BENCH_SETTLE_MS    pause after the warm-up, for late joiners (default 0)
//   BENCH_STEP         1: print "BENCH ready" after the warm-up, then wait for a line on stdin
//                      before each timed call (none left: stop), so
//                      that the suite can run its baseline between two calls (default 0)
//   BENCH_SLICES       trivial: slices in the job, one element each (default 4); or a list of
//                      sizes each with a count, "1000*20,1000000": each timed repetition is then
//                      a round of jobs of those sizes, each printed as "BENCH map_ms_SIZE X"; an
//                      "h" before a size ("h1000*20") runs TrivialHere: "BENCH map_ms_here_SIZE X"
//   BENCH_POINTS       balance: points of the integral (default 9,000,000)
// Every job checks its answer against the exact one and exits 1 when it is wrong. The producer
// prints "BENCH producer_hwm_kib X", its peak resident memory, last.
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <numeric>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <pymar/int128.hpp>
#include <pymar/pymar.hpp>

#include "workloads.hpp"

namespace {

std::int64_t env_int(const char* name, std::int64_t fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::stoll(value) : fallback;
}

std::string env_text(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

// Peak resident set of this process in KiB (VmHWM), or -1.
std::int64_t peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

std::string text(pymar::int128 value) {
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  } while (value != 0);
  return digits;
}

using bench::a;
using bench::b;
using bench::dx;

}  // namespace

REGISTER_DATASOURCE(Points);
REGISTER_PRODUCER(Integral);
REGISTER_DATASOURCE(Indices);
REGISTER_PRODUCER(Trivial);
REGISTER_PRODUCER(TrivialHere);

// --- squaredsum and squaredsum2, as in the examples: numbers made on the workers, or 80 MB shipped
// from the producer's vector --------------------------------------------------------------------

struct Numbers : pymar::DataSource {
  static std::size_t full_length() { return 10'000'000; }

  auto items() const {
    return indices() | std::views::transform([](std::size_t i) { return std::int64_t(i); });
  }
};
REGISTER_DATASOURCE(Numbers);

struct SquaredSum : pymar::Producer<SquaredSum> {
  static constexpr std::size_t WORKERS_NUMBER = 8;

  static auto map_fn(auto&& numbers) {
    return numbers | std::views::transform([](std::int64_t x) { return x * x; });
  }

  static pymar::int128 reduce_fn(auto&& values) { return pymar::sum<pymar::int128>(values); }
};
REGISTER_PRODUCER(SquaredSum);

// --- balance: the integral over a configurable number of points, in 8 slices ---------------------

struct Span : pymar::DataSource {
  struct Params {
    std::uint64_t points = 0;
    MSGPACK_DEFINE(points)
  };
  explicit Span(const Params&) {}
  static std::size_t full_length(const Params& p) { return p.points; }

  auto items() const {
    return indices() | std::views::transform([](std::size_t i) { return a + double(i) * dx; });
  }
};
REGISTER_DATASOURCE(Span);

struct Balance : pymar::Producer<Balance> {
  static constexpr std::size_t WORKERS_NUMBER = 8;

  static auto map_fn(auto&& points) {
    return points | std::views::transform([](double x) { return std::exp(x) * dx; });
  }

  static double reduce_fn(auto&& values) { return pymar::sum(values); }
};
REGISTER_PRODUCER(Balance);

namespace {

using Clock = std::chrono::steady_clock;

/// Runs `once` (which returns whether its answer is right) for the warm-up and timed repetitions.
template <class Once>
int repeat(Once once) {
  const std::int64_t warmup = env_int("BENCH_WARMUP", 2);
  const std::int64_t reps = env_int("BENCH_REPS", 10);
  bool ok = true;
  for (std::int64_t i = 0; i < warmup; ++i) ok &= once();
  std::this_thread::sleep_for(std::chrono::milliseconds(env_int("BENCH_SETTLE_MS", 0)));
  const bool step = env_int("BENCH_STEP", 0) != 0;
  if (step) {
    // Warmed up: from here on this producer runs only when asked to.
    fmt::print("BENCH ready\n");
    std::fflush(stdout);
  }
  std::string line;
  for (std::int64_t i = 0; i < reps; ++i) {
    if (step && !std::getline(std::cin, line)) break;
    const Clock::time_point start = Clock::now();
    ok &= once();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    fmt::print("BENCH map_ms {:.4f}\n", ms);
    std::fflush(stdout);
  }
  fmt::print("BENCH answer_ok {}\n", ok ? 1 : 0);
  return ok ? 0 : 1;
}

bool close_to(double value, double expected) {
  return std::abs(value - expected) <= 1e-9 * std::abs(expected);
}

int run_job() {
  const std::string job = env_text("BENCH_JOB", "integration");
  int status = 2;
  if (job == "integration") {
    // The left Riemann sum of exp on [1, 10] with dx = 1e-6, as the example prints it.
    status =
        repeat([] { return close_to(Integral().map(pymar::factory<Points>()), 22023.7365011059); });
  } else if (job == "trivial" || job == "trivial_here") {
    const std::string sizes = env_text("BENCH_SLICES", "4");
    auto trivial = [](std::uint64_t count, bool here) {
      const auto data = pymar::factory<Indices>({count});
      return (here ? TrivialHere().map(data) : Trivial().map(data)) == count * (count - 1) / 2;
    };
    if (sizes.find_first_of(",*") == std::string::npos) {
      status = repeat([&] { return trivial(std::stoull(sizes), job == "trivial_here"); });
    } else {
      // A round of jobs of several sizes, each timed: sizes side by side see the same host.
      // "h1000*30": jobs of TrivialHere, printed as map_ms_here_1000.
      struct Jobs {
        std::uint64_t count;
        int times;
        bool here;
      };
      std::vector<Jobs> round;
      for (const auto part : std::views::split(sizes, ',')) {
        std::string item(part.begin(), part.end());
        const bool here = item.starts_with('h');
        if (here) item.erase(0, 1);
        const auto star = item.find('*');
        round.push_back({std::stoull(item.substr(0, star)),
                         star == std::string::npos ? 1 : std::stoi(item.substr(star + 1)), here});
      }
      status = repeat([&] {
        bool ok = true;
        for (const auto& [count, times, here] : round) {
          for (int t = 0; t < times; ++t) {
            const Clock::time_point start = Clock::now();
            ok &= trivial(count, here);
            fmt::print("BENCH map_ms_{}{} {:.4f}\n", here ? "here_" : "", count,
                       std::chrono::duration<double, std::milli>(Clock::now() - start).count());
          }
        }
        return ok;
      });
    }
  } else if (job == "squaredsum") {
    status = repeat([] {
      return text(SquaredSum().map(pymar::factory<Numbers>())) == "333333283333335000000";
    });
  } else if (job == "squaredsum2") {
    std::vector<std::int64_t> numbers(10'000'000);
    std::iota(numbers.begin(), numbers.end(), 0);
    status = repeat(
        [&] { return text(SquaredSum().map(pymar::factory(numbers))) == "333333283333335000000"; });
  } else if (job == "balance" || job == "balance_serial") {
    const auto points = static_cast<std::uint64_t>(env_int("BENCH_POINTS", 9'000'000));
    // The answer computed here, on one core without Pymar: the work the job holds.
    Span whole(Span::Params{points});
    whole.limit = points;
    const Clock::time_point start = Clock::now();
    const double expected = Balance::reduce_fn(Balance::map_fn(whole.items()));
    fmt::print("BENCH serial_ms {:.4f}\n",
               std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (job == "balance_serial") return 0;
    // The partials are summed in slice order rather than element order: allow for rounding.
    status = repeat([&] {
      const double value = Balance().map(pymar::factory<Span>({points}));
      return std::abs(value - expected) <= 1e-9 * std::abs(expected);
    });
  } else {
    fmt::print(stderr, "bench_task: unknown BENCH_JOB '{}'\n", job);
  }
  fmt::print("BENCH producer_hwm_kib {}\n", peak_rss_kib());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  return pymar::main(argc, argv, run_job);
}
