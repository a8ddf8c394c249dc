// The parameters of the SQL plugin's source, as they travel to every worker: a header of
// their own, without <ranges>, so that the fuzz target (clang) decodes them as workers do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <pymar/codec.hpp>

namespace pymar::sql {

/// How the rows of a slice [offset, offset + limit) are found.
enum class Split : std::uint8_t {
  /// Slice i reads the keys in a range computed from the row count and the smallest and largest
  /// key (see key_range()): `WHERE key >= from AND key < to ORDER BY key`. Needs an integer key,
  /// ideally indexed. The ranges are adjacent and the first and last are open-ended, so every
  /// row is in exactly one slice; when the keys have gaps, slices hold more or fewer rows than
  /// `limit`, but the answer is the same.
  key_range,
  /// `ORDER BY key LIMIT limit OFFSET offset`: any unique key, exactly `limit` rows per slice,
  /// but the database walks `offset` rows to reach each slice, which grows with the table.
  offset,
};

/// The rows a job covers, read once on the producer by Source::prepare, so that every slice
/// maps to its key range from the same figures.
struct Snapshot {
  bool taken = false;
  std::uint64_t rows = 0;    ///< rows of the source (with `where` applied)
  std::int64_t min_key = 0;  ///< smallest key, when rows > 0
  std::int64_t max_key = 0;  ///< largest key, when rows > 0
  MSGPACK_DEFINE(taken, rows, min_key, max_key)
};

/// Where a source's rows come from. Travels to every worker (msgpack-encoded). Every member has
/// a default, so designated initialisers may name only those they set.
struct Params {
  /// `sqlite:PATH` (a file on each worker's machine; relative paths are relative to the
  /// worker's working directory) or `postgresql://user[:password]@host[:port]/database[?...]`
  /// (`postgres://` too). Each worker connects from its own machine: `localhost` is the worker's.
  std::string url{};
  /// A table (`name` or `schema.name`) ...
  std::string table{};
  /// ... or a query whose result is the source (`SELECT ... FROM ... JOIN ...`): set one.
  std::string query{};
  /// Columns read, in the order of the row type's fields; empty reads every column (`*`).
  /// Plain names (`price`, `"Unit Price"`): for expressions, use `query`.
  std::vector<std::string> columns{};
  /// The column the rows are ordered and split by: an integer column for Split::key_range
  /// (index it), a unique column for Split::offset.
  std::string key{};
  /// An optional SQL condition (`year >= 2000`) that rows must meet.
  std::string where{};
  Split split = Split::key_range;
  /// Filled by Source::prepare on the producer; when absent, each slice reads it for itself.
  Snapshot snapshot{};
  MSGPACK_DEFINE(url, table, query, columns, key, where, split, snapshot)
};

}  // namespace pymar::sql

// (No semicolon: the macro ends with a namespace's closing brace.)
MSGPACK_ADD_ENUM(pymar::sql::Split)
