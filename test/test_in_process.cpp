// map() end to end inside one process: locally, and over 1, 2 and 4 workers on threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <ranges>
#include <string>
#include <vector>

#include <pymar/pymar.hpp>

#include "common/registry.hpp"
#include "support/cluster.hpp"

namespace {

struct Range : pymar::DataSource {
  struct Params {
    std::size_t length = 0;
    MSGPACK_DEFINE(length)
  };
  explicit Range(Params) {}
  static std::size_t full_length(const Params& p) { return p.length; }
  auto items() const { return indices(); }
};

struct Doubler : pymar::Producer<Doubler> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto x) { return 2 * static_cast<long>(x); });
  }
  static long reduce_fn(auto&& values) { return pymar::sum<long>(values); }
};

// The elements each slice saw, to check that every element was seen exactly once.
struct Collect : pymar::Producer<Collect> {
  static constexpr std::size_t WORKERS_NUMBER = 3;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto x) { return std::vector<std::size_t>{x}; });
  }
  static std::vector<std::size_t> reduce_fn(auto&& lists) {
    std::vector<std::size_t> all;
    for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
    return all;
  }
};

struct Many : pymar::Producer<Many> {
  static constexpr std::size_t WORKERS_NUMBER = 1000;
  static auto map_fn(auto&& xs) { return xs; }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum<std::size_t>(values); }
};

struct Lengths : pymar::Producer<Lengths> {
  static constexpr std::size_t WORKERS_NUMBER = 2;
  static auto map_fn(auto&& words) {
    return words | std::views::transform([](const std::string& w) { return w.size(); });
  }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum<std::size_t>(values); }
};

struct Thrower : pymar::Producer<Thrower> {
  static constexpr std::size_t WORKERS_NUMBER = 5;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto x) {
             if (x == 7) throw std::invalid_argument("seven is not allowed");
             return x;
           });
  }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum<std::size_t>(values); }
};

// A producer and a source that are templates of several arguments: the REGISTER_* macros take
// the commas in their names.
template <class T, int Factor>
struct Scaled : pymar::Producer<Scaled<T, Factor>> {
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto x) { return static_cast<T>(x) * Factor; });
  }
  static T reduce_fn(auto&& values) { return pymar::sum<T>(values); }
};

template <class Tag, std::size_t Length>
struct FirstNumbers : pymar::DataSource {
  static std::size_t full_length() { return Length; }
  auto items() const { return indices(); }
};

}  // namespace

REGISTER_PRODUCER(Scaled<long, 3>);
REGISTER_DATASOURCE(FirstNumbers<int, 10>);
REGISTER_DATASOURCE(Range);
REGISTER_PRODUCER(Doubler);
REGISTER_PRODUCER(Collect);
REGISTER_PRODUCER(Many);
REGISTER_PRODUCER(Lengths);
REGISTER_PRODUCER(Thrower);

TEST_CASE("local mode doubles and sums 10 elements to 90") {
  pymar::detail::use_dispatcher(nullptr, false);
  CHECK(Doubler().map(pymar::factory<Range>({10})) == 90);
  std::vector<int> ten(10);
  std::iota(ten.begin(), ten.end(), 0);
  CHECK(Doubler().map(pymar::factory(ten)) == 90);
}

TEST_CASE("a kernel applied to a factory of 3 elements returns reduce_fn(map_fn(...))") {
  const std::vector<long> three{4, 5, 6};
  std::string encoded;
  pymar::detail::SliceInput input{0, 3, {}, {reinterpret_cast<const char*>(three.data()), 24}};
  pymar::detail::KernelFor<Doubler, pymar::detail::MemorySource<long>>::run(input, encoded);
  CHECK(pymar::decode<long>(encoded) == Doubler::reduce_fn(Doubler::map_fn(three)));
  CHECK(pymar::decode<long>(encoded) == 30);
}

TEST_CASE("the registry knows the names of this binary and explains unknown ones") {
  const auto producers = pymar::detail::producer_names();
  CHECK(std::find(producers.begin(), producers.end(), "Doubler") != producers.end());
  CHECK(static_cast<bool>(pymar::detail::find_kernel("Doubler", "Range").kernel));
  CHECK(pymar::detail::find_kernel("Nope", "Range").error == "unknown producer 'Nope'");
  CHECK(pymar::detail::find_kernel("Doubler", "Nope").error == "unknown data source 'Nope'");
  CHECK(pymar::detail::registration_errors().empty());
  struct Unregistered : pymar::Producer<Unregistered> {};
  CHECK_THROWS_WITH_AS(
      pymar::detail::registered_name(pymar::detail::EntryKind::producer, typeid(Unregistered)),
      doctest::Contains("PYMAR_REGISTER_PRODUCER"), pymar::Error);
}

TEST_CASE("templates of several arguments register under their full names and run on workers" *
          doctest::timeout(60)) {
  const auto producers = pymar::detail::producer_names();
  CHECK(std::find(producers.begin(), producers.end(), "Scaled<long,3>") != producers.end());
  const auto sources = pymar::detail::source_names();
  CHECK(std::find(sources.begin(), sources.end(), "FirstNumbers<int,10>") != sources.end());
  pymar::test::LocalCluster cluster(2);
  // 3 * (0 + 1 + ... + 9), computed by the kernel each worker finds by those names.
  CHECK(Scaled<long, 3>().map(pymar::factory<FirstNumbers<int, 10>>()) == 135);
}

namespace {

void check_answers_with(unsigned workers) {
  pymar::test::LocalCluster cluster(workers);
  // a registered source
  CHECK(Doubler().map(pymar::factory<Range>({1000})) == 999000);
  // each element is computed exactly once
  auto all = Collect().map(pymar::factory<Range>({7}));
  std::sort(all.begin(), all.end());
  CHECK(all == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
  // in-memory data, raw and encoded
  std::vector<int> numbers(100000);
  std::iota(numbers.begin(), numbers.end(), 0);
  CHECK(Doubler().map(pymar::factory(numbers)) == 9999900000L);
  const std::vector<std::string> words{"one", "three", "five", "", "eleven"};
  CHECK(Lengths().map(pymar::factory(words)) == 18);
  // more parts than elements, and many small slices
  CHECK(Many().map(pymar::factory<Range>({10})) == 45);
  CHECK(Many().map(pymar::factory<Range>({100000})) == 4999950000UL);
  // several jobs in a row
  for (std::size_t n = 1; n < 30; n += 7) {
    CHECK(Doubler().map(pymar::factory<Range>({n})) == static_cast<long>(n * (n - 1)));
  }
}

}  // namespace

TEST_CASE("map over one worker thread gives the local answer" * doctest::timeout(60)) {
  check_answers_with(1);
}

TEST_CASE("map over two worker threads gives the local answer" * doctest::timeout(60)) {
  check_answers_with(2);
}

TEST_CASE("map over four worker threads gives the local answer" * doctest::timeout(60)) {
  check_answers_with(4);
}

TEST_CASE("an exception in map_fn reaches map as a SliceError naming the slice" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  try {
    (void)Thrower().map(pymar::factory<Range>({10}));
    FAIL("map did not throw");
  } catch (const pymar::SliceError& e) {
    CHECK(e.details().exception_type == "std::invalid_argument");
    CHECK(e.details().message == "seven is not allowed");
    CHECK(e.details().offset <= 7);
    CHECK(e.details().offset + e.details().limit > 7);
    CHECK(e.details().pid > 0);
  }
  CHECK(Doubler().map(pymar::factory<Range>({10})) == 90);  // the workers still serve
}

TEST_CASE("an exception in local mode is a SliceError too") {
  pymar::detail::use_dispatcher(nullptr, false);
  CHECK_THROWS_AS((void)Thrower().map(pymar::factory<Range>({10})), pymar::SliceError);
}

TEST_CASE("with no worker within the grace period, map computes locally" * doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(0, std::chrono::milliseconds(50));
  CHECK(Doubler().map(pymar::factory<Range>({10})) == 90);
}

TEST_CASE("a timeout either fails or finishes locally" * doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(0, std::chrono::seconds(60));
  CHECK_THROWS_AS((void)Doubler().map(pymar::factory<Range>({10}), std::chrono::milliseconds(50)),
                  pymar::TimeoutError);
  CHECK(Doubler().map(pymar::factory<Range>({10}), std::chrono::milliseconds(50),
                      pymar::OnTimeout::compute_locally) == 90);
}

namespace {

// A source that works something out once on the producer and hands it to every slice.
struct Prepared : pymar::DataSource {
  struct Params {
    std::size_t length = 0;
    long offset_added = 0;  // set by prepare, on the producer only
    MSGPACK_DEFINE(length, offset_added)
  };
  Params params;
  explicit Prepared(Params p) : params(p) {}
  static Params prepare(Params p) {
    p.offset_added = 1000;
    return p;
  }
  static std::size_t full_length(const Params& p) {
    REQUIRE(p.offset_added == 1000);  // prepared before the length is asked for
    return p.length;
  }
  auto items() const {
    return indices() | std::views::transform([this](std::size_t i) {
             return static_cast<long>(i) + params.offset_added;
           });
  }
};

}  // namespace

REGISTER_DATASOURCE(Prepared);

TEST_CASE("a source's prepare runs once on the producer and its result reaches every slice" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  // 2 * (1000 + 1001 + ... + 1009) = 20090
  CHECK(Doubler().map(pymar::factory<Prepared>({10, 0})) == 20090);
}

namespace {

// A source that reads its elements one at a time, as a database cursor would.
struct Countdown : pymar::PullRange<Countdown, long> {
  long next = 0;
  long stop = 0;
  bool read(long& out) {
    if (next >= stop) return false;
    out = next++;
    return true;
  }
};

struct Pulled : pymar::DataSource {
  static std::size_t full_length() { return 100; }
  Countdown items() const {
    Countdown range;
    range.next = static_cast<long>(offset);
    range.stop = static_cast<long>(offset + limit);
    return range;
  }
};

}  // namespace

REGISTER_DATASOURCE(Pulled);

TEST_CASE("a source may pull its elements one at a time through a PullRange") {
  static_assert(std::ranges::input_range<Countdown>);
  Countdown empty;
  CHECK(empty.begin() == empty.end());
  pymar::detail::use_dispatcher(nullptr, false);
  CHECK(Doubler().map(pymar::factory<Pulled>()) == 9900);
  pymar::test::LocalCluster cluster(2);
  CHECK(Doubler().map(pymar::factory<Pulled>()) == 9900);
}

namespace {

struct RowSums : pymar::Producer<RowSums> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static auto map_fn(auto&& rows) {
    return rows | std::views::transform([](const auto& row) {
             if constexpr (requires { row.first; }) {
               return static_cast<double>(row.first + row.second);
             } else {
               return pymar::sum(row);
             }
           });
  }
  static double reduce_fn(auto&& values) { return pymar::sum(values); }
};

}  // namespace

REGISTER_PRODUCER(RowSums);

TEST_CASE("in-memory elements that are arrays themselves travel, whatever their length" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  // 4 rows of 1000: each slice holds one row, longer than the slice.
  const std::vector<std::vector<double>> rows(4, std::vector<double>(1000, 0.5));
  CHECK(RowSums().map(pymar::factory(rows)) == 2000.0);
  // Pairs in one-element slices.
  const std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}};
  CHECK(RowSums().map(pymar::factory(pairs)) == 10.0);
}

TEST_CASE("map called from two threads at once gives each its own answer" * doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  long first = 0;
  long second = 0;
  std::thread other([&] { second = Doubler().map(pymar::factory<Range>({2000})); });
  first = Doubler().map(pymar::factory<Range>({1000}));
  other.join();
  CHECK(first == 999000);
  CHECK(second == 3998000);
}

TEST_CASE("a timeout of hours::max() means no timeout" * doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(1);
  CHECK(Doubler().map(pymar::factory<Range>({10}), std::chrono::hours::max()) == 90);
}

namespace {

struct Bulky : pymar::DataSource {
  struct Params {
    std::string blob;
    MSGPACK_DEFINE(blob)
  };
  explicit Bulky(Params) {}
  static std::size_t full_length(const Params&) { return 10; }
  auto items() const { return indices(); }
};

}  // namespace

REGISTER_DATASOURCE(Bulky);

TEST_CASE("parameters too large for a message are a clear error, not a hang" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(1);
  CHECK_THROWS_WITH_AS((void)Doubler().map(pymar::factory<Bulky>({std::string(2 << 20, 'x')})),
                       doctest::Contains("over the 512 KiB"), pymar::Error);
  CHECK(Doubler().map(pymar::factory<Bulky>({"small"})) == 90);
}
