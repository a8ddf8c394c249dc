// Mistake: a reduce_fn that accepts map_fn's values but not a std::vector of its own results
// (the producer reduces the partial values with it too).
// expect: pymar: reduce_fn must also accept a std::vector of its own results
#include "common.hpp"

struct Mean : pymar::Producer<Mean> {
  static std::vector<int> map_fn(auto&& xs) { return {xs.begin(), xs.end()}; }
  static double reduce_fn(const std::vector<int>& values) {
    return values.empty() ? 0.0 : pymar::sum<double>(values) / double(values.size());
  }
};
REGISTER_PRODUCER(Mean);

double job() {
  return Mean().map(pymar::factory<Numbers>());
}
