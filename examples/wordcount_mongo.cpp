// Word count over a MongoDB collection of books: each worker connects on its own and reads only
// its own slice of the books, in _id order, fetching only their "text" field.
//
//   wordcount_mongo --produce -w 4 -- [URI [DATABASE [COLLECTION]]]
//
// The URI (mongodb://localhost:27017 by default), the database (pymar) and the collection
// (books) say where the books are; each has a string field "text". They are given to the
// producer only; workers receive them with the job, and connect from their
// own machines: `localhost` there means the worker's machine. Six books "one", "one two", ...,
// "one two three four five six" give: Answer: one:6 two:5 three:4 four:3 five:2 six:1
#include <algorithm>
#include <cstdint>
#include <map>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pymar/mongo.hpp>
#include <pymar/pymar.hpp>
#include <pymar/text.hpp>

struct Books : pymar::mongo::Source {
  using Source::Source;
};
REGISTER_DATASOURCE(Books);

using Counts = std::map<std::string, std::int64_t>;

Counts count_words(std::string_view text) {
  Counts counts;
  for (std::string_view word : pymar::text::words(text)) ++counts[std::string(word)];
  return counts;
}

struct WordCount : pymar::Producer<WordCount> {
  static constexpr std::size_t WORKERS_NUMBER = 4;

  static auto map_fn(auto&& books) {
    return books | std::views::transform([](const pymar::mongo::Document& book) {
             return count_words(book.get<std::string>("text"));
           });
  }

  static Counts reduce_fn(auto&& counts) {
    Counts total;
    for (const Counts& some : counts) {
      for (const auto& [word, n] : some) total[word] += n;
    }
    return total;
  }
};
REGISTER_PRODUCER(WordCount);

// "word:count" for every word, the most frequent first.
std::string by_frequency(const Counts& counts) {
  std::vector<std::pair<std::string, std::int64_t>> words(counts.begin(), counts.end());
  std::ranges::stable_sort(words, std::ranges::greater{},
                           &std::pair<std::string, std::int64_t>::second);
  std::vector<std::string> shown;
  for (const auto& [word, n] : words) shown.push_back(fmt::format("{}:{}", word, n));
  return fmt::format("{}", fmt::join(shown, " "));
}

int main(int argc, char** argv) {
  return pymar::main(argc, argv, [](const pymar::Arguments& args) {
    auto argument = [&](std::size_t i, const char* fallback) {
      return i < args.size() ? args[i] : std::string(fallback);
    };
    const pymar::mongo::Params books{
        .uri = argument(0, "mongodb://localhost:27017"),
        .database = argument(1, "pymar"),
        .collection = argument(2, "books"),
        .projection = R"({"text": 1})",
    };
    fmt::print("Answer: {}\n", by_frequency(WordCount().map(pymar::factory<Books>(books))));
  });
}
