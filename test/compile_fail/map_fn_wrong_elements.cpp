// Mistake: a map_fn whose parameter does not accept the source's elements (integers here).
// expect: pymar: map_fn cannot be called on the source's elements
#include "common.hpp"

struct Lengths : pymar::Producer<Lengths> {
  static std::vector<std::size_t> map_fn(const std::vector<std::string>& words) {
    std::vector<std::size_t> out;
    for (const auto& w : words) out.push_back(w.size());
    return out;
  }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum<std::size_t>(values); }
};
REGISTER_PRODUCER(Lengths);

std::size_t job() {
  return Lengths().map(pymar::factory<Numbers>());
}
