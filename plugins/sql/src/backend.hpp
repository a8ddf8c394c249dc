// What each database backend of the SQL plugin provides. Nothing here is public.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "pymar/sql.hpp"

namespace pymar::sql::detail {

/// Why a query could not be prepared: callers that know the configuration turn the first two
/// into messages naming the table or columns.
enum class Failure { missing_table, missing_column, other };

/// Thrown by a backend when a query cannot be prepared; always translated before it reaches a
/// user (see rethrow_query_failure).
class DatabaseError : public QueryError {
 public:
  DatabaseError(Failure failure, const std::string& message)
      : QueryError(message), failure_(failure) {}
  Failure failure() const noexcept { return failure_; }

 private:
  Failure failure_;
};

class Backend : public std::enable_shared_from_this<Backend> {
 public:
  explicit Backend(std::string where) : where_(std::move(where)) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual Dialect dialect() const = 0;
  /// Runs statements that return no rows. Throws DatabaseError.
  virtual void execute(std::string_view sql) = 0;
  /// Starts a query; the cursor holds a reference to this backend. Throws DatabaseError.
  virtual std::unique_ptr<Cursor> query(std::string_view sql) = 0;

  /// The connection string with any password hidden.
  const std::string& where() const noexcept { return where_; }

 private:
  std::string where_;
};

/// Connects to a database file; throws ConnectionError.
std::shared_ptr<Backend> connect_sqlite(const std::string& path, bool read_only,
                                        const std::string& where);
/// Connects to a PostgreSQL server; throws ConnectionError.
std::shared_ptr<Backend> connect_postgresql(const std::string& url, bool read_only,
                                            const std::string& where);

/// Connects to the database of a connection string; throws ConnectionError.
std::shared_ptr<Backend> connect(const std::string& url, bool read_only);

/// `url` with any password replaced by "***".
std::string redact(std::string_view url);

}  // namespace pymar::sql::detail
