// Mistake: a value type that msgpack cannot encode (a struct without MSGPACK_DEFINE).
// expect: pymar: the value reduce_fn returns cannot travel
#include "common.hpp"

struct MinMax {
  std::size_t min = 0;
  std::size_t max = 0;
};

struct Extremes : pymar::Producer<Extremes> {
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](std::size_t x) { return MinMax{x, x}; });
  }
  static MinMax reduce_fn(auto&& values) {
    MinMax out{SIZE_MAX, 0};
    for (const MinMax& v : values) out = {std::min(out.min, v.min), std::max(out.max, v.max)};
    return out;
  }
};
REGISTER_PRODUCER(Extremes);

MinMax job() {
  return Extremes().map(pymar::factory<Numbers>());
}
