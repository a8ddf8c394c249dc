// Mistake: giving `map` the data itself instead of a factory made from it.
// expect: required for the satisfaction of 'Factory<F>'
#include "common.hpp"

struct Sum : pymar::Producer<Sum> {
  static auto map_fn(auto&& xs) { return xs; }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};
REGISTER_PRODUCER(Sum);

long job() {
  const std::vector<long> data{1, 2, 3};
  return Sum().map(data);
}
