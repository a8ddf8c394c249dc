#include <doctest/doctest.h>

#include <cstdint>
#include <numeric>

#include "common/slicing.hpp"

using pymar::detail::Part;
using pymar::detail::split;

TEST_CASE("14 elements for 4 workers are cut into parts of 4, 4, 3 and 3") {
  CHECK(split(14, 4) == std::vector<Part>{{0, 4}, {4, 4}, {8, 3}, {11, 3}});
}

TEST_CASE("2 elements for 4 workers are cut into 2 parts of one element") {
  CHECK(split(2, 4) == std::vector<Part>{{0, 1}, {1, 1}});
}

TEST_CASE("no elements make no parts") {
  CHECK(split(0, 4).empty());
}

TEST_CASE("every element is in exactly one part, and part sizes differ by at most one") {
  for (std::size_t length : {1, 2, 3, 7, 10, 99, 1000, 1001, 65537}) {
    for (std::size_t parts : {1, 2, 3, 4, 7, 16, 64, 1000, 5000}) {
      CAPTURE(length);
      CAPTURE(parts);
      const auto cut = split(length, parts);
      REQUIRE(cut.size() == std::min(length, parts));
      std::size_t next = 0;
      std::size_t smallest = SIZE_MAX;
      std::size_t largest = 0;
      for (const Part& p : cut) {
        CHECK(p.offset == next);
        CHECK(p.limit > 0);
        next += p.limit;
        smallest = std::min(smallest, p.limit);
        largest = std::max(largest, p.limit);
      }
      CHECK(next == length);
      CHECK(largest - smallest <= 1);
    }
  }
}

TEST_CASE("a log line lists runs of consecutive slices as first-last") {
  using pymar::detail::slice_list_text;
  auto text = [](std::vector<std::uint64_t> slices) { return slice_list_text(slices); };
  CHECK(text({}) == "");
  CHECK(text({7}) == "7");
  CHECK(text({0, 1, 2, 3}) == "0-3");
  CHECK(text({4, 5, 6, 9}) == "4-6, 9");
  CHECK(text({1, 3, 4, 8}) == "1, 3-4, 8");
  CHECK(text({5, 4}) == "5, 4");  // in the batch's order, which is not always ascending
  std::vector<std::uint64_t> many(16384);
  std::iota(many.begin(), many.end(), std::uint64_t{1} << 40);
  CHECK(text(many) == "1099511627776-1099511644159");
}
