// The SQL plugin's database-independent part: connection strings, the queries a slice runs, the
// key ranges slices map to, and the messages of its errors.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "backend.hpp"
#include "pymar/sql.hpp"

namespace pymar::sql {

std::vector<std::string> backends() {
  std::vector<std::string> out;
#ifdef PYMAR_SQL_SQLITE
  out.emplace_back("sqlite");
#endif
#ifdef PYMAR_SQL_POSTGRESQL
  out.emplace_back("postgresql");
#endif
  return out;
}

std::string_view describe(Kind kind) noexcept {
  switch (kind) {
    case Kind::null:
      return "NULL";
    case Kind::integer:
      return "an integer";
    case Kind::real:
      return "a real number";
    case Kind::numeric:
      return "a decimal number";
    case Kind::boolean:
      return "a boolean";
    case Kind::text:
      return "text";
    case Kind::blob:
      return "a blob";
    case Kind::other:
      return "a value";
  }
  return "a value";
}

namespace detail {
namespace {

std::string shortened(std::string_view text, std::size_t most = 60) {
  if (text.size() <= most) return std::string(text);
  return std::string(text.substr(0, most)) + "...";
}

// The value of a column, for a message: "the text 'abc'", "the integer 300".
std::string value_of(const Cursor& cursor, std::size_t column) {
  const Kind kind = cursor.kind(column);
  switch (kind) {
    case Kind::integer:
      return fmt::format("the integer {}", cursor.integer(column));
    case Kind::boolean:
      return cursor.integer(column) ? "the boolean true" : "the boolean false";
    case Kind::real:
      return fmt::format("the real number {}", cursor.real(column));
    case Kind::numeric:
      return fmt::format("the decimal {}", cursor.text(column));
    case Kind::text:
      return fmt::format("the text '{}'", shortened(cursor.text(column)));
    case Kind::other:
      return fmt::format("the value '{}'", shortened(cursor.text(column)));
    case Kind::blob:
    case Kind::null:
      break;
  }
  return std::string(describe(kind));
}

std::string column_place(const Cursor& cursor, std::size_t column, std::size_t row) {
  return fmt::format("SQL source {}: column '{}' of row {} of this slice", cursor.where(),
                     cursor.column_name(column), row + 1);
}

}  // namespace

void throw_null(const Cursor& cursor, std::size_t column, std::size_t row,
                const std::string& target) {
  throw ConversionError(fmt::format(
      "{} is NULL, which does not convert to {}: read it as std::optional<{}> to accept NULLs",
      column_place(cursor, column, row), target, target));
}

void throw_unconvertible(const Cursor& cursor, std::size_t column, std::size_t row,
                         const std::string& target) {
  throw ConversionError(fmt::format("{} holds {}, which does not convert to {}",
                                    column_place(cursor, column, row), value_of(cursor, column),
                                    target));
}

void throw_out_of_range(const Cursor& cursor, std::size_t column, std::size_t row,
                        const std::string& target) {
  throw ConversionError(fmt::format("{} holds {}, which is out of the range of {}",
                                    column_place(cursor, column, row), value_of(cursor, column),
                                    target));
}

void throw_column_mismatch(const Cursor& cursor, std::size_t expected,
                           const std::string& row_type) {
  std::vector<std::string> names;
  for (std::size_t c = 0; c < cursor.column_count(); ++c) names.push_back(cursor.column_name(c));
  throw QueryError(fmt::format(
      "SQL source {}: the query returns {} column(s) ({}) but the row type {} has {} field(s): "
      "list the columns in Params::columns in the order of the row type's fields",
      cursor.where(), names.size(), fmt::join(names, ", "), row_type, expected));
}

std::string redact(std::string_view url) {
  std::string out(url);
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    const auto start = scheme + 3;
    const auto end = std::min(out.find_first_of("/?", start), out.size());
    const auto at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      const auto colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=... in the query part of a URL or in key=value settings.
  for (auto p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    const auto value = p + 9;
    const auto end = std::min(out.find_first_of("& ", value), out.size());
    out.replace(value, end - value, "***");
  }
  return out;
}

std::shared_ptr<Backend> connect(const std::string& url, bool read_only) {
  const std::string where = redact(url);
  if (url.empty()) {
    throw ConnectionError(
        "SQL source: no connection string: set Params::url (sqlite:PATH or "
        "postgresql://user@host/database)");
  }
  if (url.starts_with("sqlite:")) {
    std::string path = url.substr(7);
    if (path.starts_with("//")) path.erase(0, 2);  // sqlite:///absolute/path
    if (path.empty()) throw ConnectionError(fmt::format("SQL source {}: no file name", where));
#ifdef PYMAR_SQL_SQLITE
    return connect_sqlite(path, read_only, where);
#else
    throw ConnectionError(
        fmt::format("SQL source {}: this build of the SQL plugin has no SQLite support (built with "
                    "-Dsqlite=disabled, or libsqlite3-dev was missing)",
                    where));
#endif
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
#ifdef PYMAR_SQL_POSTGRESQL
    return connect_postgresql(url, read_only, where);
#else
    throw ConnectionError(fmt::format(
        "SQL source {}: this build of the SQL plugin has no PostgreSQL support (built with "
        "-Dpostgresql=disabled, or libpq-dev was missing)",
        where));
#endif
  }
  throw ConnectionError(
      fmt::format("SQL source '{}': unsupported connection string: use sqlite:PATH or "
                  "postgresql://user@host/database",
                  where));
}

namespace {

// A plain SQL name: identifiers ([A-Za-z_][A-Za-z0-9_$]*) or "quoted identifiers", joined by dots.
bool plain_name(std::string_view name) {
  if (name.empty()) return false;
  std::size_t i = 0;
  while (true) {
    if (i < name.size() && name[i] == '"') {
      const auto close = name.find('"', i + 1);
      if (close == std::string_view::npos || close == i + 1) return false;
      i = close + 1;
    } else {
      auto first = [](char c) { return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); };
      if (i >= name.size() || !first(name[i])) return false;
      ++i;
      while (i < name.size() &&
             (first(name[i]) || (name[i] >= '0' && name[i] <= '9') || name[i] == '$')) {
        ++i;
      }
    }
    if (i == name.size()) return true;
    if (name[i] != '.') return false;
    ++i;
  }
}

void check_name(const Params& p, std::string_view what, const std::string& name) {
  if (!plain_name(name)) {
    throw QueryError(fmt::format(
        "SQL source {}: {} '{}' is not a plain SQL name (letters, digits, _ or \"quoted\"): "
        "for expressions, set Params::query to a SELECT and name its result columns",
        redact(p.url), what, name));
  }
}

// Throws QueryError when `p` cannot describe a source.
void check(const Params& p) {
  const std::string where = redact(p.url);
  if (p.table.empty() == p.query.empty()) {
    throw QueryError(
        fmt::format("SQL source {}: set exactly one of Params::table and Params::query", where));
  }
  if (p.key.empty()) {
    throw QueryError(fmt::format(
        "SQL source {}: set Params::key, the column that orders the rows and splits them into "
        "slices ({})",
        where,
        p.split == Split::key_range ? "an integer column, ideally indexed" : "a unique column"));
  }
  if (!p.table.empty()) check_name(p, "table", p.table);
  check_name(p, "key", p.key);
  for (const std::string& column : p.columns) check_name(p, "column", column);
  if (p.split != Split::key_range && p.split != Split::offset) {
    throw QueryError(
        fmt::format("SQL source {}: unknown split mode {}", where, static_cast<int>(p.split)));
  }
}

std::string from_clause(const Params& p) {
  return p.table.empty() ? fmt::format("({}) AS pymar_source", p.query) : p.table;
}

// " WHERE a AND b" over the non-empty conditions.
std::string where_clause(const Params& p, std::string_view condition = {}) {
  std::vector<std::string> parts;
  if (!p.where.empty()) parts.push_back("(" + p.where + ")");
  if (!condition.empty()) parts.emplace_back(condition);
  return parts.empty() ? std::string() : fmt::format(" WHERE {}", fmt::join(parts, " AND "));
}

// Turns a backend's failure to prepare into a message naming what the configuration names.
[[noreturn]] void rethrow(const DatabaseError& e, const Params& p, std::string_view sql) {
  const std::string where = redact(p.url);
  switch (e.failure()) {
    case Failure::missing_table:
      if (!p.table.empty()) {
        throw QueryError(
            fmt::format("SQL source {}: table '{}' does not exist ({})", where, p.table, e.what()));
      }
      throw QueryError(fmt::format("SQL source {}: a table of Params::query does not exist ({})",
                                   where, e.what()));
    case Failure::missing_column:
      throw QueryError(fmt::format(
          "SQL source {}: a column does not exist in {} ({}; columns: {}; key: {})", where,
          p.table.empty() ? std::string("the result of Params::query") : "table '" + p.table + "'",
          e.what(),
          p.columns.empty() ? std::string("*") : fmt::format("{}", fmt::join(p.columns, ", ")),
          p.key));
    case Failure::other:
      break;
  }
  throw QueryError(
      fmt::format("SQL source {}: the query failed: {} (query: {})", where, e.what(), sql));
}

std::unique_ptr<Cursor> run(Backend& backend, const Params& p, const std::string& sql) {
  try {
    return backend.query(sql);
  } catch (const DatabaseError& e) {
    rethrow(e, p, sql);
  }
}

struct Single {
  Kind kind = Kind::null;
  std::int64_t value = 0;
};

// The first column of the first row of `sql`.
Single single(Backend& backend, const Params& p, const std::string& sql) {
  auto cursor = run(backend, p, sql);
  Single out;
  if (cursor->next()) {
    out.kind = cursor->kind(0);
    if (out.kind == Kind::integer) out.value = cursor->integer(0);
  }
  return out;
}

std::uint64_t count(Backend& backend, const Params& p, std::string_view condition = {}) {
  return static_cast<std::uint64_t>(
      single(backend, p,
             fmt::format("SELECT count(*) FROM {}{}", from_clause(p), where_clause(p, condition)))
          .value);
}

Snapshot read_snapshot(Backend& backend, const Params& p) {
  Snapshot s;
  s.taken = true;
  // count(*) alone: SQLite counts a table without reading its rows only then.
  s.rows = count(backend, p);
  if (s.rows == 0) return s;
  if (const std::uint64_t nulls = count(backend, p, p.key + " IS NULL"); nulls > 0) {
    throw QueryError(fmt::format(
        "SQL source {}: the key '{}' is NULL in {} row(s), which no key range holds: filter them "
        "out with Params::where or choose another key",
        backend.where(), p.key, nulls));
  }
  // ORDER BY ... LIMIT 1 rather than min()/max(): both databases then read one end of the index.
  auto end_key = [&](const char* order) {
    const std::string sql =
        fmt::format("SELECT {0} FROM {1}{2} ORDER BY {0} {3} LIMIT 1", p.key, from_clause(p),
                    where_clause(p, p.key + " IS NOT NULL"), order);
    const Single key = single(backend, p, sql);
    if (key.kind != Kind::integer) {
      throw QueryError(fmt::format(
          "SQL source {}: the key '{}' holds {}, but Split::key_range needs an integer key: "
          "choose an integer key or set Params::split to Split::offset",
          backend.where(), p.key, describe(key.kind)));
    }
    return key.value;
  };
  s.min_key = end_key("ASC");
  s.max_key = end_key("DESC");
  return s;
}

}  // namespace
}  // namespace detail

KeyRange key_range(const Snapshot& snapshot, std::size_t offset, std::size_t limit) {
  if (!snapshot.taken || offset > snapshot.rows || limit > snapshot.rows - offset) {
    throw QueryError(fmt::format("slice [{}, {}) is outside the snapshot of {} rows", offset,
                                 offset + limit, snapshot.rows));
  }
  // 128-bit arithmetic: span and rows may each approach 2^64. For 0 < x < rows, key(x) <= max_key,
  // so the result always fits 64 bits.
  const __uint128_t span = static_cast<__uint128_t>(static_cast<std::uint64_t>(snapshot.max_key) -
                                                    static_cast<std::uint64_t>(snapshot.min_key)) +
                           1;
  auto key_at = [&](std::size_t x) {
    return static_cast<std::int64_t>(
        static_cast<__int128_t>(snapshot.min_key) +
        static_cast<__int128_t>(static_cast<__uint128_t>(x) * span / snapshot.rows));
  };
  KeyRange range;
  if (offset > 0) range.from = key_at(offset);
  if (offset + limit < snapshot.rows) range.to = key_at(offset + limit);
  return range;
}

std::string slice_query(const Params& params, std::size_t offset, std::size_t limit) {
  detail::check(params);
  const std::string columns = params.columns.empty()
                                  ? std::string("*")
                                  : fmt::format("{}", fmt::join(params.columns, ", "));
  const std::string from = detail::from_clause(params);
  if (params.split == Split::offset) {
    return fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT {} OFFSET {}", columns, from,
                       detail::where_clause(params), params.key, limit, offset);
  }
  const KeyRange range = key_range(params.snapshot, offset, limit);
  std::vector<std::string> bounds;
  if (range.from) bounds.push_back(fmt::format("{} >= {}", params.key, *range.from));
  if (range.to) bounds.push_back(fmt::format("{} < {}", params.key, *range.to));
  return fmt::format("SELECT {} FROM {}{} ORDER BY {}", columns, from,
                     detail::where_clause(params, fmt::format("{}", fmt::join(bounds, " AND "))),
                     params.key);
}

Snapshot take_snapshot(const Params& params) {
  detail::check(params);
  auto backend = detail::connect(params.url, /*read_only=*/true);
  return detail::read_snapshot(*backend, params);
}

std::size_t count_rows(const Params& params) {
  detail::check(params);
  if (params.snapshot.taken) return static_cast<std::size_t>(params.snapshot.rows);
  auto backend = detail::connect(params.url, /*read_only=*/true);
  return static_cast<std::size_t>(detail::count(*backend, params));
}

std::unique_ptr<Cursor> open_slice(const Params& params, std::size_t offset, std::size_t limit) {
  detail::check(params);
  auto backend = detail::connect(params.url, /*read_only=*/true);
  std::string sql;
  if (params.split == Split::key_range && !params.snapshot.taken) {
    // Parameters that did not go through Source::prepare: read the figures here.
    Params with_snapshot = params;
    with_snapshot.snapshot = detail::read_snapshot(*backend, params);
    sql = slice_query(with_snapshot, offset, limit);
  } else {
    sql = slice_query(params, offset, limit);
  }
  return detail::run(*backend, params, sql);
}

// --- Connection --------------------------------------------------------------------------------

Connection::Connection(const std::string& url, Access access)
    : backend_(detail::connect(url, access == Access::read_only)) {}
Connection::~Connection() = default;
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;

Dialect Connection::dialect() const {
  return backend_->dialect();
}
std::string Connection::where() const {
  return backend_->where();
}

void Connection::execute(std::string_view sql) {
  try {
    backend_->execute(sql);
  } catch (const detail::DatabaseError& e) {
    throw QueryError(fmt::format("SQL {}: {} (statement: {})", backend_->where(), e.what(),
                                 detail::shortened(sql, 200)));
  }
}

std::unique_ptr<Cursor> Connection::query(std::string_view sql) {
  try {
    return backend_->query(sql);
  } catch (const detail::DatabaseError& e) {
    throw QueryError(fmt::format("SQL {}: {} (query: {})", backend_->where(), e.what(),
                                 detail::shortened(sql, 200)));
  }
}

}  // namespace pymar::sql
