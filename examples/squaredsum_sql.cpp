// The sum of i * i over the table `numbers` (i = 0 .. 10^7 - 1), read from a database by the
// workers: each one connects on its own and reads only its own slice of the table.
//
//   squaredsum_sql --produce -w 4
//       SQLite: $TMPDIR/pymar-squaredsum.db (/tmp by default), made on the first run
//   squaredsum_sql --produce -w 4 -- postgresql://user@dbhost/db [TABLE]
//       PostgreSQL: a table numbers (i bigint primary key) must exist (see doc/plugins.md)
//
// The arguments after `--` (given to the producer only; workers receive them with the job) name
// the database and another table than `numbers`. Each worker connects from its own machine, so
// `localhost` there means the worker's machine, and a SQLite file must exist on each.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <ranges>
#include <string>

#include <fmt/format.h>
#include <pymar/int128.hpp>
#include <pymar/pymar.hpp>
#include <pymar/sql.hpp>

struct Numbers : pymar::sql::Source<std::int64_t> {
  using Source::Source;
};
REGISTER_DATASOURCE(Numbers);

struct SquaredSum : pymar::Producer<SquaredSum> {
  static constexpr std::size_t WORKERS_NUMBER = 8;

  static auto map_fn(auto&& numbers) {
    return numbers | std::views::transform([](std::int64_t x) { return x * x; });
  }

  static pymar::int128 reduce_fn(auto&& values) { return pymar::sum<pymar::int128>(values); }
};
REGISTER_PRODUCER(SquaredSum);

// The default database: a SQLite file of 10^7 numbers, made on the first run. It is written
// under another name and renamed into place, so an interrupted run leaves no half-made table.
std::string default_database() {
  const auto path = std::filesystem::temp_directory_path() / "pymar-squaredsum.db";
  if (!std::filesystem::exists(path)) {
    fmt::print(stderr, "making {} (10^7 rows, once: a few seconds)\n", path.string());
    const std::string partial = path.string() + ".partial-" + std::to_string(getpid());
    {
      pymar::sql::Connection db("sqlite:" + partial);
      db.execute(
          "CREATE TABLE numbers (i INTEGER PRIMARY KEY);"
          "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999999) "
          "INSERT INTO numbers SELECT i FROM n");
    }
    std::filesystem::rename(partial, path);
  }
  return "sqlite:" + path.string();
}

int main(int argc, char** argv) {
  // squaredsum_sql ... -- [URL [TABLE]]
  return pymar::main(argc, argv, [](const pymar::Arguments& args) {
    const pymar::sql::Params params{
        .url = args.size() > 0 ? args[0] : default_database(),
        .table = args.size() > 1 ? args[1] : "numbers",
        .columns = {"i"},
        .key = "i",
    };
    const pymar::int128 answer = SquaredSum().map(pymar::factory<Numbers>(params));
    fmt::print("Answer: {}\n", answer);
  });
}
