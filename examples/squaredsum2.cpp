// The same sum over a std::vector of 10^7 integers built on the producer. Each worker receives
// only its own slice, sent as raw bytes straight from the vector's memory, and reads it in place.
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <ranges>
#include <vector>

#include <fmt/format.h>
#include <pymar/int128.hpp>
#include <pymar/pymar.hpp>

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
    std::vector<std::int64_t> numbers(10'000'000);
    std::iota(numbers.begin(), numbers.end(), 0);
    const pymar::int128 answer = SquaredSum().map(pymar::factory(numbers));
    fmt::print("Answer: {}\n", answer);
  });
}
