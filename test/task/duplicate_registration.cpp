// A task that registers one producer twice: it must refuse to start, naming both places.
#include <pymar/pymar.hpp>

struct Twice : pymar::Producer<Twice> {
  static auto map_fn(auto&& xs) { return xs; }
  static int reduce_fn(auto&& xs) { return pymar::sum<int>(xs); }
};
REGISTER_PRODUCER(Twice);

namespace again {
using Twice = ::Twice;
}
PYMAR_REGISTER_PRODUCER(again::Twice);
REGISTER_PRODUCER(Twice);

int main(int argc, char** argv) {
  return pymar::main(argc, argv, [] {});
}
