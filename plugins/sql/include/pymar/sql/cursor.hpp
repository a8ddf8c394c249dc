// The SQL plugin's view of a result: rows read one at a time, whatever the database. Each backend
// (SQLite, PostgreSQL) implements Cursor; row conversion (row.hpp) reads values through it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <pymar/error.hpp>

namespace pymar::sql {

/// Base of every error of the SQL plugin. A worker's exception reaches the producer's `map` as a
/// pymar::SliceError carrying the type name and the message, so each message says what went
/// wrong, where (the connection string, with any password hidden) and what to do.
class Error : public pymar::Error {
 public:
  using pymar::Error::Error;
};

/// The database could not be reached or opened: bad connection string, server down, no file,
/// authentication refused, or a backend this build does not have.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

/// A query failed: a missing table or column, a syntax error in `where` or `query`, or a
/// configuration the source cannot turn into a query (no key, both table and query set, ...).
class QueryError : public Error {
 public:
  using Error::Error;
};

/// A value does not convert to the C++ type of its field: NULL into a non-optional, text into
/// a number, an integer out of the range of the field's type.
class ConversionError : public Error {
 public:
  using Error::Error;
};

/// What a value of the current row is, in the database's terms.
enum class Kind : std::uint8_t {
  null,
  integer,  ///< read with Cursor::integer
  real,     ///< read with Cursor::real
  numeric,  ///< an exact decimal (PostgreSQL numeric), read as text, integer or real
  boolean,  ///< read with Cursor::integer (0 or 1)
  text,     ///< read with Cursor::text
  blob,     ///< bytes (SQLite BLOB, PostgreSQL bytea): not converted
  other,    ///< any other type (dates, uuid, json...), read as its text form
};

/// A readable name of a kind, for messages ("an integer", "text", ...).
std::string_view describe(Kind kind) noexcept;

/// Rows of one query, read forward once. A cursor starts before the first row.
class Cursor {
 public:
  virtual ~Cursor() = default;

  /// Moves to the next row; false when there is none. Throws QueryError if the database fails.
  virtual bool next() = 0;

  virtual std::size_t column_count() const = 0;
  virtual std::string column_name(std::size_t column) const = 0;

  /// The kind of the value in `column` of the current row.
  virtual Kind kind(std::size_t column) const = 0;
  /// The value as an integer; only for Kind::integer and Kind::boolean.
  virtual std::int64_t integer(std::size_t column) const = 0;
  /// The value as a double; for Kind::integer, Kind::real and Kind::numeric.
  virtual double real(std::size_t column) const = 0;
  /// The value's text, valid until the next call of next(); for Kind::text, Kind::numeric and
  /// Kind::other.
  virtual std::string_view text(std::size_t column) const = 0;

  /// The connection string this cursor reads from, with any password hidden (for messages).
  virtual std::string where() const = 0;
};

}  // namespace pymar::sql
