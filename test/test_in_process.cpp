// map() end to end inside one process: locally, and over 1, 2 and 4 workers on threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <numeric>
#include <ranges>
#include <string>
#include <vector>

#include <pymar/pymar.hpp>

#include "common/log.hpp"
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

// As Doubler, with no speculative copies: each slice runs exactly once however slow the host.
struct DoublerOnce : pymar::Producer<DoublerOnce> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static constexpr bool SPECULATIVE = false;
  static auto map_fn(auto&& xs) { return Doubler::map_fn(xs); }
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

// As Lengths, with no speculative copies: each slice is sent once.
struct LengthsOnce : pymar::Producer<LengthsOnce> {
  static constexpr std::size_t WORKERS_NUMBER = 2;
  static constexpr bool SPECULATIVE = false;
  static auto map_fn(auto&& words) { return Lengths::map_fn(words); }
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
REGISTER_PRODUCER(DoublerOnce);
REGISTER_PRODUCER(Collect);
REGISTER_PRODUCER(Many);
REGISTER_PRODUCER(Lengths);
REGISTER_PRODUCER(LengthsOnce);
REGISTER_PRODUCER(Thrower);

TEST_CASE("local mode doubles and sums 10 elements to 90") {
  const pymar::detail::Runtime local(false);  // this machine's cores, without a warning
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

// The slices of a job of `length` elements under producer P.
template <class P>
std::uint64_t slices_of(std::size_t length) {
  return std::min<std::size_t>(P::WORKERS_NUMBER, length);
}

void check_answers_with(unsigned workers) {
  pymar::test::LocalCluster cluster(workers);
  // The local fallback gives the same answers: after each job, the producer's own count of
  // slices returned by workers must have grown by all of the job's slices.
  std::uint64_t expected = 0;
  auto computed_by_workers = [&](std::uint64_t slices) {
    expected += slices;
    CHECK(cluster.slices_from_workers() == expected);
  };
  // a registered source
  CHECK(Doubler().map(pymar::factory<Range>({1000})) == 999000);
  computed_by_workers(slices_of<Doubler>(1000));
  // each element is computed exactly once
  auto all = Collect().map(pymar::factory<Range>({7}));
  std::sort(all.begin(), all.end());
  CHECK(all == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
  computed_by_workers(slices_of<Collect>(7));
  // in-memory data, raw and encoded
  std::vector<int> numbers(100000);
  std::iota(numbers.begin(), numbers.end(), 0);
  CHECK(Doubler().map(pymar::factory(numbers)) == 9999900000L);
  computed_by_workers(slices_of<Doubler>(numbers.size()));
  const std::vector<std::string> words{"one", "three", "five", "", "eleven"};
  CHECK(Lengths().map(pymar::factory(words)) == 18);
  computed_by_workers(slices_of<Lengths>(words.size()));
  // more parts than elements, and many small slices
  CHECK(Many().map(pymar::factory<Range>({10})) == 45);
  computed_by_workers(slices_of<Many>(10));
  CHECK(Many().map(pymar::factory<Range>({100000})) == 4999950000UL);
  computed_by_workers(slices_of<Many>(100000));
  // several jobs in a row
  for (std::size_t n = 1; n < 30; n += 7) {
    CHECK(Doubler().map(pymar::factory<Range>({n})) == static_cast<long>(n * (n - 1)));
    computed_by_workers(slices_of<Doubler>(n));
  }
}

// An element whose msgpack encoding throws, as a user's adaptor might (or an allocation).
// In-memory elements that are not trivially copyable are encoded on the producer's I/O thread.
struct Explosive {
  std::string name;
  template <class Packer>
  void msgpack_pack(Packer&) const {
    throw std::bad_alloc();
  }
  void msgpack_unpack(const msgpack::object&) {}
};

struct NameLengths : pymar::Producer<NameLengths> {
  static constexpr std::size_t WORKERS_NUMBER = 2;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](const Explosive& x) { return x.name.size(); });
  }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum<std::size_t>(values); }
};

}  // namespace

REGISTER_PRODUCER(NameLengths);

namespace {

// A partial value of `Length` small numbers: one msgpack object per byte.
template <std::size_t Length>
struct ManyZeros : pymar::Producer<ManyZeros<Length>> {
  static constexpr std::size_t WORKERS_NUMBER = 1;
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](auto) { return std::vector<int>(Length, 0); });
  }
  static std::vector<int> reduce_fn(auto&& values) {
    std::vector<int> total(Length, 0);
    for (const auto& v : values) {
      for (std::size_t i = 0; i < v.size() && i < Length; ++i) total[i] += v[i];
    }
    return total;
  }
};

}  // namespace

REGISTER_PRODUCER(ManyZeros<1000000>);
REGISTER_PRODUCER(ManyZeros<4000000>);

TEST_CASE("a partial value too costly to decode is a SliceError where it is made") {
  // README: a value of B bytes may hold at most 2^20 + B / 3 msgpack objects. A million small
  // numbers are within the first 2^20; four million, in 4 MB, are not.
  CHECK(ManyZeros<1000000>().map(pymar::factory<Range>({1})).size() == 1000000);
  CHECK_THROWS_WITH_AS((void)ManyZeros<4000000>().map(pymar::factory<Range>({1})),
                       doctest::Contains("declare more elements than"), pymar::SliceError);
}

TEST_CASE("an exception on the producer's I/O thread ends map with a pymar::Error" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(1);
  const std::vector<Explosive> elements(4, Explosive{"boom"});
  CHECK_THROWS_WITH_AS((void)NameLengths().map(pymar::factory(elements)),
                       doctest::Contains("I/O thread stopped: std::bad_alloc"), pymar::Error);
  // And every later map too, at once, rather than waiting on a thread that is gone.
  CHECK_THROWS_WITH_AS((void)Doubler().map(pymar::factory<Range>({10})),
                       doctest::Contains("I/O thread stopped"), pymar::Error);
}

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
  const pymar::detail::Runtime local(false);  // this machine's cores, without a warning
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
  const pymar::detail::Runtime local(false);  // this machine's cores, without a warning
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

TEST_CASE("an in-memory slice too costly for a worker to decode fails map, saying what to do" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(1);
  // One row of four million small numbers: 4 MB, one msgpack object per byte.
  const std::vector<std::vector<double>> rows(1, std::vector<double>(4000000, 0.0));
  CHECK_THROWS_WITH_AS((void)RowSums().map(pymar::factory(rows)),
                       doctest::Contains("raise WORKERS_NUMBER"), pymar::SliceError);
  // The same data in rows of a million fits, slice by slice.
  const std::vector<std::vector<double>> smaller(4, std::vector<double>(1000000, 0.0));
  CHECK(RowSums().map(pymar::factory(smaller)) == 0.0);
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

TEST_CASE("map_with_stats gives map's value and a record of every slice and worker" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  // No speculative copies: a loaded host would make some slices run twice (attempts 2).
  const auto [value, stats] = DoublerOnce().map_with_stats(pymar::factory<Range>({1000}));
  CHECK(value == Doubler().map(pymar::factory<Range>({1000})));
  CHECK(stats.ending == pymar::JobEnding::done);
  CHECK(stats.producer == "DoublerOnce");
  CHECK(stats.slices_total == 4);
  CHECK(stats.slices_done == 4);
  REQUIRE(stats.slices.size() == 4);
  std::uint64_t slices = 0, elements = 0;
  for (const pymar::WorkerStats& w : stats.workers) {
    slices += w.slices;
    elements += w.elements;
  }
  CHECK(slices == 4);
  CHECK(elements == 1000);
  for (const pymar::SliceStats& s : stats.slices) {
    CHECK(s.attempts == 1);
    REQUIRE(s.worker >= 0);
    CHECK(static_cast<std::size_t>(s.worker) < stats.workers.size());
    CHECK(0 <= s.start_ns);
    CHECK(s.start_ns <= s.end_ns);
    CHECK(s.end_ns <= stats.wall_ns);
  }
  CHECK(stats.first_result_ns >= 0);
}

TEST_CASE("map_with_stats counts the bytes of in-memory data sent to workers" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  // Raw: 1 MB of ints, sent as they are (zero-copy above a size). Encoded: strings, packed.
  std::vector<int> numbers(250'000, 7);
  const std::vector<std::string> words(20'000, std::string(40, 'w'));
  const auto raw = DoublerOnce().map_with_stats(pymar::factory(numbers));
  const auto encoded = LengthsOnce().map_with_stats(pymar::factory(words));
  CHECK(raw.value == 3'500'000);
  CHECK(encoded.value == 800'000);
  for (const pymar::JobStats* stats : {&raw.stats, &encoded.stats}) {
    // The elements' own bytes; an encoding adds a little to each.
    const std::uint64_t data =
        stats == &raw.stats ? numbers.size() * sizeof(int) : words.size() * words[0].size();
    CAPTURE(data);
    CHECK(stats->bytes_out >= data);
    CHECK(stats->bytes_out < data + data / 10 + 64 * 1024);
    std::uint64_t to_workers = 0;
    for (const pymar::WorkerStats& w : stats->workers) to_workers += w.bytes_out;
    CHECK(to_workers >= data);
  }
}

TEST_CASE("map_with_stats in local mode records every slice as local") {
  const pymar::detail::Runtime local(false);  // this machine's cores, without a warning
  const auto [value, stats] = Doubler().map_with_stats(pymar::factory<Range>({10}));
  CHECK(value == 90);
  CHECK(stats.local_reason == "local mode");
  CHECK(stats.local_slices == 4);
  REQUIRE(stats.slices.size() == 4);
  for (const pymar::SliceStats& s : stats.slices) CHECK(s.worker == pymar::SliceStats::kLocal);
}

TEST_CASE("to_json escapes what a peer could put in a text") {
  pymar::JobStats stats;
  stats.producer = "P\"\\\n";
  stats.faults.push_back({5, pymar::FaultKind::malformed_message, std::string("a\x01\xff", 3)});
  const std::string json = pymar::to_json(stats);
  CHECK(json.find(R"("producer":"P\"\\\n")") != std::string::npos);
  CHECK(json.find(R"("detail":"a\u0001\u00ff")") != std::string::npos);
  CHECK(json.find(R"("first_result_ns":null)") != std::string::npos);
}

TEST_CASE("observe: snapshots count jobs, slices and bytes, and hold the last job" *
          doctest::timeout(60)) {
  pymar::test::LocalCluster cluster(2);
  pymar::detail::Dispatcher& dispatcher = cluster.dispatcher();
  // The first call starts publishing; the job's end is then published before map returns.
  CHECK(dispatcher.observe() != nullptr);
  CHECK(Doubler().map(pymar::factory<Range>({1000})) == 999000);
  const auto after_one = dispatcher.observe();
  CHECK(after_one->jobs_started == 1);
  CHECK(after_one->jobs_done == 1);
  CHECK(after_one->jobs_failed == 0);
  CHECK(after_one->slices_done == 4);
  CHECK(after_one->bytes_in > 0);
  CHECK(after_one->bytes_out > 0);
  CHECK_FALSE(after_one->current.has_value());
  REQUIRE(after_one->last != nullptr);
  CHECK(after_one->last->job == 1);
  CHECK(after_one->last->slices_done == 4);
  CHECK(after_one->last->slices.size() == 4);  // recorded: someone observes
  std::uint64_t worker_slices = 0;
  for (const auto& w : after_one->workers) worker_slices += w.slices;
  CHECK(worker_slices == 4);

  CHECK(Doubler().map(pymar::factory<Range>({10})) == 90);
  const auto after_two = dispatcher.observe();
  CHECK(after_two->sequence > after_one->sequence);
  CHECK(after_two->jobs_done == 2);
  CHECK(after_two->slices_done == 8);  // a counter: it never goes down
  REQUIRE(after_two->last != nullptr);
  CHECK(after_two->last->job == 2);
  CHECK(after_one->last->job == 1);  // a published snapshot never changes
}

TEST_CASE("-vv message lines: at most 100 a second, the next one says how many were left out") {
  pymar::detail::LineRate rate;
  const auto start = std::chrono::steady_clock::time_point() + std::chrono::hours(1);
  std::size_t dropped = 0;
  std::size_t written = 0;
  for (int i = 0; i < 1000; ++i) written += rate.allow(start, dropped) ? 1 : 0;
  CHECK(written == 100);
  CHECK(rate.allow(start + std::chrono::milliseconds(999), dropped) == false);
  REQUIRE(rate.allow(start + std::chrono::seconds(1), dropped));
  CHECK(dropped == 901);
  CHECK(rate.allow(start + std::chrono::seconds(1), dropped));
  CHECK(dropped == 0);
}
