// The sum of i * i for i in [0, 10^7), with the numbers made on the workers. The answer,
// 333333283333335000000, does not fit 64 bits: partial sums travel as 128-bit integers.
#include <cstddef>
#include <cstdint>
#include <ranges>

#include <fmt/format.h>
#include <pymar/int128.hpp>
#include <pymar/pymar.hpp>

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

int main(int argc, char** argv) {
  return pymar::main(argc, argv, [] {
    const pymar::int128 answer = SquaredSum().map(pymar::factory<Numbers>());
    fmt::print("Answer: {}\n", answer);
  });
}
