// The SQL plugin against real databases: rows convert to typed values, slices cover every row
// exactly once, and each kind of mistake fails with a message that says which.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <pymar/pymar.hpp>
#include <pymar/sql.hpp>

#include "databases.hpp"

using namespace pymar::sql;
using pymar::sql::test::Database;
using pymar::sql::test::for_each_database;

namespace {

// The parts Pymar cuts `length` elements into: min(parts, length) parts whose sizes differ by
// at most one, the larger first.
std::vector<std::pair<std::size_t, std::size_t>> cut(std::size_t length, std::size_t parts) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  const std::size_t count = std::min(parts, length);
  std::size_t offset = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t limit = length / count + (i < length % count ? 1 : 0);
    out.emplace_back(offset, limit);
    offset += limit;
  }
  return out;
}

// Reads one slice as a worker does: the source built from its params, offset and limit set.
template <class Row>
std::vector<Row> read_slice(const Params& params, std::size_t offset, std::size_t limit) {
  Source<Row> source(params);
  source.offset = offset;
  source.limit = limit;
  std::vector<Row> out;
  for (const Row& row : source.items()) out.push_back(row);
  return out;
}

// Reads every slice of a job of `parts` slices, in slice order, as the producer would see them.
template <class Row>
std::vector<std::vector<Row>> read_job(Params params, std::size_t parts) {
  if (params.split == Split::key_range) params.snapshot = take_snapshot(params);
  std::vector<std::vector<Row>> slices;
  for (auto [offset, limit] : cut(Source<Row>::full_length(params), parts)) {
    slices.push_back(read_slice<Row>(params, offset, limit));
  }
  return slices;
}

template <class Row>
std::vector<Row> read_all(const Params& params) {
  std::vector<Row> all;
  for (auto& slice : read_job<Row>(params, 1)) all.insert(all.end(), slice.begin(), slice.end());
  return all;
}

Params keys_params(const Database& db, const std::string& table) {
  Params p;
  p.url = db.url;
  p.table = table;
  p.columns = {"id"};
  p.key = "id";
  return p;
}

struct Item {
  std::int64_t id = 0;
  std::optional<std::int64_t> n;
  std::optional<double> x;
  std::optional<std::string> s;
  std::optional<bool> b;
};

void create_items(Database& db) {
  db.create("pymar_t_items",
            "id BIGINT PRIMARY KEY, n BIGINT, x DOUBLE PRECISION, s TEXT, b BOOLEAN");
  db.insert("pymar_t_items", {"1, 42, 2.5, 'forty-two', TRUE", "2, NULL, NULL, NULL, NULL",
                              "3, -7, 1e300, '', FALSE"});
}

Params items_params(const Database& db, std::vector<std::string> columns) {
  Params p;
  p.url = db.url;
  p.table = "pymar_t_items";
  p.columns = std::move(columns);
  p.key = "id";
  return p;
}

// A registered source and producer, to run a real `map` (locally: no workers in a unit test).
struct Values : Source<std::int64_t> {
  using Source::Source;
};
REGISTER_DATASOURCE(Values);

struct SumOfValues : pymar::Producer<SumOfValues> {
  static constexpr std::size_t WORKERS_NUMBER = 5;
  static auto map_fn(auto&& values) { return std::views::all(values); }
  static std::int64_t reduce_fn(auto&& values) { return pymar::sum<std::int64_t>(values); }
};
REGISTER_PRODUCER(SumOfValues);

template <class F>
double seconds_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_SUITE("sql") {
  TEST_CASE("rows convert to typed values, NULL to an empty optional") {
    for_each_database([](Database& db) {
      create_items(db);
      SUBCASE("as a struct") {
        const auto rows = read_all<Item>(items_params(db, {"id", "n", "x", "s", "b"}));
        REQUIRE(rows.size() == 3);
        CHECK(rows[0].id == 1);
        CHECK(rows[0].n == 42);
        CHECK(rows[0].x == 2.5);
        CHECK(rows[0].s == "forty-two");
        CHECK(rows[0].b == true);
        CHECK(rows[1].id == 2);
        CHECK_FALSE(rows[1].n.has_value());
        CHECK_FALSE(rows[1].x.has_value());
        CHECK_FALSE(rows[1].s.has_value());
        CHECK_FALSE(rows[1].b.has_value());
        CHECK(rows[2].n == -7);
        CHECK(rows[2].x == 1e300);
        CHECK(rows[2].s == "");
        CHECK(rows[2].b == false);
      }
      SUBCASE("as a tuple") {
        using Row = std::tuple<std::int32_t, std::optional<std::string>, float>;
        Params p = items_params(db, {"id", "s", "n"});
        p.where = "n IS NOT NULL";
        const auto rows = read_all<Row>(p);
        REQUIRE(rows.size() == 2);
        CHECK(rows[0] == Row{1, "forty-two", 42.0f});
        CHECK(rows[1] == Row{3, "", -7.0f});
      }
      SUBCASE("one column as a plain value") {
        CHECK(read_all<std::int64_t>(items_params(db, {"id"})) ==
              std::vector<std::int64_t>{1, 2, 3});
        CHECK(read_all<double>(items_params(db, {"id"})) == std::vector<double>{1, 2, 3});
      }
      SUBCASE("every column when none are listed") {
        const auto rows = read_all<Item>(items_params(db, {}));
        REQUIRE(rows.size() == 3);
        CHECK(rows[2].x == 1e300);
      }
    });
  }

  TEST_CASE("a value that does not convert names the column, the value and the type") {
    for_each_database([](Database& db) {
      create_items(db);
      CHECK_THROWS_WITH_AS(read_all<std::int64_t>(items_params(db, {"s"})),
                           doctest::Contains("column 's' of row 1 of this slice holds the text "
                                             "'forty-two', which does not convert to std::int64_t"),
                           ConversionError);
      CHECK_THROWS_WITH_AS(read_all<std::string>(items_params(db, {"n"})),
                           doctest::Contains("holds the integer 42, which does not convert to "
                                             "std::string"),
                           ConversionError);
      CHECK_THROWS_WITH_AS(read_all<std::int64_t>(items_params(db, {"x"})),
                           doctest::Contains("holds the real number 2.5"), ConversionError);
    });
  }

  TEST_CASE("NULL into a non-optional field says to read it as std::optional") {
    for_each_database([](Database& db) {
      create_items(db);
      CHECK_THROWS_WITH_AS(
          read_all<std::int64_t>(items_params(db, {"n"})),
          doctest::Contains("column 'n' of row 2 of this slice is NULL, which does "
                            "not convert to std::int64_t: read it as "
                            "std::optional<std::int64_t>"),
          ConversionError);
    });
  }

  TEST_CASE("an integer out of the range of its field is an error, not a wrap-around") {
    for_each_database([](Database& db) {
      db.create("pymar_t_small", "id BIGINT PRIMARY KEY, n BIGINT");
      db.insert("pymar_t_small", {"1, 127", "2, 128"});
      Params p = items_params(db, {"n"});
      p.table = "pymar_t_small";
      CHECK_THROWS_WITH_AS(read_all<std::int8_t>(p),
                           doctest::Contains("holds the integer 128, which is out of the range of "
                                             "std::int8_t"),
                           ConversionError);
      CHECK(read_all<std::int16_t>(p) == std::vector<std::int16_t>{127, 128});
    });
  }

  TEST_CASE("exact decimals read as whole numbers, doubles or text (PostgreSQL numeric)") {
    for_each_database([](Database& db) {
      if (db.name != "postgresql") return;
      db.create("pymar_t_decimal", "id BIGINT PRIMARY KEY, d NUMERIC");
      db.insert("pymar_t_decimal", {"1, 42", "2, 42.5", "3, 12345678901234567890"});
      Params p = items_params(db, {"d"});
      p.table = "pymar_t_decimal";
      CHECK(read_all<double>(p) == std::vector<double>{42, 42.5, 12345678901234567890.0});
      CHECK(read_all<std::string>(p) ==
            std::vector<std::string>{"42", "42.5", "12345678901234567890"});
      p.where = "id = 1";
      CHECK(read_all<std::int64_t>(p) == std::vector<std::int64_t>{42});
      p.where = "id = 2";
      CHECK_THROWS_WITH_AS(read_all<std::int64_t>(p),
                           doctest::Contains("holds the decimal 42.5, which does not convert to "
                                             "std::int64_t"),
                           ConversionError);
      p.where = "id = 3";
      CHECK(read_all<std::uint64_t>(p) == std::vector<std::uint64_t>{12345678901234567890u});
      CHECK_THROWS_AS(read_all<std::int64_t>(p), ConversionError);
    });
  }

  TEST_CASE("a row type whose fields do not match the columns is named in the error") {
    for_each_database([](Database& db) {
      create_items(db);
      using Pair = std::pair<std::int64_t, std::int64_t>;
      CHECK_THROWS_WITH_AS(read_all<Pair>(items_params(db, {"id"})),
                           doctest::Contains("the query returns 1 column(s) (id) but the row type "
                                             "(std::int64_t, std::int64_t) has 2 field(s)"),
                           QueryError);
    });
  }

  TEST_CASE("a missing table or column is named in the error") {
    for_each_database([](Database& db) {
      create_items(db);
      Params missing_table = items_params(db, {"id"});
      missing_table.table = "pymar_t_nowhere";
      CHECK_THROWS_WITH_AS(take_snapshot(missing_table),
                           doctest::Contains("table 'pymar_t_nowhere' does not exist"), QueryError);
      CHECK_THROWS_WITH_AS(count_rows(missing_table),
                           doctest::Contains("table 'pymar_t_nowhere' does not exist"), QueryError);

      CHECK_THROWS_WITH_AS(read_all<Item>(items_params(db, {"id", "n", "x", "s", "bogus"})),
                           doctest::Contains("bogus"), QueryError);
      CHECK_THROWS_WITH_AS(read_all<Item>(items_params(db, {"id", "n", "x", "s", "bogus"})),
                           doctest::Contains("a column does not exist in table 'pymar_t_items'"),
                           QueryError);

      Params bad_where = items_params(db, {"id"});
      bad_where.where = "id >>> 3";
      CHECK_THROWS_WITH_AS(read_all<std::int64_t>(bad_where), doctest::Contains("the query failed"),
                           QueryError);
    });
  }

  TEST_CASE("key-range slices hold every row exactly once, in key order") {
    std::mt19937_64 random(7);
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> key_sets;
    for (std::int64_t n : {1, 2, 7, 101}) {
      std::vector<std::int64_t> dense(static_cast<std::size_t>(n));
      std::iota(dense.begin(), dense.end(), 0);
      key_sets.emplace_back("dense " + std::to_string(n), dense);
    }
    for (std::size_t n : {5u, 37u, 203u}) {
      std::set<std::int64_t> keys;
      while (keys.size() < n) keys.insert(static_cast<std::int64_t>(random() % 100'000) - 50'000);
      key_sets.emplace_back("sparse " + std::to_string(n), std::vector(keys.begin(), keys.end()));
    }
    std::vector<std::int64_t> clustered;
    for (std::int64_t i = 0; i < 40; ++i) clustered.push_back(i);
    for (std::int64_t i = 0; i < 13; ++i) clustered.push_back(1'000'000'000'000 + i);
    key_sets.emplace_back("two clusters", clustered);
    constexpr auto min = std::numeric_limits<std::int64_t>::min();
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    key_sets.emplace_back("the ends of int64",
                          std::vector<std::int64_t>{min, min + 1, -1, 0, 1, max - 1, max});

    for_each_database([&](Database& db) {
      for (const auto& [name, keys] : key_sets) {
        CAPTURE(name);
        db.create_keys("pymar_t_keys", keys);
        for (Split split : {Split::key_range, Split::offset}) {
          Params p = keys_params(db, "pymar_t_keys");
          p.split = split;
          for (std::size_t parts : {1u, 2u, 3u, 4u, 7u, 16u, 64u, 300u}) {
            CAPTURE(static_cast<int>(split));
            CAPTURE(parts);
            const auto slices = read_job<std::int64_t>(p, parts);
            std::vector<std::int64_t> seen;
            for (const auto& slice : slices) seen.insert(seen.end(), slice.begin(), slice.end());
            REQUIRE(seen == keys);  // each row once, in key order
            const bool exact_sizes = split == Split::offset || name.starts_with("dense");
            if (exact_sizes) {
              const auto expected = cut(keys.size(), parts);
              for (std::size_t i = 0; i < slices.size(); ++i) {
                CHECK(slices[i].size() == expected[i].second);
              }
            }
          }
        }
      }
    });
  }

  TEST_CASE("key ranges are adjacent, open at both ends, and within [min, max]") {
    struct Figures {
      std::uint64_t rows;
      std::int64_t min, max;
    };
    constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
    constexpr auto highest = std::numeric_limits<std::int64_t>::max();
    for (const Figures f :
         {Figures{10, 0, 9}, Figures{7, 100, 1000}, Figures{1000, 5, 5},
          Figures{3, lowest, highest}, Figures{~std::uint64_t{0}, lowest, highest},
          Figures{13, -6, 6}, Figures{100, 0, 12}, Figures{5, highest - 4, highest}}) {
      const Snapshot s{true, f.rows, f.min, f.max};
      for (std::size_t parts : {1u, 2u, 3u, 5u, 8u, 13u, 101u}) {
        CAPTURE(parts);
        CAPTURE(f.rows);
        const std::size_t count = std::min<std::size_t>(parts, f.rows);
        std::size_t offset = 0;
        std::optional<std::int64_t> previous_to;
        for (std::size_t i = 0; i < count; ++i) {
          const std::size_t limit = f.rows / count + (i < f.rows % count ? 1 : 0);
          const KeyRange r = key_range(s, offset, limit);
          offset += limit;
          if (i == 0) {
            CHECK_FALSE(r.from.has_value());
          } else {
            CHECK(r.from == previous_to);
          }
          if (i + 1 == count) {
            CHECK_FALSE(r.to.has_value());
          } else {
            REQUIRE(r.to.has_value());
            CHECK(*r.to >= f.min);
            CHECK(*r.to <= f.max);
            if (r.from) CHECK(*r.from <= *r.to);
          }
          previous_to = r.to;
        }
      }
    }
    // Dense keys: a slice is exactly its elements.
    const KeyRange r = key_range(Snapshot{true, 10, 100, 109}, 3, 4);
    CHECK(r.from == 103);
    CHECK(r.to == 107);
    CHECK_THROWS_AS(key_range(Snapshot{true, 10, 0, 9}, 8, 3), QueryError);
  }

  TEST_CASE("keys that are not whole numbers are still read exactly once (SQLite)") {
    for_each_database([](Database& db) {
      if (db.name != "sqlite") return;
      db.create("pymar_t_mixed", "k");  // untyped: SQLite keeps each value as given
      db.insert("pymar_t_mixed", {"0", "0.5", "1", "1.5", "2", "2.25", "2.5", "3", "9.75", "10"});
      Params p;
      p.url = db.url;
      p.table = "pymar_t_mixed";
      p.key = "k";
      for (std::size_t parts = 1; parts <= 12; ++parts) {
        CAPTURE(parts);
        std::vector<double> seen;
        for (const auto& slice : read_job<double>(p, parts))
          seen.insert(seen.end(), slice.begin(), slice.end());
        CHECK(seen == std::vector<double>{0, 0.5, 1, 1.5, 2, 2.25, 2.5, 3, 9.75, 10});
      }
    });
  }

  TEST_CASE("a where condition applies to the count and to every slice") {
    for_each_database([](Database& db) {
      std::vector<std::int64_t> keys(100);
      std::iota(keys.begin(), keys.end(), 0);
      db.create_keys("pymar_t_keys", keys);
      Params p = keys_params(db, "pymar_t_keys");
      p.where = "v % 3 = 0 AND id < 90";
      CHECK(count_rows(p) == 30);
      std::vector<std::int64_t> seen;
      for (const auto& slice : read_job<std::int64_t>(p, 4)) {
        seen.insert(seen.end(), slice.begin(), slice.end());
      }
      std::vector<std::int64_t> expected;
      for (std::int64_t k = 0; k < 90; k += 3) expected.push_back(k);
      CHECK(seen == expected);
    });
  }

  TEST_CASE("a query can be the source") {
    for_each_database([](Database& db) {
      db.create_keys("pymar_t_keys", {1, 2, 3, 10, 11});
      Params p;
      p.url = db.url;
      p.query = "SELECT id, v + 1 AS w FROM pymar_t_keys";
      p.columns = {"w", "id"};
      p.key = "id";
      using Row = std::tuple<std::int64_t, std::int64_t>;
      std::vector<Row> seen;
      for (const auto& slice : read_job<Row>(p, 3))
        seen.insert(seen.end(), slice.begin(), slice.end());
      CHECK(seen == std::vector<Row>{{11, 1}, {21, 2}, {31, 3}, {101, 10}, {111, 11}});
    });
  }

  TEST_CASE("a query cannot leave its parentheses, its transaction or run a second statement") {
    for_each_database([](Database& db) {
      db.create_keys("pymar_t_keys", {1, 2, 3, 10, 11});
      Params p;
      p.url = db.url;
      // Closes the parentheses the query is read in, ends the read-only transaction and drops
      // the table, then opens parentheses again for the rest of the slice's query.
      p.query =
          "SELECT id, v FROM pymar_t_keys) AS x; COMMIT; DROP TABLE pymar_t_keys; "
          "SELECT * FROM (SELECT 1 AS id, 1 AS v";
      p.columns = {"v"};
      p.key = "id";
      CHECK_THROWS_AS(read_job<std::int64_t>(p, 3), pymar::sql::QueryError);
      // The table is still there, whole.
      Params plain = keys_params(db, "pymar_t_keys");
      std::size_t rows = 0;
      for (const auto& slice : read_job<std::int64_t>(plain, 2)) rows += slice.size();
      CHECK(rows == 5);
    });
  }

  TEST_CASE("a map over a table gives the exact answer, with or without the producer's snapshot") {
    for_each_database([](Database& db) {
      std::vector<std::int64_t> keys;
      for (std::int64_t k = 0; k < 1000; k += 1 + k % 5) keys.push_back(k);
      db.create_keys("pymar_t_keys", keys);
      std::int64_t expected = 0;
      for (std::int64_t k : keys) expected += k;
      Params p = keys_params(db, "pymar_t_keys");
      CHECK(SumOfValues().map(pymar::factory<Values>(p)) == expected);
      CHECK(SumOfValues().map(pymar::factory<Values>(p)) == expected);
      p.split = Split::offset;
      CHECK(SumOfValues().map(pymar::factory<Values>(p)) == expected);
    });
  }

  TEST_CASE("an empty table is a job of no slices") {
    for_each_database([](Database& db) {
      db.create_keys("pymar_t_keys", {});
      Params p = keys_params(db, "pymar_t_keys");
      CHECK(take_snapshot(p).rows == 0);
      CHECK(SumOfValues().map(pymar::factory<Values>(p)) == 0);
    });
  }

  TEST_CASE("the key must be an integer without NULLs under Split::key_range") {
    for_each_database([](Database& db) {
      create_items(db);
      Params text_key = items_params(db, {"id"});
      text_key.key = "s";
      text_key.where = "s IS NOT NULL";
      CHECK_THROWS_WITH_AS(take_snapshot(text_key),
                           doctest::Contains("the key 's' holds text, but Split::key_range needs "
                                             "an integer key"),
                           QueryError);
      text_key.split = Split::offset;
      CHECK(read_all<std::int64_t>(text_key) ==
            std::vector<std::int64_t>{3, 1});  // '' < 'forty-two'

      Params null_key = items_params(db, {"id"});
      null_key.key = "n";
      CHECK_THROWS_WITH_AS(take_snapshot(null_key),
                           doctest::Contains("the key 'n' is NULL in 1 row(s)"), QueryError);
    });
  }

  TEST_CASE("a configuration that cannot make a query says what to set") {
    Params p;
    p.url = "sqlite:/tmp/unused.db";
    p.key = "id";
    CHECK_THROWS_WITH_AS(count_rows(p),
                         doctest::Contains("set exactly one of Params::table and Params::query"),
                         QueryError);
    p.table = "t";
    p.key = "";
    CHECK_THROWS_WITH_AS(count_rows(p), doctest::Contains("set Params::key"), QueryError);
    p.key = "id";
    p.columns = {"lower(name)"};
    CHECK_THROWS_WITH_AS(count_rows(p),
                         doctest::Contains("column 'lower(name)' is not a plain SQL name"),
                         QueryError);
    p.columns = {"\"Unit Price\"", "main.t.x"};
    p.split = Split::offset;
    CHECK(slice_query(p, 20, 10) ==
          "SELECT \"Unit Price\", main.t.x FROM t ORDER BY id LIMIT 10 OFFSET 20");
  }

  TEST_CASE("the queries slices run") {
    Params p;
    p.url = "sqlite:/tmp/unused.db";
    p.table = "numbers";
    p.columns = {"i", "v"};
    p.key = "i";
    p.where = "v > 0";
    p.snapshot = Snapshot{true, 10, 100, 109};
    CHECK(slice_query(p, 3, 4) ==
          "SELECT i, v FROM numbers WHERE (v > 0) AND i >= 103 AND i < 107 ORDER BY i");
    CHECK(slice_query(p, 0, 4) == "SELECT i, v FROM numbers WHERE (v > 0) AND i < 104 ORDER BY i");
    CHECK(slice_query(p, 4, 6) == "SELECT i, v FROM numbers WHERE (v > 0) AND i >= 104 ORDER BY i");
    p.where.clear();
    CHECK(slice_query(p, 0, 10) == "SELECT i, v FROM numbers ORDER BY i");
    p.where = "v > 0";
    p.split = Split::offset;
    CHECK(slice_query(p, 3, 4) ==
          "SELECT i, v FROM numbers WHERE (v > 0) ORDER BY i LIMIT 4 OFFSET 3");
    p.table.clear();
    p.query = "SELECT a AS i, b AS v FROM x";
    p.where.clear();
    CHECK(slice_query(p, 0, 5) ==
          "SELECT i, v FROM (SELECT a AS i, b AS v FROM x) AS pymar_source ORDER BY i LIMIT 5 "
          "OFFSET 0");
  }

  TEST_CASE("parameters travel to workers unchanged") {
    Params p;
    p.url = "postgresql://u@h/db";
    p.table = "t";
    p.columns = {"a", "b"};
    p.key = "a";
    p.where = "b > 1";
    p.split = Split::offset;
    p.snapshot = Snapshot{true, 5, -2, 2};
    const Params q = pymar::decode<Params>(pymar::encode(p));
    CHECK(q.url == p.url);
    CHECK(q.table == p.table);
    CHECK(q.columns == p.columns);
    CHECK(q.key == p.key);
    CHECK(q.where == p.where);
    CHECK(q.split == Split::offset);
    CHECK(q.snapshot.taken);
    CHECK(q.snapshot.rows == 5);
    CHECK(q.snapshot.min_key == -2);
    CHECK(q.snapshot.max_key == 2);
  }

  TEST_CASE("connection failures say which database and why") {
    Params p;
    p.table = "numbers";
    p.key = "i";
    SUBCASE("an unsupported connection string") {
      p.url = "mysql://localhost/db";
      CHECK_THROWS_WITH_AS(count_rows(p), doctest::Contains("unsupported connection string"),
                           ConnectionError);
    }
    SUBCASE("no connection string") {
      CHECK_THROWS_WITH_AS(count_rows(p), doctest::Contains("set Params::url"), ConnectionError);
    }
    if (pymar::sql::test::has_backend("sqlite")) {
      SUBCASE("a SQLite file that does not exist") {
        p.url = "sqlite:/nonexistent/pymar/numbers.db";
        CHECK_THROWS_WITH_AS(count_rows(p),
                             doctest::Contains("cannot open the SQLite database "
                                               "'/nonexistent/pymar/numbers.db'"),
                             ConnectionError);
      }
      SUBCASE("a file that is not a database") {
        pymar::sql::test::TempDir dir;
        const auto file = dir.path / "not.db";
        std::ofstream(file) << "these are not the pages of a database\n";
        p.url = "sqlite:" + file.string();
        CHECK_THROWS_WITH_AS(count_rows(p), doctest::Contains("cannot read the SQLite database"),
                             ConnectionError);
      }
    }
    if (pymar::sql::test::has_backend("postgresql")) {
      SUBCASE("a PostgreSQL server that is not there, with the password hidden") {
        p.url = "postgresql://pymar:secret@127.0.0.1:1/pymar?connect_timeout=5";
        std::string message;
        const double seconds = seconds_of([&] {
          try {
            count_rows(p);
          } catch (const ConnectionError& e) {
            message = e.what();
          }
        });
        CHECK(message.find("cannot connect to PostgreSQL") != std::string::npos);
        CHECK(message.find("postgresql://pymar:***@127.0.0.1:1/pymar") != std::string::npos);
        CHECK(message.find("secret") == std::string::npos);
        CHECK(seconds < 10);
      }
    }
  }

  TEST_CASE("a connection reads rows outside a job") {
    for_each_database([](Database& db) {
      create_items(db);
      const auto rows = db.connection.rows<std::tuple<std::int64_t, std::optional<std::string>>>(
          "SELECT id, s FROM pymar_t_items ORDER BY id");
      REQUIRE(rows.size() == 3);
      CHECK(std::get<1>(rows[0]) == "forty-two");
      CHECK_FALSE(std::get<1>(rows[1]).has_value());
      CHECK_THROWS_WITH_AS(db.connection.execute("CREATE TABLE"),
                           doctest::Contains("statement: CREATE TABLE"), QueryError);
    });
  }
}
