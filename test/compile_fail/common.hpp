// What every compile-fail case shares: a registered source of integers, as a user writes one.
#pragma once

#include <cstddef>
#include <ranges>
#include <string>
#include <vector>

#include <pymar/pymar.hpp>

struct Numbers : pymar::DataSource {
  static std::size_t full_length() { return 100; }
  auto items() const { return indices(); }
};
REGISTER_DATASOURCE(Numbers);
