// The baselines the framework is measured against: each example as a plain serial loop and as an
// OpenMP loop, in one process, with no Pymar at all.
//
//   bench_baseline JOB MODE [REPS]
//
// JOB is integration, squaredsum or squaredsum2; MODE is serial or omp (OMP_NUM_THREADS threads,
// 2 unless set). Prints the answer, then one "BENCH compute_ms X" line per repetition: the time
// of the computation alone (for squaredsum2, the vector is built once, before the clock starts).
// With REPS = 1 (the default) the program is also the whole-process baseline for the suite.
//
// MODE slices (integration only) is the serial loop over each of the example's 4 slices on its
// own, split as Pymar splits them: one "BENCH slice_ms X" line per slice and repetition, the
// baseline of a worker's time per slice. MODE slices-busy times the same slices on two threads
// at once, slices 0 and 2 on one and 1 and 3 on the other, as two workers compute them: the
// baseline with both cores busy.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace {

using int128 = __int128_t;

// The same constants as examples/integration.cpp. The point count is read at run time, as the
// framework's slices are, so that the compiler cannot fold the loop away.
constexpr double a = 1.0;
constexpr double b = 10.0;
constexpr double dx = 1e-6;

std::size_t integration_points() {
  static volatile double width = b - a;
  return static_cast<std::size_t>(std::llround(width / dx));
}

std::size_t squaredsum_count() {
  static volatile std::size_t count = 10'000'000;
  return count;
}

// The serial loop over points [offset, offset + limit).
double integration_part(std::size_t offset, std::size_t limit) {
  double sum = 0;
  for (std::size_t i = offset; i < offset + limit; ++i) sum += std::exp(a + double(i) * dx) * dx;
  return sum;
}

double integration(bool parallel) {
  const std::size_t n = integration_points();
  double sum = 0;
  if (parallel) {
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (std::size_t i = 0; i < n; ++i) sum += std::exp(a + double(i) * dx) * dx;
  } else {
    for (std::size_t i = 0; i < n; ++i) sum += std::exp(a + double(i) * dx) * dx;
  }
  return sum;
}

// OpenMP has no reduction for __int128: each thread sums its share, then the shares are added.
template <class Square>
int128 sum_of_squares(std::size_t n, bool parallel, Square square) {
  int128 total = 0;
  if (parallel) {
#pragma omp parallel
    {
      int128 mine = 0;
#pragma omp for schedule(static) nowait
      for (std::size_t i = 0; i < n; ++i) mine += square(i);
#pragma omp critical
      total += mine;
    }
  } else {
    for (std::size_t i = 0; i < n; ++i) total += square(i);
  }
  return total;
}

int128 squaredsum(bool parallel) {
  return sum_of_squares(squaredsum_count(), parallel, [](std::size_t i) {
    const auto x = static_cast<std::int64_t>(i);
    return static_cast<int128>(x * x);
  });
}

int128 squaredsum2(const std::vector<std::int64_t>& numbers, bool parallel) {
  const std::int64_t* data = numbers.data();
  return sum_of_squares(numbers.size(), parallel,
                        [data](std::size_t i) { return static_cast<int128>(data[i] * data[i]); });
}

std::string text(int128 value) {
  std::string digits;
  const bool negative = value < 0;
  do {
    const int digit = static_cast<int>(value % 10);
    digits.insert(digits.begin(), static_cast<char>('0' + (negative ? -digit : digit)));
    value /= 10;
  } while (value != 0);
  return negative ? "-" + digits : digits;
}

int usage() {
  fmt::print(stderr,
             "usage: bench_baseline integration|squaredsum|squaredsum2 serial|omp [REPS]\n"
             "       bench_baseline integration slices|slices-busy [REPS]\n");
  return 2;
}

// Each of the integration example's 4 slices timed as a worker computes them: one after another
// on one thread (`slices`), or two threads at once taking slices 0 and 2, 1 and 3 (`slices-busy`),
// as two workers on two cores do.
int integration_slices(int reps, int threads) {
  constexpr std::size_t parts = 4;
  const std::size_t n = integration_points();
  std::vector<std::size_t> offsets{0}, limits;
  for (std::size_t part = 0; part < parts; ++part) {
    limits.push_back(n / parts + (part < n % parts ? 1 : 0));
    offsets.push_back(offsets.back() + limits.back());
  }
  double total = 0;
  std::vector<double> times;
  for (int rep = -1; rep < reps; ++rep) {  // the first, untimed, warms the caches
    std::vector<double> sums(parts), took(parts);
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (std::size_t part = 0; part < parts; ++part) {
      const auto start = std::chrono::steady_clock::now();
      sums[part] = integration_part(offsets[part], limits[part]);
      took[part] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
    }
    total = sums[0] + sums[1] + sums[2] + sums[3];
    if (rep >= 0) times.insert(times.end(), took.begin(), took.end());
  }
  fmt::print("Answer: {:.10f}\n", total);
  for (double ms : times) fmt::print("BENCH slice_ms {:.4f}\n", ms);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string_view job = argv[1];
  const std::string_view mode = argv[2];
  const int reps = argc > 3 ? std::atoi(argv[3]) : 1;
  if (reps < 1) return usage();
  if (job == "integration" && mode == "slices") return integration_slices(reps, 1);
  if (job == "integration" && mode == "slices-busy") return integration_slices(reps, 2);
  if (mode != "serial" && mode != "omp") return usage();
  const bool parallel = mode == "omp";
  if (parallel && std::getenv("OMP_NUM_THREADS") == nullptr) omp_set_num_threads(2);

  std::vector<std::int64_t> numbers;
  if (job == "squaredsum2") {
    numbers.resize(squaredsum_count());
    std::iota(numbers.begin(), numbers.end(), 0);
  } else if (job != "integration" && job != "squaredsum") {
    return usage();
  }

  std::string answer;
  std::vector<double> times;
  // With several repetitions, a first untimed one starts OpenMP's threads and warms the caches,
  // as the framework's figures are taken over a warm pool.
  for (int rep = reps > 1 ? -1 : 0; rep < reps; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    if (job == "integration") {
      answer = fmt::format("{:.10f}", integration(parallel));
    } else if (job == "squaredsum") {
      answer = text(squaredsum(parallel));
    } else {
      answer = text(squaredsum2(numbers, parallel));
    }
    const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
    if (rep >= 0) times.push_back(took.count());
  }
  fmt::print("Answer: {}\n", answer);
  for (double ms : times) fmt::print("BENCH compute_ms {:.4f}\n", ms);
  return 0;
}
