// Mistake: a reduce_fn whose parameter does not accept what map_fn returns.
// expect: pymar: reduce_fn cannot be called on what map_fn returns
#include "common.hpp"

struct Squares : pymar::Producer<Squares> {
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](std::size_t x) { return x * x; });
  }
  static std::size_t reduce_fn(const std::vector<std::string>& values) { return values.size(); }
};
REGISTER_PRODUCER(Squares);

std::size_t job() {
  return Squares().map(pymar::factory<Numbers>());
}
