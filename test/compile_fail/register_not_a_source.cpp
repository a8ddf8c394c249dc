// Mistake: registering a data source that says how long it is but has no elements.
// expect: Empty must derive from pymar::DataSource and have items() or begin()/end()
#include "common.hpp"

struct Empty : pymar::DataSource {
  static std::size_t full_length() { return 10; }
};
REGISTER_DATASOURCE(Empty);
