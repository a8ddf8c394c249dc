// Small helpers for writing map_fn and reduce_fn.
#pragma once

#include "pymar/detail/config.hpp"

#include <ranges>
#include <type_traits>

namespace pymar {

/// The sum of a range's values, accumulated in T (by default the range's own value type).
/// `pymar::sum<pymar::int128>(values)` sums 64-bit values without overflow (<pymar/int128.hpp>
/// lets the 128-bit total travel).
template <class T = void, std::ranges::input_range R>
auto sum(R&& values) {
  using Total = std::conditional_t<std::is_void_v<T>, std::ranges::range_value_t<R>, T>;
  Total total{};
  for (auto&& value : values) total += static_cast<Total>(value);
  return total;
}

}  // namespace pymar
