// The wordcount example as users run it: a pool of worker processes reading byte ranges of files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "support/process.hpp"

using namespace pymar::test;
namespace fs = std::filesystem;

TEST_SUITE("text process") {
  TEST_CASE("wordcount answers right over six books with a pool of 3 worker processes" *
            doctest::timeout(120)) {
    std::string pattern = (fs::temp_directory_path() / "pymar-wordcount-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    const fs::path dir = pattern;
    // Books "one", "one two", ..., "one two three four five six", split over two files, one of
    // them without a final newline.
    const char* words[] = {"one", "two", "three", "four", "five", "six"};
    std::string line, first, second;
    for (int i = 0; i < 6; ++i) {
      line += (i ? " " : "") + std::string(words[i]);
      (i < 4 ? first : second) += line + "\n";
    }
    second.pop_back();
    std::ofstream(dir / "a.txt") << first;
    std::ofstream(dir / "b.txt") << second;

    const std::string queue = fmt::format("127.0.0.1:{}", free_port());
    const std::string task = binary("examples/wordcount");
    Process pool({task, "--worker", "-q", queue, "-w", "3"});
    Process producer({task, "--produce", "-q", queue, "--grace", "60", "--", "--top", "0",
                      (dir / "a.txt").string(), (dir / "b.txt").string()});
    const auto status = producer.wait();
    fs::remove_all(dir);
    INFO("producer stderr:\n" << producer.err());
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(line_after(producer.out(), "Answer: ") == "one:6 two:5 three:4 four:3 five:2 six:1");
    CHECK(producer.err().find("locally") == std::string::npos);
  }
}
