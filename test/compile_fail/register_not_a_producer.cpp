// Mistake: registering a template producer that derives from another class's Producer (the
// name in the message is the template with all its arguments: the macro takes commas).
// expect: Histogram<int, 2> must derive from pymar::Producer<Histogram<int, 2>>
#include "common.hpp"

struct Counts : pymar::Producer<Counts> {
  static auto map_fn(auto&& xs) { return xs; }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum<std::size_t>(values); }
};

template <class T, int Buckets>
struct Histogram : pymar::Producer<Counts> {};
REGISTER_PRODUCER(Histogram<int, 2>);
