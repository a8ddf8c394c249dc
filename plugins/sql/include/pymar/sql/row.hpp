// Rows as typed C++ values: one column as a plain value (std::int64_t, double, std::string, bool,
// std::optional<...> for NULLs), several as a std::tuple (or std::pair) or as a struct whose
// fields are such values, in column order.
#pragma once

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "pymar/sql/cursor.hpp"

namespace pymar::sql {
namespace detail {

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <class T>
constexpr bool is_character =
    std::same_as<T, char> || std::same_as<T, wchar_t> || std::same_as<T, char8_t> ||
    std::same_as<T, char16_t> || std::same_as<T, char32_t>;

template <class T>
constexpr bool is_plain_column = std::same_as<T, bool> || std::same_as<T, std::string> ||
                                 std::floating_point<T> || (std::integral<T> && !is_character<T>);

template <class T>
constexpr bool is_column = is_plain_column<T>;
template <class T>
constexpr bool is_column<std::optional<T>> = is_plain_column<T>;

}  // namespace detail

/// A C++ type one column converts to: bool, an integer type (range-checked), float or double,
/// std::string, or std::optional of one of these (NULL reads as an empty optional).
template <class T>
concept Column = detail::is_column<T>;

/// How a C++ type is named in messages ("std::int64_t", "std::optional<double>").
template <Column T>
std::string type_label() {
  if constexpr (detail::IsOptional<T>::value) {
    return "std::optional<" + type_label<typename T::value_type>() + ">";
  } else if constexpr (std::same_as<T, bool>) {
    return "bool";
  } else if constexpr (std::integral<T>) {
    return std::string(std::is_signed_v<T> ? "std::int" : "std::uint") +
           std::to_string(sizeof(T) * 8) + "_t";
  } else if constexpr (std::same_as<T, float>) {
    return "float";
  } else if constexpr (std::same_as<T, double>) {
    return "double";
  } else if constexpr (std::floating_point<T>) {
    return "long double";
  } else {
    return "std::string";
  }
}

namespace detail {

// Out of line (src/row.cpp): the messages, so that each names the column, the row of the slice,
// the value found and the type wanted.
[[noreturn]] void throw_null(const Cursor& cursor, std::size_t column, std::size_t row,
                             const std::string& target);
[[noreturn]] void throw_unconvertible(const Cursor& cursor, std::size_t column, std::size_t row,
                                      const std::string& target);
[[noreturn]] void throw_out_of_range(const Cursor& cursor, std::size_t column, std::size_t row,
                                     const std::string& target);

template <std::integral T>
bool parse_integer(std::string_view text, T& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
  return error == std::errc() && end == text.data() + text.size();
}

}  // namespace detail

/// Converts the value in `column` of the cursor's current row to T. `row` (the row's index in
/// the slice) only serves the message of the ConversionError thrown when it does not convert.
template <Column T>
T read_value(const Cursor& cursor, std::size_t column, std::size_t row) {
  const Kind kind = cursor.kind(column);
  if constexpr (detail::IsOptional<T>::value) {
    if (kind == Kind::null) return std::nullopt;
    return read_value<typename T::value_type>(cursor, column, row);
  } else {
    if (kind == Kind::null) detail::throw_null(cursor, column, row, type_label<T>());
    if constexpr (std::same_as<T, bool>) {
      // SQLite has no boolean: its booleans are the integers 0 and 1.
      if (kind == Kind::boolean || kind == Kind::integer) {
        const std::int64_t value = cursor.integer(column);
        if (value == 0 || value == 1) return value == 1;
        detail::throw_out_of_range(cursor, column, row, type_label<T>());
      }
    } else if constexpr (std::integral<T>) {
      if (kind == Kind::integer) {
        const std::int64_t value = cursor.integer(column);
        if (!std::in_range<T>(value))
          detail::throw_out_of_range(cursor, column, row, type_label<T>());
        return static_cast<T>(value);
      }
      if (kind == Kind::numeric) {  // an exact decimal converts when it is a whole number in range
        T value{};
        if (detail::parse_integer(cursor.text(column), value)) return value;
        detail::throw_unconvertible(cursor, column, row, type_label<T>());
      }
    } else if constexpr (std::floating_point<T>) {
      if (kind == Kind::integer || kind == Kind::real || kind == Kind::numeric) {
        return static_cast<T>(cursor.real(column));
      }
    } else {
      if (kind == Kind::text || kind == Kind::numeric || kind == Kind::other) {
        return std::string(cursor.text(column));
      }
    }
    detail::throw_unconvertible(cursor, column, row, type_label<T>());
  }
}

namespace detail {

// Counting an aggregate's fields: T{AnyField{}, ...} compiles with exactly as many initialisers
// as T has fields (or fewer). Only ever used unevaluated.
struct AnyField {
  template <class T>
  operator T() const;
};

template <class T, std::size_t... I>
constexpr bool brace_initialisable(std::index_sequence<I...>) {
  return requires {
    T{(void(I), AnyField{})...};
  };
}

inline constexpr std::size_t kMaxFields = 16;

template <class T, std::size_t N = 0>
constexpr std::size_t field_count() {
  if constexpr (N < kMaxFields && brace_initialisable<T>(std::make_index_sequence<N + 1>())) {
    return field_count<T, N + 1>();
  } else {
    return N;
  }
}

template <class T>
concept TupleLike = requires {
  std::tuple_size<T>::value;
};

// References to a struct's fields, in declaration order, as a std::tuple of references.
template <class T>
auto fields_of(T& s) {
  constexpr std::size_t n = field_count<T>();
  // clang-format off
  if constexpr (n == 1) { auto& [a] = s; return std::tie(a); }
  else if constexpr (n == 2) { auto& [a, b] = s; return std::tie(a, b); }
  else if constexpr (n == 3) { auto& [a, b, c] = s; return std::tie(a, b, c); }
  else if constexpr (n == 4) { auto& [a, b, c, d] = s; return std::tie(a, b, c, d); }
  else if constexpr (n == 5) { auto& [a, b, c, d, e] = s; return std::tie(a, b, c, d, e); }
  else if constexpr (n == 6) { auto& [a, b, c, d, e, f] = s; return std::tie(a, b, c, d, e, f); }
  else if constexpr (n == 7) { auto& [a, b, c, d, e, f, g] = s; return std::tie(a, b, c, d, e, f, g); }
  else if constexpr (n == 8) { auto& [a, b, c, d, e, f, g, h] = s; return std::tie(a, b, c, d, e, f, g, h); }
  else if constexpr (n == 9) { auto& [a, b, c, d, e, f, g, h, i] = s; return std::tie(a, b, c, d, e, f, g, h, i); }
  else if constexpr (n == 10) { auto& [a, b, c, d, e, f, g, h, i, j] = s; return std::tie(a, b, c, d, e, f, g, h, i, j); }
  else if constexpr (n == 11) { auto& [a, b, c, d, e, f, g, h, i, j, k] = s; return std::tie(a, b, c, d, e, f, g, h, i, j, k); }
  else if constexpr (n == 12) { auto& [a, b, c, d, e, f, g, h, i, j, k, l] = s; return std::tie(a, b, c, d, e, f, g, h, i, j, k, l); }
  else if constexpr (n == 13) { auto& [a, b, c, d, e, f, g, h, i, j, k, l, m] = s; return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m); }
  else if constexpr (n == 14) { auto& [a, b, c, d, e, f, g, h, i, j, k, l, m, o] = s; return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m, o); }
  else if constexpr (n == 15) { auto& [a, b, c, d, e, f, g, h, i, j, k, l, m, o, p] = s; return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m, o, p); }
  else { auto& [a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q] = s; return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q); }
  // clang-format on
}

template <class Tuple, std::size_t... I>
constexpr bool all_columns(std::index_sequence<I...>) {
  return (Column<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>> && ...);
}

template <class T>
constexpr bool is_tuple_row() {
  if constexpr (TupleLike<T> && !Column<T>) {
    return std::tuple_size_v<T> > 0 &&
           all_columns<T>(std::make_index_sequence<std::tuple_size_v<T>>());
  } else {
    return false;
  }
}

template <class T>
constexpr bool is_struct_row() {
  if constexpr (std::is_aggregate_v<T> && std::default_initializable<T> && !TupleLike<T> &&
                !std::is_array_v<T> && field_count<T>() > 0) {
    using Fields = decltype(fields_of(std::declval<T&>()));
    return all_columns<Fields>(std::make_index_sequence<std::tuple_size_v<Fields>>());
  } else {
    return false;
  }
}

}  // namespace detail

/// A C++ type one row converts to: a Column for one column, a std::tuple or std::pair of Columns,
/// or an aggregate struct of up to 16 Column fields (read in declaration order).
template <class Row>
concept RowType = Column<Row> || detail::is_tuple_row<Row>() || detail::is_struct_row<Row>();

/// How many columns a row of type Row takes.
template <RowType Row>
constexpr std::size_t row_arity() {
  if constexpr (Column<Row>) {
    return 1;
  } else if constexpr (detail::is_tuple_row<Row>()) {
    return std::tuple_size_v<Row>;
  } else {
    return detail::field_count<Row>();
  }
}

/// Converts the cursor's current row into `out`. Throws ConversionError naming the column.
template <RowType Row>
void read_row(const Cursor& cursor, std::size_t row, Row& out) {
  auto read_all = [&]<std::size_t... I>(auto&& fields, std::index_sequence<I...>) {
    ((std::get<I>(fields) = read_value<
          std::remove_cvref_t<std::tuple_element_t<I, std::remove_cvref_t<decltype(fields)>>>>(
          cursor, I, row)),
     ...);
  };
  if constexpr (Column<Row>) {
    out = read_value<Row>(cursor, 0, row);
  } else if constexpr (detail::is_tuple_row<Row>()) {
    read_all(out, std::make_index_sequence<std::tuple_size_v<Row>>());
  } else {
    read_all(detail::fields_of(out), std::make_index_sequence<row_arity<Row>()>());
  }
}

namespace detail {
template <class Tuple, std::size_t... I>
std::string field_labels(std::index_sequence<I...>) {
  std::string out;
  ((out += std::string(I == 0 ? "" : ", ") +
           type_label<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>()),
   ...);
  return out;
}
}  // namespace detail

/// A readable name of a row type, for messages: "std::int64_t", "(std::int64_t, std::string)".
template <RowType Row>
std::string row_label() {
  if constexpr (Column<Row>) {
    return type_label<Row>();
  } else if constexpr (detail::is_tuple_row<Row>()) {
    return "(" + detail::field_labels<Row>(std::make_index_sequence<row_arity<Row>()>()) + ")";
  } else {
    using Fields = decltype(detail::fields_of(std::declval<Row&>()));
    return "(" + detail::field_labels<Fields>(std::make_index_sequence<row_arity<Row>()>()) + ")";
  }
}

}  // namespace pymar::sql
