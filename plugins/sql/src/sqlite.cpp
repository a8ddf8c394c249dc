// The SQLite backend: a database file on the worker's own machine.
#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "backend.hpp"

namespace pymar::sql::detail {
namespace {

Failure classify(std::string_view message) {
  if (message.starts_with("no such table")) return Failure::missing_table;
  if (message.starts_with("no such column")) return Failure::missing_column;
  return Failure::other;
}

class SqliteBackend;

class SqliteCursor final : public Cursor {
 public:
  SqliteCursor(std::shared_ptr<SqliteBackend> backend, sqlite3_stmt* statement)
      : backend_(std::move(backend)), statement_(statement) {}
  ~SqliteCursor() override { sqlite3_finalize(statement_); }
  SqliteCursor(const SqliteCursor&) = delete;
  SqliteCursor& operator=(const SqliteCursor&) = delete;

  bool next() override;
  std::size_t column_count() const override {
    return static_cast<std::size_t>(sqlite3_column_count(statement_));
  }
  std::string column_name(std::size_t column) const override {
    const char* name = sqlite3_column_name(statement_, index(column));
    return name ? name : "?";
  }
  Kind kind(std::size_t column) const override {
    switch (sqlite3_column_type(statement_, index(column))) {
      case SQLITE_INTEGER:
        return Kind::integer;
      case SQLITE_FLOAT:
        return Kind::real;
      case SQLITE_TEXT:
        return Kind::text;
      case SQLITE_BLOB:
        return Kind::blob;
      default:
        return Kind::null;
    }
  }
  std::int64_t integer(std::size_t column) const override {
    return sqlite3_column_int64(statement_, index(column));
  }
  double real(std::size_t column) const override {
    return sqlite3_column_double(statement_, index(column));
  }
  std::string_view text(std::size_t column) const override {
    const auto* data = sqlite3_column_text(statement_, index(column));
    const int size = sqlite3_column_bytes(statement_, index(column));
    return data ? std::string_view(reinterpret_cast<const char*>(data),
                                   static_cast<std::size_t>(size))
                : std::string_view();
  }
  std::string where() const override;

 private:
  static int index(std::size_t column) { return static_cast<int>(column); }

  std::shared_ptr<SqliteBackend> backend_;  // keeps the database open while rows are read
  sqlite3_stmt* statement_;
  bool done_ = false;
};

class SqliteBackend final : public Backend {
 public:
  SqliteBackend(sqlite3* db, const std::string& where) : Backend(where), db_(db) {}
  ~SqliteBackend() override { sqlite3_close_v2(db_); }

  Dialect dialect() const override { return Dialect::sqlite; }

  void execute(std::string_view sql) override {
    char* error = nullptr;
    const std::string text(sql);
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string message = error ? error : sqlite3_errmsg(db_);
      sqlite3_free(error);
      throw DatabaseError(classify(message), message);
    }
  }

  std::unique_ptr<Cursor> query(std::string_view sql) override {
    sqlite3_stmt* statement = nullptr;
    const char* tail = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &statement, &tail) !=
        SQLITE_OK) {
      const std::string message = sqlite3_errmsg(db_);
      sqlite3_finalize(statement);
      throw DatabaseError(classify(message), message);
    }
    if (statement == nullptr) throw DatabaseError(Failure::other, "the query is empty");
    // SQLite compiles the first statement and ignores the rest: a query that closes the
    // parentheses it is read in would lose the slice's key range and read every row.
    const std::string_view rest(tail, static_cast<std::size_t>(sql.data() + sql.size() - tail));
    if (rest.find_first_not_of(" \t\r\n") != std::string_view::npos) {
      sqlite3_finalize(statement);
      throw DatabaseError(Failure::other,
                          "the query holds more than one statement: a source reads with one");
    }
    return std::make_unique<SqliteCursor>(
        std::static_pointer_cast<SqliteBackend>(shared_from_this()), statement);
  }

  sqlite3* db() const noexcept { return db_; }

 private:
  sqlite3* db_;
};

bool SqliteCursor::next() {
  if (done_) return false;
  const int status = sqlite3_step(statement_);
  if (status == SQLITE_ROW) return true;
  done_ = true;
  if (status == SQLITE_DONE) return false;
  throw QueryError(fmt::format("SQL source {}: reading rows failed: {}", backend_->where(),
                               sqlite3_errmsg(backend_->db())));
}

std::string SqliteCursor::where() const {
  return backend_->where();
}

}  // namespace

std::shared_ptr<Backend> connect_sqlite(const std::string& path, bool read_only,
                                        const std::string& where) {
  sqlite3* db = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const int status = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (status != SQLITE_OK) {
    const std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(status);
    sqlite3_close_v2(db);
    throw ConnectionError(fmt::format(
        "SQL source {}: cannot open the SQLite database '{}': {} (the file must exist on the "
        "machine of each worker that reads it)",
        where, path, message));
  }
  // A writer holding the lock (e.g. the table still being loaded) delays readers, not fails them.
  sqlite3_busy_timeout(db, 10'000);
  auto backend = std::make_shared<SqliteBackend>(db, where);
  // SQLite opens lazily: read the schema now, so that a file that is not a database fails here.
  try {
    backend->execute("SELECT count(*) FROM sqlite_schema");
  } catch (const DatabaseError& e) {
    throw ConnectionError(fmt::format("SQL source {}: cannot read the SQLite database '{}': {}",
                                      where, path, e.what()));
  }
  return backend;
}

}  // namespace pymar::sql::detail
