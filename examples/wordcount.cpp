// Word count over text files. The files are cut into byte ranges, one per slice, and each worker
// reads only its own range: a line belongs to the slice that holds its first byte, so every line
// is counted once however the cuts fall.
//
//   wordcount --produce -w 4 -- [--top N] [FILE...]
//
// The files follow `--` (by default the GPL-3 text that every Debian system has). Workers read
// the files under the same paths, so on other machines they must be there too. The answer is
// the most frequent words, `word:count`, the most frequent first: N of them (10 by default, 0
// for all).
#include <algorithm>
#include <cstdint>
#include <map>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pymar/pymar.hpp>
#include <pymar/text.hpp>

REGISTER_DATASOURCE(pymar::text::Lines);

using Counts = std::map<std::string, std::int64_t>;

Counts count_words(std::string_view line) {
  Counts counts;
  for (std::string_view word : pymar::text::words(line)) ++counts[std::string(word)];
  return counts;
}

struct WordCount : pymar::Producer<WordCount> {
  static constexpr std::size_t WORKERS_NUMBER = 8;

  static auto map_fn(auto&& lines) { return lines | std::views::transform(count_words); }

  static Counts reduce_fn(auto&& counts) {
    Counts total;
    for (const Counts& some : counts) {
      for (const auto& [word, n] : some) total[word] += n;
    }
    return total;
  }
};
REGISTER_PRODUCER(WordCount);

// "word:count" for the `top` most frequent words (all when top is 0), the most frequent first.
std::string most_frequent(const Counts& counts, std::size_t top) {
  std::vector<std::pair<std::string, std::int64_t>> words(counts.begin(), counts.end());
  std::ranges::stable_sort(words, std::ranges::greater{},
                           &std::pair<std::string, std::int64_t>::second);
  if (top != 0 && words.size() > top) words.resize(top);
  std::vector<std::string> shown;
  for (const auto& [word, n] : words) shown.push_back(fmt::format("{}:{}", word, n));
  return fmt::format("{}", fmt::join(shown, " "));
}

int main(int argc, char** argv) {
  return pymar::main(argc, argv, [](const pymar::Arguments& args) {
    pymar::text::Params files;
    std::size_t top = 10;
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--top" && i + 1 < args.size()) {
        top = std::stoul(args[++i]);
      } else {
        files.files.push_back(args[i]);
      }
    }
    if (files.files.empty()) files.files.push_back("/usr/share/common-licenses/GPL-3");
    const Counts counts = WordCount().map(pymar::factory<pymar::text::Lines>(files));
    fmt::print("Answer: {}\n", most_frequent(counts, top));
  });
}
