// The SQL data-source plugin: a table or a query of SQLite or PostgreSQL as a Pymar DataSource.
//
//   struct Numbers : pymar::sql::Source<std::int64_t> { using Source::Source; };
//   REGISTER_DATASOURCE(Numbers);
//   ...
//   pymar::sql::Params params{.url = "sqlite:/data/numbers.db", .table = "numbers",
//                             .columns = {"i"}, .key = "i"};
//   auto answer = SquaredSum().map(pymar::factory<Numbers>(params));
//
// Each worker opens its own connection and reads only its own slice, ordered by the key. By
// default a slice is a range of the (integer) key, found from the row count and the smallest and
// largest key that Source::prepare reads once on the producer: no slice makes the database
// walk the rows before it, and every row is in exactly one slice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/data_source.hpp>
#include <pymar/pull_range.hpp>

#include "pymar/sql/cursor.hpp"
#include "pymar/sql/params.hpp"
#include "pymar/sql/row.hpp"

namespace pymar::sql {

/// The database behind a connection string.
enum class Dialect : std::uint8_t { sqlite, postgresql };

/// The backends this build of the plugin has: "sqlite", "postgresql".
std::vector<std::string> backends();

namespace detail {
class Backend;
}  // namespace detail

/// A connection to a database, for setting up data (tests, examples, benchmarks) and for reading
/// rows outside a job. Sources open their own connections; this class is not needed to use them.
class Connection {
 public:
  enum class Access : std::uint8_t { read_only, read_write };

  /// Connects to `url` (see Params::url). A read-write SQLite connection creates the file.
  /// Throws ConnectionError.
  explicit Connection(const std::string& url, Access access = Access::read_write);
  ~Connection();
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;

  Dialect dialect() const;
  /// The connection string with any password hidden.
  std::string where() const;

  /// Runs one or more statements that return no rows. Throws QueryError.
  void execute(std::string_view sql);

  /// Runs a query; rows are read as the cursor moves. The cursor keeps the connection open.
  std::unique_ptr<Cursor> query(std::string_view sql);

  /// Runs a query and returns all its rows as Row values. Throws QueryError, ConversionError.
  template <RowType Row>
  std::vector<Row> rows(std::string_view sql);

 private:
  std::shared_ptr<detail::Backend> backend_;
};

/// The keys of a slice under Split::key_range: from `from` (inclusive) up to `to` (exclusive).
/// The first slice has no lower bound and the last no upper bound, so that the slices' ranges
/// cover every key value, even one that is not a whole number (SQLite stores what it is given).
struct KeyRange {
  std::optional<std::int64_t> from;
  std::optional<std::int64_t> to;
};

/// The key range of slice [offset, offset + limit) of `snapshot.rows` rows. Position x maps to
/// key(x) = min_key + floor(x * span / rows), with span = max_key - min_key + 1: monotonic, and
/// key(0) = min_key. The slice holds the keys from key(offset) up to key(offset + limit), so
/// consecutive slices get adjacent ranges: every row is in exactly one slice. With dense keys
/// (span == rows) key(x) = min_key + x, and a slice is exactly its `limit` rows.
/// Throws QueryError when the slice lies outside the snapshot.
KeyRange key_range(const Snapshot& snapshot, std::size_t offset, std::size_t limit);

/// Reads the snapshot (row count, smallest and largest key) of `params` from the database.
/// Throws ConnectionError, QueryError (also when the key is not an integer or holds NULLs).
Snapshot take_snapshot(const Params& params);

/// The SQL that slice [offset, offset + limit) of `params` runs, for `dialect`. Under
/// Split::key_range, `params.snapshot` must be taken. Throws QueryError on a bad configuration.
std::string slice_query(const Params& params, std::size_t offset, std::size_t limit);

/// Rows counted by the source of `params` (with `where`): the snapshot's count when taken.
std::size_t count_rows(const Params& params);

/// Opens a connection of its own and runs slice [offset, offset + limit) of `params`.
std::unique_ptr<Cursor> open_slice(const Params& params, std::size_t offset, std::size_t limit);

/// The rows of one slice, converted to Row as they are read: a single-pass (input) range.
/// Converting a value that does not fit Row throws ConversionError.
template <RowType Row>
class Rows : public PullRange<Rows<Row>, Row> {
 public:
  /// Takes over a cursor; throws QueryError when its column count does not match Row.
  explicit Rows(std::unique_ptr<Cursor> cursor) : cursor_(std::move(cursor)) {
    if (cursor_->column_count() != row_arity<Row>()) throw_mismatch();
  }

  /// The next row into `row`; false after the last. Called by PullRange as the range is iterated.
  bool read(Row& row) {
    if (!cursor_->next()) return false;
    read_row(*cursor_, index_++, row);
    return true;
  }

 private:
  [[noreturn]] void throw_mismatch() const;

  std::unique_ptr<Cursor> cursor_;
  std::size_t index_ = 0;
};

namespace detail {
[[noreturn]] void throw_column_mismatch(const Cursor& cursor, std::size_t expected,
                                        const std::string& row_type);
}  // namespace detail

template <RowType Row>
void Rows<Row>::throw_mismatch() const {
  detail::throw_column_mismatch(*cursor_, row_arity<Row>(), row_label<Row>());
}

template <RowType Row>
std::vector<Row> Connection::rows(std::string_view sql) {
  std::vector<Row> out;
  Rows<Row> rows(query(sql));
  for (const Row& row : rows) out.push_back(row);
  return out;
}

/// A data source over a table or query: derive from it (`using Source::Source;`) or name it
/// (`using Books = pymar::sql::Source<Book>;`), register it with REGISTER_DATASOURCE, and give
/// pymar::factory<YourSource> a Params. A slice's elements are Row values.
template <RowType Row>
class Source : public pymar::DataSource {
 public:
  using Params = sql::Params;
  using row_type = Row;

  explicit Source(Params params) : params_(std::move(params)) {}

  /// Runs once on the producer, when the factory is made: under Split::key_range, reads the
  /// snapshot of the rows (count, smallest and largest key), so that every worker maps its slice
  /// to a key range from the same figures and none has to count the rows again.
  static Params prepare(Params params) {
    if (params.split == Split::key_range && !params.snapshot.taken) {
      params.snapshot = take_snapshot(params);
    }
    return params;
  }

  /// The number of rows (see count_rows).
  static std::size_t full_length(const Params& params) { return count_rows(params); }

  /// Connects and runs this slice's query; rows are converted as they are read.
  Rows<Row> items() const { return Rows<Row>(open_slice(params_, offset, limit)); }

  const Params& params() const noexcept { return params_; }

 private:
  Params params_;
};

}  // namespace pymar::sql
