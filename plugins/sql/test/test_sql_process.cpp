// The squaredsum_sql example as users run it: a pool of worker processes, each connecting to the
// database on its own, and a producer that only hands out slices.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <pymar/sql.hpp>

#include "databases.hpp"
#include "support/process.hpp"

using namespace pymar::test;
using pymar::sql::Connection;

namespace {

// The sum of i * i for i in [0, n), in closed form.
std::string squared_sum(std::int64_t n) {
  const __int128_t m = n;
  return fmt::format("{}", m * (m - 1) * (2 * m - 1) / 6);
}

struct Run {
  std::optional<int> status;
  std::string out;
  std::string err;
};

// Runs squaredsum_sql with a pool of `workers` processes started first, and waits for it.
Run run_with_pool(const std::string& url, unsigned workers) {
  const unsigned port = free_port();
  const std::string queue = fmt::format("127.0.0.1:{}", port);
  const std::string task = binary("examples/squaredsum_sql");
  Process pool({task, "--worker", "-q", queue, "-w", std::to_string(workers)});
  Process producer({task, "--produce", "-q", queue, "--grace", "60", "--", url});
  Run run;
  run.status = producer.wait();
  run.out = producer.out();
  run.err = producer.err();
  CHECK(pool.running());
  return run;
}

void check_answer(const Run& run, std::int64_t rows) {
  INFO("producer stderr:\n" << run.err);
  REQUIRE(run.status.has_value());
  CHECK(*run.status == 0);
  CHECK(line_after(run.out, "Answer: ") == squared_sum(rows));
  // The workers did the work: the producer never fell back to computing locally.
  CHECK(run.err.find("locally") == std::string::npos);
}

// A SQLite file with numbers(i) for i in [0, rows), in a folder removed with it.
struct NumbersFile {
  pymar::sql::test::TempDir dir;
  std::string url = "sqlite:" + (dir.path / "numbers.db").string();

  explicit NumbersFile(std::int64_t rows, const std::string& type = "INTEGER PRIMARY KEY") {
    Connection db(url);
    db.execute(
        fmt::format("CREATE TABLE numbers (i {});"
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) "
                    "INSERT INTO numbers SELECT i FROM n",
                    type, rows - 1));
  }
};

}  // namespace

TEST_SUITE("sql process") {
  TEST_CASE("squaredsum_sql answers right over SQLite with a pool of 3 worker processes" *
            doctest::timeout(120)) {
    constexpr std::int64_t rows = 10'007;
    NumbersFile numbers(rows);
    check_answer(run_with_pool(numbers.url, 3), rows);
  }

  TEST_CASE("a value that does not convert fails the job with the worker's message" *
            doctest::timeout(120)) {
    NumbersFile numbers(100, "");  // an untyped column: SQLite keeps what it is given
    Connection(numbers.url).execute("INSERT INTO numbers VALUES (50.5)");
    const Run run = run_with_pool(numbers.url, 2);
    INFO("producer stderr:\n" << run.err);
    REQUIRE(run.status.has_value());
    CHECK(*run.status == 1);
    CHECK(run.err.find("pymar::sql::ConversionError") != std::string::npos);
    CHECK(run.err.find("column 'i' of row") != std::string::npos);
    CHECK(run.err.find("holds the real number 50.5, which does not convert to std::int64_t") !=
          std::string::npos);
    CHECK(run.out.find("Answer") == std::string::npos);
  }

  TEST_CASE("a missing table stops the producer with the table's name" * doctest::timeout(120)) {
    NumbersFile numbers(10);
    Process producer({binary("examples/squaredsum_sql"), "--local", "--", numbers.url, "nowhere"});
    const auto status = producer.wait();
    INFO("producer stderr:\n" << producer.err());
    REQUIRE(status.has_value());
    CHECK(*status == 1);
    CHECK(producer.err().find("table 'nowhere' does not exist") != std::string::npos);
  }
}

TEST_SUITE("sql postgresql") {
  TEST_CASE("squaredsum_sql answers right over PostgreSQL with a pool of 3 worker processes" *
            doctest::timeout(120)) {
    const std::string url = pymar::sql::test::postgresql_url();
    if (url.empty()) {
      MESSAGE("skipped: PYMAR_TEST_POSTGRESQL_URL is not set (see tools/postgres-test-server.sh)");
      return;
    }
    // The table tools/postgres-test-server.sh loads: numbers(i) for i in [0, n).
    Connection db(url);
    const auto figures = db.rows<std::tuple<std::int64_t, std::int64_t, std::int64_t>>(
        "SELECT count(*), min(i), max(i) FROM numbers");
    REQUIRE(figures.size() == 1);
    const auto [rows, min, max] = figures[0];
    REQUIRE(rows > 0);
    REQUIRE(min == 0);
    REQUIRE(max == rows - 1);
    check_answer(run_with_pool(url, 3), rows);
  }
}
