// How slices find their rows: key ranges (Split::key_range) against LIMIT/OFFSET (Split::offset)
// on a table of 10^7 rows. A job is timed as a worker pool would run it, one slice after another:
// the row count on the producer (the snapshot for key ranges), then each slice on a connection of
// its own, every row converted and summed. Both modes must give the exact sum of i * i.
//
//   sql_split_bench [URL] [--rows N] [--slices 8,32] [--repeat 5]
//
// URL defaults to a SQLite file in the temporary folder. The table (numbers(i), or
// pymar_bench_numbers(i) on PostgreSQL) is made when missing or of another size.
// plugins/sql/bench/run.sh runs it on SQLite and on a throwaway PostgreSQL server.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <pymar/sql.hpp>

namespace sql = pymar::sql;

namespace {

struct Options {
  std::string url;
  std::int64_t rows = 10'000'000;
  std::vector<std::size_t> slices = {8, 32};
  int repeat = 5;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return std::string(argv[++i]);
    };
    if (arg == "--rows") {
      o.rows = std::stoll(value());
    } else if (arg == "--repeat") {
      o.repeat = std::stoi(value());
    } else if (arg == "--slices") {
      o.slices.clear();
      std::string list = value();
      for (std::size_t start = 0; start <= list.size();) {
        const auto comma = std::min(list.find(',', start), list.size());
        o.slices.push_back(std::stoul(list.substr(start, comma - start)));
        start = comma + 1;
      }
    } else if (arg.starts_with("--")) {
      throw std::runtime_error("unknown option " + arg);
    } else {
      o.url = arg;
    }
  }
  if (o.url.empty()) {
    o.url = "sqlite:" + (std::filesystem::temp_directory_path() / "pymar-sql-bench.db").string();
  }
  return o;
}

// Makes table(i) with i in [0, rows) unless it is already there with that many rows.
void prepare(const std::string& url, const std::string& table, std::int64_t rows) {
  sql::Connection db(url);
  try {
    const auto count = db.rows<std::int64_t>(fmt::format("SELECT count(*) FROM {}", table));
    if (count.size() == 1 && count[0] == rows) return;
  } catch (const sql::QueryError&) {
    // no table yet
  }
  fmt::print(stderr, "making {} with {} rows in {}\n", table, rows, db.where());
  db.execute(fmt::format("DROP TABLE IF EXISTS {}", table));
  if (db.dialect() == sql::Dialect::sqlite) {
    db.execute(
        fmt::format("CREATE TABLE {0} (i INTEGER PRIMARY KEY);"
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {1}) "
                    "INSERT INTO {0} SELECT i FROM n",
                    table, rows - 1));
  } else {
    db.execute(
        fmt::format("CREATE TABLE {0} (i bigint);"
                    "INSERT INTO {0} SELECT generate_series(0, {1});"
                    "ALTER TABLE {0} ADD PRIMARY KEY (i); ANALYZE {0}",
                    table, rows - 1));
  }
}

struct Timing {
  double job = 0;         // seconds for the whole job
  double last_slice = 0;  // seconds for its last slice, the one furthest into the table
  __int128_t sum = 0;
};

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Timing run_job(sql::Params params, std::size_t parts) {
  Timing t;
  const auto start = std::chrono::steady_clock::now();
  if (params.split == sql::Split::key_range) params.snapshot = sql::take_snapshot(params);
  const std::size_t length = sql::Source<std::int64_t>::full_length(params);
  std::size_t offset = 0;
  for (std::size_t i = 0; i < parts; ++i) {
    const std::size_t limit = length / parts + (i < length % parts ? 1 : 0);
    const auto slice_start = std::chrono::steady_clock::now();
    sql::Source<std::int64_t> source(params);
    source.offset = offset;
    source.limit = limit;
    for (std::int64_t x : source.items()) t.sum += static_cast<__int128_t>(x) * x;
    t.last_slice = since(slice_start);
    offset += limit;
  }
  t.job = since(start);
  return t;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const bool sqlite = o.url.starts_with("sqlite:");
    const std::string table = sqlite ? "numbers" : "pymar_bench_numbers";
    prepare(o.url, table, o.rows);
    const __int128_t n = o.rows;
    const __int128_t expected = n * (n - 1) * (2 * n - 1) / 6;

    fmt::print("SQL slices: key ranges against LIMIT/OFFSET\n");
    fmt::print("database {}, table {} of {} rows, medians of {} runs\n",
               sql::Connection(o.url).where(), table, o.rows, o.repeat);
    fmt::print("{:>6}  {:>18} {:>11} {:>6}  {:>24} {:>11} {:>6}\n", "slices", "job: LIMIT/OFFSET",
               "key ranges", "ratio", "last slice: LIMIT/OFFSET", "key ranges", "ratio");
    for (std::size_t parts : o.slices) {
      std::vector<double> job[2], last[2];
      for (int r = 0; r < o.repeat; ++r) {
        // Alternate the modes, so that neither always runs on a warmer cache.
        for (int m = 0; m < 2; ++m) {
          const int mode = (r % 2 == 0) ? m : 1 - m;
          sql::Params p{.url = o.url, .table = table, .columns = {"i"}, .key = "i"};
          p.split = mode == 0 ? sql::Split::offset : sql::Split::key_range;
          const Timing t = run_job(p, parts);
          if (t.sum != expected) {
            fmt::print(stderr, "wrong sum with {} slices ({})\n", parts,
                       mode == 0 ? "LIMIT/OFFSET" : "key ranges");
            return 1;
          }
          job[mode].push_back(t.job);
          last[mode].push_back(t.last_slice);
        }
      }
      const double jo = median(job[0]), jk = median(job[1]);
      const double lo = median(last[0]), lk = median(last[1]);
      fmt::print("{:>6}  {:>16.3f} s {:>9.3f} s {:>5.1f}x  {:>22.3f} s {:>9.3f} s {:>5.1f}x\n",
                 parts, jo, jk, jo / jk, lo, lk, lo / lk);
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "sql_split_bench: {}\n", e.what());
    return 1;
  }
}
