// Small helpers for writing map_fn and reduce_fn.
#pragma once

#include <ranges>
#include <type_traits>

namespace pymar {

/// The sum of a range's values, accumulated in T (by default the range's own value type).
/// `pymar::sum<__int128>(values)` sums 64-bit values without overflow.
template <class T = void, std::ranges::input_range R>
auto sum(R&& values) {
  using Total = std::conditional_t<std::is_void_v<T>, std::ranges::range_value_t<R>, T>;
  Total total{};
  for (auto&& value : values) total += static_cast<Total>(value);
  return total;
}

}  // namespace pymar
