// DataSource: where a slice's elements come from, made or read on the worker that uses them.
#pragma once

#include "pymar/detail/config.hpp"

#include <concepts>
#include <cstddef>
#include <ranges>
#include <type_traits>

namespace pymar {

/// Base of a user's data source. A source covers the part [offset, offset + limit) of a whole of
/// `full_length()` elements; each worker builds the source for its own slice only.
///
/// A derived class provides:
///  - `static std::size_t full_length()`, or `static std::size_t full_length(const Params&)`
///    when it declares `using Params = ...;` (any msgpack-encodable type, given to the factory);
///  - its elements, either as `auto items() const` returning a range (usually built from
///    `indices()`), or by being a range itself (`begin()` and `end()`).
///  - optionally `static Params prepare(Params)`: run once on the producer when the factory is
///    made, before full_length(), to work out what every slice needs (a row count, a key range)
///    and hand it to the workers inside the parameters.
/// A source with Params is constructed from them; otherwise it is default-constructed. Then
/// `offset` and `limit` are set, and its elements are iterated once.
struct DataSource {
  std::size_t offset = 0;  ///< index of the first element of this part in the whole
  std::size_t limit = 0;   ///< number of elements in this part

  /// The indices of this part: offset, offset + 1, ..., offset + limit - 1.
  [[nodiscard]] auto indices() const noexcept { return std::views::iota(offset, offset + limit); }
};

namespace detail {

template <class S>
concept SourceWithParams = requires {
  typename S::Params;
};

template <class S>
concept SourceWithItems = requires(const S& s) {
  { s.items() } -> std::ranges::input_range;
};

template <class S>
concept DataSourceType = std::derived_from<S, DataSource> &&
    (SourceWithItems<S> || std::ranges::input_range<S&>);

template <class S>
struct ParamsOf {
  using type = void;
};
template <SourceWithParams S>
struct ParamsOf<S> {
  using type = typename S::Params;
};

/// The range a source's slice is handed to `map_fn` as.
template <class S>
decltype(auto) elements_of(S& source) {
  if constexpr (SourceWithItems<S>) {
    return source.items();
  } else {
    return (source);
  }
}

template <class S, class Params>
std::size_t full_length_of([[maybe_unused]] const Params* params) {
  if constexpr (requires { S::full_length(*params); }) {
    return static_cast<std::size_t>(S::full_length(*params));
  } else {
    static_assert(
        requires { S::full_length(); },
        "a DataSource needs static full_length() or static full_length(const Params&)");
    return static_cast<std::size_t>(S::full_length());
  }
}

}  // namespace detail
}  // namespace pymar
