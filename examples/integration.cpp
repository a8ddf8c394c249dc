// The integral of exp on [1, 10] as a left Riemann sum with dx = 1e-6: 9,000,000 points, made on
// the workers that use them. Only each slice's offsets travel, and one number comes back.
//
//   integration --produce -w 4       run it here with 4 worker processes
#include <cmath>
#include <cstddef>
#include <ranges>

#include <fmt/format.h>
#include <pymar/pymar.hpp>

constexpr double a = 1.0;
constexpr double b = 10.0;
constexpr double dx = 1e-6;

// The points a, a + dx, ..., b - dx; each worker makes those of its own part.
struct Points : pymar::DataSource {
  static std::size_t full_length() { return static_cast<std::size_t>(std::llround((b - a) / dx)); }

  auto items() const {
    return indices() | std::views::transform([](std::size_t i) { return a + double(i) * dx; });
  }
};
REGISTER_DATASOURCE(Points);

struct Integral : pymar::Producer<Integral> {
  static constexpr std::size_t WORKERS_NUMBER = 4;

  static auto map_fn(auto&& points) {
    return points | std::views::transform([](double x) { return std::exp(x) * dx; });
  }

  static double reduce_fn(auto&& values) { return pymar::sum(values); }
};
REGISTER_PRODUCER(Integral);

int main(int argc, char** argv) {
  return pymar::main(argc, argv, [] {
    const double answer = Integral().map(pymar::factory<Points>());
    fmt::print("Answer: {:.10f}\n", answer);
  });
}
