// The text plugin: byte-range slices of files hand every line to exactly one slice.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <pymar/pymar.hpp>
#include <pymar/text.hpp>

namespace fs = std::filesystem;

namespace {

// A folder of its own, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "pymar-text-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { fs::remove_all(path); }

  std::string write(const std::string& name, const std::string& content) const {
    const fs::path file = path / name;
    std::ofstream(file, std::ios::binary) << content;
    return file.string();
  }
};

// The lines of a file as the plugin promises to read them, computed the obvious way.
std::vector<std::string> lines_of(const std::string& content) {
  std::vector<std::string> lines;
  std::string line;
  for (char c : content) {
    if (c == '\n') {
      lines.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

std::vector<std::string> read_slice(const pymar::text::Params& params, std::size_t offset,
                                    std::size_t limit) {
  pymar::text::Lines source(params);
  source.offset = offset;
  source.limit = limit;
  std::vector<std::string> out;
  for (std::string_view line : source.items()) out.emplace_back(line);
  return out;
}

// The lines of all slices when [0, total) is cut at `cuts` (ascending, within [0, total]).
std::vector<std::string> read_cut(const pymar::text::Params& params, std::size_t total,
                                  const std::vector<std::size_t>& cuts) {
  std::vector<std::string> all;
  std::size_t start = 0;
  for (std::size_t cut : cuts) {
    for (auto& line : read_slice(params, start, cut - start)) all.push_back(line);
    start = cut;
  }
  for (auto& line : read_slice(params, start, total - start)) all.push_back(line);
  return all;
}

// Cuts into `parts` contiguous parts whose sizes differ by at most one, as Pymar cuts a job.
std::vector<std::size_t> even_cuts(std::size_t total, std::size_t parts) {
  std::vector<std::size_t> cuts;
  std::size_t offset = 0;
  for (std::size_t i = 0; i + 1 < parts; ++i) {
    offset += total / parts + (i < total % parts ? 1 : 0);
    cuts.push_back(offset);
  }
  return cuts;
}

void check_every_cut(const std::vector<std::string>& contents) {
  TempDir dir;
  pymar::text::Params params;
  std::vector<std::string> expected;
  for (std::size_t i = 0; i < contents.size(); ++i) {
    params.files.push_back(dir.write("f" + std::to_string(i), contents[i]));
    for (auto& line : lines_of(contents[i])) expected.push_back(line);
  }
  const std::size_t total = pymar::text::Lines::full_length(params);
  CAPTURE(total);
  // One cut anywhere, including inside "\r\n", at a newline, and at file boundaries.
  for (std::size_t cut = 0; cut <= total; ++cut) {
    CAPTURE(cut);
    REQUIRE(read_cut(params, total, {cut}) == expected);
  }
  // 1 to `total` parts (one part per byte at the end).
  for (std::size_t parts = 1; parts <= total; ++parts) {
    CAPTURE(parts);
    REQUIRE(read_cut(params, total, even_cuts(total, parts)) == expected);
  }
}

struct WordCount : pymar::Producer<WordCount> {
  static constexpr std::size_t WORKERS_NUMBER = 7;
  using Counts = std::map<std::string, std::int64_t>;

  static auto map_fn(auto&& lines) {
    return lines | std::views::transform([](std::string_view line) {
             Counts counts;
             for (std::string_view word : pymar::text::words(line)) ++counts[std::string(word)];
             return counts;
           });
  }
  static Counts reduce_fn(auto&& partials) {
    Counts total;
    for (const Counts& counts : partials) {
      for (const auto& [word, n] : counts) total[word] += n;
    }
    return total;
  }
};
REGISTER_PRODUCER(WordCount);
REGISTER_DATASOURCE(pymar::text::Lines);

}  // namespace

TEST_SUITE("text") {
  TEST_CASE("every line is in exactly one slice, wherever the slices are cut") {
    SUBCASE("lines ending with a newline") {
      check_every_cut({"one\ntwo two\nthree\n"});
    }
    SUBCASE("a last line without a newline") {
      check_every_cut({"one\ntwo\nthree"});
    }
    SUBCASE("empty lines") {
      check_every_cut({"\n\na\n\n\nb\n\n"});
    }
    SUBCASE("only newlines") {
      check_every_cut({"\n\n\n"});
    }
    SUBCASE("one long line") {
      check_every_cut({std::string(50, 'x')});
    }
    SUBCASE("windows line ends") {
      check_every_cut({"a b\r\nc\r\n\r\nd"});
    }
    SUBCASE("several files, some empty, some without a final newline") {
      check_every_cut({"alpha\nbeta", "", "gamma\n", "\n", "delta\nepsilon\n", "z"});
    }
  }

  TEST_CASE("every line is in exactly one slice in random files") {
    std::mt19937 random(20240611);
    for (int round = 0; round < 12; ++round) {
      std::vector<std::string> contents(1 + random() % 3);
      for (std::string& content : contents) {
        const int length = static_cast<int>(random() % 25);
        for (int i = 0; i < length; ++i) content += "ab \n"[random() % 4];
      }
      CAPTURE(round);
      check_every_cut(contents);
    }
  }

  TEST_CASE("a map over files counts each word once") {
    TempDir dir;
    std::vector<std::string> files;
    std::string text;
    for (int book = 1; book <= 6; ++book) {
      std::string line;
      for (int w = 1; w <= book; ++w) line += (w > 1 ? " " : "") + std::to_string(w);
      files.push_back(dir.write("book" + std::to_string(book), line + "\n" + line));
    }
    const auto counts = WordCount().map(pymar::factory<pymar::text::Lines>({.files = files}));
    REQUIRE(counts.size() == 6);
    for (int w = 1; w <= 6; ++w) CHECK(counts.at(std::to_string(w)) == 2 * (7 - w));
  }

  TEST_CASE("a missing file is named in the error") {
    pymar::text::Params params{{"/nonexistent/pymar/book.txt"}, {}};
    CHECK_THROWS_WITH_AS(pymar::text::Lines::full_length(params),
                         doctest::Contains("cannot read '/nonexistent/pymar/book.txt'"),
                         pymar::text::Error);
  }

  TEST_CASE("a file that changed size since the job started fails its slice") {
    TempDir dir;
    const std::string file = dir.write("book", "one two\n");
    pymar::text::Params params{{file}, {8}};
    CHECK(read_slice(params, 0, 8) == std::vector<std::string>{"one two"});
    dir.write("book", "one two three\n");
    CHECK_THROWS_WITH_AS(read_slice(params, 0, 8), doctest::Contains("files must not change"),
                         pymar::text::Error);
  }

  TEST_CASE("words are the runs of non-space characters") {
    std::vector<std::string> found;
    for (std::string_view w : pymar::text::words("  one\ttwo  three\r\n")) found.emplace_back(w);
    CHECK(found == std::vector<std::string>{"one", "two", "three"});
    CHECK(pymar::text::words("").begin() == std::default_sentinel);
    CHECK(pymar::text::words(" \t ").begin() == std::default_sentinel);
    // A temporary string outlives the loop over its words (a view of it would dangle).
    auto make = [] { return std::string("  made  on   the fly ") + std::string(100, 'x'); };
    std::vector<std::string> made;
    for (std::string_view w : pymar::text::words(make())) made.emplace_back(w);
    CHECK(made == std::vector<std::string>{"made", "on", "the", "fly", std::string(100, 'x')});
    const auto kept = pymar::text::words(make());
    const auto copy = kept;
    CHECK(std::ranges::distance(copy) == 5);
    static_assert(std::ranges::forward_range<pymar::text::Words>);
    static_assert(std::ranges::input_range<pymar::text::LineRange>);
  }
}
