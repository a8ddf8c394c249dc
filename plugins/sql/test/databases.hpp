// The databases the SQL plugin's tests run against: a fresh SQLite file always (when the build
// has SQLite), and the PostgreSQL server at PYMAR_TEST_POSTGRESQL_URL when that is set (see
// tools/postgres-test-server.sh and plugins/sql/test/postgresql-tests.sh).
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pymar/sql.hpp>

namespace pymar::sql::test {

inline bool has_backend(const std::string& name) {
  const auto all = backends();
  return std::find(all.begin(), all.end(), name) != all.end();
}

inline std::string postgresql_url() {
  const char* url = std::getenv("PYMAR_TEST_POSTGRESQL_URL");
  return url ? url : "";
}

// A folder of its own, removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "pymar-sql-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// One database to run a test body against.
struct Database {
  std::string name;  // "sqlite" or "postgresql"
  std::string url;
  Connection connection;

  // Creates (replacing) a table from its column definitions.
  void create(const std::string& table, const std::string& columns) {
    connection.execute(
        fmt::format("DROP TABLE IF EXISTS {0}; CREATE TABLE {0} ({1})", table, columns));
  }

  // Inserts rows, each given as its SQL values ("1, 'a', NULL"), in batches.
  void insert(const std::string& table, const std::vector<std::string>& rows) {
    for (std::size_t start = 0; start < rows.size(); start += 250) {
      const std::size_t end = std::min(rows.size(), start + 250);
      std::vector<std::string> values;
      for (std::size_t i = start; i < end; ++i) values.push_back("(" + rows[i] + ")");
      connection.execute(fmt::format("INSERT INTO {} VALUES {}", table, fmt::join(values, ", ")));
    }
  }

  // Creates `table`(id, v) with the given keys, and v = key % 1000 * 10.
  void create_keys(const std::string& table, const std::vector<std::int64_t>& keys) {
    create(table, "id BIGINT PRIMARY KEY, v BIGINT");
    std::vector<std::string> rows;
    for (std::int64_t key : keys) rows.push_back(fmt::format("{}, {}", key, key % 1000 * 10));
    insert(table, rows);
  }
};

// Runs `body` against each database the tests can reach.
inline void for_each_database(const std::function<void(Database&)>& body) {
  if (has_backend("sqlite")) {
    TempDir dir;
    const std::string url = "sqlite:" + (dir.path / "test.db").string();
    Database db{"sqlite", url, Connection(url)};
    CAPTURE(db.name);
    body(db);
  }
  if (has_backend("postgresql") && !postgresql_url().empty()) {
    Database db{"postgresql", postgresql_url(), Connection(postgresql_url())};
    CAPTURE(db.name);
    body(db);
  }
}

}  // namespace pymar::sql::test
