// The PostgreSQL backend, on libpq. Rows are read through a server-side cursor in batches, so a
// slice of millions of rows never sits in the worker's memory at once.
#include <libpq-fe.h>

#include <charconv>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "backend.hpp"

namespace pymar::sql::detail {
namespace {

constexpr int kFetchRows = 10'000;
constexpr const char* kCursorName = "pymar_rows";

// Type OIDs of the built-in types (from pg_type.h, which only the server's headers ship).
enum Oid : unsigned {
  kBool = 16,
  kBytea = 17,
  kName = 19,
  kInt8 = 20,
  kInt2 = 21,
  kInt4 = 23,
  kText = 25,
  kOid = 26,
  kFloat4 = 700,
  kFloat8 = 701,
  kBpchar = 1042,
  kVarchar = 1043,
  kNumeric = 1700,
};

Kind kind_of_type(unsigned oid) {
  switch (oid) {
    case kBool:
      return Kind::boolean;
    case kInt2:
    case kInt4:
    case kInt8:
    case kOid:
      return Kind::integer;
    case kFloat4:
    case kFloat8:
      return Kind::real;
    case kNumeric:
      return Kind::numeric;
    case kText:
    case kVarchar:
    case kBpchar:
    case kName:
      return Kind::text;
    case kBytea:
      return Kind::blob;
    default:
      return Kind::other;
  }
}

Failure classify(const PGresult* result) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string_view code = state ? state : "";
  if (code == "42P01") return Failure::missing_table;   // undefined_table
  if (code == "42703") return Failure::missing_column;  // undefined_column
  return Failure::other;
}

// libpq's messages end with a newline; ours do not.
std::string trimmed(const char* message) {
  std::string out = message ? message : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

class PostgresBackend;

class PostgresCursor final : public Cursor {
 public:
  PostgresCursor(std::shared_ptr<PostgresBackend> backend, Result first);
  ~PostgresCursor() override;
  PostgresCursor(const PostgresCursor&) = delete;
  PostgresCursor& operator=(const PostgresCursor&) = delete;

  bool next() override;
  std::size_t column_count() const override { return kinds_.size(); }
  std::string column_name(std::size_t column) const override {
    return PQfname(batch_.get(), static_cast<int>(column));
  }
  Kind kind(std::size_t column) const override {
    if (PQgetisnull(batch_.get(), row_, static_cast<int>(column))) return Kind::null;
    return kinds_[column];
  }
  std::int64_t integer(std::size_t column) const override {
    const std::string_view value = text(column);
    if (kinds_[column] == Kind::boolean) return value == "t" ? 1 : 0;
    std::int64_t out = 0;
    std::from_chars(value.data(), value.data() + value.size(), out);
    return out;
  }
  double real(std::size_t column) const override {
    // strtod, not from_chars: it reads "Infinity" and "NaN" as PostgreSQL writes them.
    return std::strtod(PQgetvalue(batch_.get(), row_, static_cast<int>(column)), nullptr);
  }
  std::string_view text(std::size_t column) const override {
    const int c = static_cast<int>(column);
    return {PQgetvalue(batch_.get(), row_, c),
            static_cast<std::size_t>(PQgetlength(batch_.get(), row_, c))};
  }
  std::string where() const override;

 private:
  std::shared_ptr<PostgresBackend> backend_;
  Result batch_;
  std::vector<Kind> kinds_;
  int row_ = -1;  // in the current batch
  bool last_batch_ = false;
  bool open_ = true;  // the transaction holding the cursor
};

class PostgresBackend final : public Backend {
 public:
  PostgresBackend(PGconn* connection, bool read_only, const std::string& where)
      : Backend(where), connection_(connection), read_only_(read_only) {}
  ~PostgresBackend() override { PQfinish(connection_); }

  Dialect dialect() const override { return Dialect::postgresql; }

  void execute(std::string_view sql) override {
    Result result(PQexec(connection_, std::string(sql).c_str()), &PQclear);
    const auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw DatabaseError(classify(result.get()), trimmed(PQerrorMessage(connection_)));
    }
  }

  /// One statement only, through the extended protocol: PostgreSQL refuses a second one, so a
  /// source's query cannot end its read-only transaction or run anything else.
  void execute_one(const std::string& sql) {
    Result result(PQexecParams(connection_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0),
                  &PQclear);
    const auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw DatabaseError(classify(result.get()), trimmed(PQerrorMessage(connection_)));
    }
  }

  std::unique_ptr<Cursor> query(std::string_view sql) override {
    if (cursor_open_) {
      throw DatabaseError(Failure::other,
                          "a PostgreSQL connection reads one query at a time: finish the "
                          "previous cursor first");
    }
    execute(read_only_ ? "BEGIN READ ONLY" : "BEGIN");
    try {
      execute_one(fmt::format("DECLARE {} NO SCROLL CURSOR FOR {}", kCursorName, sql));
      Result first = fetch();
      cursor_open_ = true;
      return std::make_unique<PostgresCursor>(
          std::static_pointer_cast<PostgresBackend>(shared_from_this()), std::move(first));
    } catch (...) {
      end_transaction(false);
      throw;
    }
  }

  Result fetch() {
    Result result(PQexec(connection_,
                         fmt::format("FETCH FORWARD {} FROM {}", kFetchRows, kCursorName).c_str()),
                  &PQclear);
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
      throw DatabaseError(classify(result.get()), trimmed(PQerrorMessage(connection_)));
    }
    return result;
  }

  // Ends the cursor's transaction; never throws (it runs from destructors too).
  void end_transaction(bool commit) noexcept {
    cursor_open_ = false;
    PQclear(PQexec(connection_, commit ? "COMMIT" : "ROLLBACK"));
  }

  PGconn* connection() const noexcept { return connection_; }

 private:
  PGconn* connection_;
  bool read_only_;
  bool cursor_open_ = false;
};

PostgresCursor::PostgresCursor(std::shared_ptr<PostgresBackend> backend, Result first)
    : backend_(std::move(backend)), batch_(std::move(first)) {
  const int columns = PQnfields(batch_.get());
  for (int c = 0; c < columns; ++c) kinds_.push_back(kind_of_type(PQftype(batch_.get(), c)));
  last_batch_ = PQntuples(batch_.get()) < kFetchRows;
}

PostgresCursor::~PostgresCursor() {
  if (open_) backend_->end_transaction(false);
}

bool PostgresCursor::next() {
  if (!open_) return false;
  if (row_ + 1 < PQntuples(batch_.get())) {
    ++row_;
    return true;
  }
  if (!last_batch_) {
    try {
      Result batch = backend_->fetch();
      // Keep the previous batch (and its column names) until a new one has arrived.
      batch_ = std::move(batch);
    } catch (const DatabaseError& e) {
      throw QueryError(
          fmt::format("SQL source {}: reading rows failed: {}", backend_->where(), e.what()));
    }
    last_batch_ = PQntuples(batch_.get()) < kFetchRows;
    row_ = 0;
    if (PQntuples(batch_.get()) > 0) return true;
  }
  open_ = false;
  backend_->end_transaction(true);
  return false;
}

std::string PostgresCursor::where() const {
  return backend_->where();
}

}  // namespace

std::shared_ptr<Backend> connect_postgresql(const std::string& url, bool read_only,
                                            const std::string& where) {
  // A default connect timeout, so that an unreachable host fails in bounded time. Keywords
  // before "dbname" (which holds the whole URL) are defaults that the URL's own settings
  // override.
  const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {"10", "pymar", url.c_str(), nullptr};
  PGconn* connection = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (connection == nullptr) {
    throw ConnectionError(
        fmt::format("SQL source {}: out of memory connecting to PostgreSQL", where));
  }
  if (PQstatus(connection) != CONNECTION_OK) {
    const std::string message = trimmed(PQerrorMessage(connection));
    PQfinish(connection);
    throw ConnectionError(fmt::format(
        "SQL source {}: cannot connect to PostgreSQL: {} (each worker connects from its own "
        "machine: 'localhost' there is the worker's machine)",
        where, message));
  }
  // Messages (notices) would go to stderr by default; the slices' errors carry what matters.
  PQsetNoticeProcessor(
      connection, [](void*, const char*) {}, nullptr);
  return std::make_shared<PostgresBackend>(connection, read_only, where);
}

}  // namespace pymar::sql::detail
