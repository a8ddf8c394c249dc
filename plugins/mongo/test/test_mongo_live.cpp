// The MongoDB plugin against a live server, when PYMAR_TEST_MONGODB_URI names one (no server
// runs on the project's machines: without it this program says so and reports "skipped").
// Each run loads six books into a collection of its own in the database pymar_test, and drops it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <mongoc/mongoc.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <ranges>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <pymar/mongo.hpp>
#include <pymar/pymar.hpp>
#include <pymar/text.hpp>

#include "support/process.hpp"

using namespace pymar::mongo;

namespace {

std::string server_uri() {
  const char* uri = std::getenv("PYMAR_TEST_MONGODB_URI");
  return uri ? uri : "";
}

// Six books: "one", "one two", ..., "one two three four five six", with year 2000 + i.
class Library {
 public:
  Library() {
    mongoc_init();
    client_ = mongoc_client_new(server_uri().c_str());
    REQUIRE(client_ != nullptr);
    params_.uri = server_uri();
    params_.database = "pymar_test";
    params_.collection = fmt::format("books_{}", getpid());
    collection_ =
        mongoc_client_get_collection(client_, params_.database.c_str(), params_.collection.c_str());
    drop();
    const char* words[] = {"one", "two", "three", "four", "five", "six"};
    std::string text;
    for (int i = 0; i < 6; ++i) {
      text += (i ? " " : "") + std::string(words[i]);
      bson_t* book = BCON_NEW("title", BCON_UTF8(words[i]), "text", BCON_UTF8(text.c_str()), "year",
                              BCON_INT32(2000 + i));
      bson_error_t error;
      const bool inserted =
          mongoc_collection_insert_one(collection_, book, nullptr, nullptr, &error);
      bson_destroy(book);
      REQUIRE_MESSAGE(inserted, error.message);
    }
  }
  ~Library() {
    drop();
    mongoc_collection_destroy(collection_);
    mongoc_client_destroy(client_);
  }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  const Params& params() const { return params_; }

 private:
  void drop() { mongoc_collection_drop(collection_, nullptr); }

  mongoc_client_t* client_ = nullptr;
  mongoc_collection_t* collection_ = nullptr;
  Params params_;
};

using Counts = std::map<std::string, std::int64_t>;

struct Books : Source {
  using Source::Source;
};
REGISTER_DATASOURCE(Books);

struct WordCount : pymar::Producer<WordCount> {
  static constexpr std::size_t WORKERS_NUMBER = 4;
  static auto map_fn(auto&& books) {
    return books | std::views::transform([](const Document& book) {
             Counts counts;
             for (auto word : pymar::text::words(book.get<std::string>("text")))
               ++counts[std::string(word)];
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

std::vector<std::string> titles_of_slice(const Params& params, std::size_t offset,
                                         std::size_t limit) {
  Source books(params);
  books.offset = offset;
  books.limit = limit;
  std::vector<std::string> titles;
  for (const Document& book : books.items()) titles.push_back(book.get<std::string>("title"));
  return titles;
}

}  // namespace

TEST_SUITE("mongo live") {
  TEST_CASE("documents are counted with the filter") {
    Library library;
    CHECK(count_documents(library.params()) == 6);
    Params recent = library.params();
    recent.filter = R"({"year": {"$gte": 2003}})";
    CHECK(count_documents(recent) == 3);
  }

  TEST_CASE("slices hold every document once, in _id order") {
    Library library;
    const std::vector<std::string> all = {"one", "two", "three", "four", "five", "six"};
    for (std::size_t parts = 1; parts <= 8; ++parts) {
      CAPTURE(parts);
      std::vector<std::string> seen;
      const std::size_t count = std::min<std::size_t>(parts, 6);
      std::size_t offset = 0;
      for (std::size_t i = 0; i < count; ++i) {
        const std::size_t limit = 6 / count + (i < 6 % count ? 1 : 0);
        for (auto& title : titles_of_slice(library.params(), offset, limit)) seen.push_back(title);
        offset += limit;
      }
      CHECK(seen == all);
    }
  }

  TEST_CASE("the projection keeps only the fields asked for") {
    Library library;
    Params p = library.params();
    p.projection = R"({"text": 1})";
    Source books(p);
    books.offset = 0;
    books.limit = 1;
    for (const Document& book : books.items()) {
      CHECK(book.get<std::string>("text") == "one");
      CHECK_FALSE(book.contains("title"));
      CHECK(book.contains("_id"));
    }
  }

  TEST_CASE("a map counts the words of the books") {
    Library library;
    const Counts counts = WordCount().map(pymar::factory<Books>(library.params()));
    CHECK(counts ==
          Counts{{"one", 6}, {"two", 5}, {"three", 4}, {"four", 3}, {"five", 2}, {"six", 1}});
  }

  TEST_CASE("a collection that does not exist is an error, not zero documents") {
    Library library;
    Params p = library.params();
    p.collection = "pymar_no_such_collection";
    CHECK_THROWS_WITH_AS(count_documents(p),
                         doctest::Contains("collection 'pymar_no_such_collection' does not exist"),
                         QueryError);
  }

  TEST_CASE("wordcount_mongo answers right with a pool of 3 worker processes" *
            doctest::timeout(120)) {
    using namespace pymar::test;
    Library library;
    const std::string queue = fmt::format("127.0.0.1:{}", free_port());
    const std::string task = binary("examples/wordcount_mongo");
    Process pool({task, "--worker", "-q", queue, "-w", "3"});
    Process producer({task, "--produce", "-q", queue, "--grace", "60", "--", library.params().uri,
                      library.params().database, library.params().collection});
    const auto status = producer.wait();
    INFO("producer stderr:\n" << producer.err());
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(line_after(producer.out(), "Answer: ") == "one:6 two:5 three:4 four:3 five:2 six:1");
    CHECK(producer.err().find("locally") == std::string::npos);
  }
}

int main(int argc, char** argv) {
  if (server_uri().empty()) {
    std::printf(
        "skipped: PYMAR_TEST_MONGODB_URI is not set, so the live MongoDB tests did not run "
        "(set it to mongodb://HOST[:PORT] of a server they may write to)\n");
    return 77;  // meson's "skipped"
  }
  doctest::Context context(argc, argv);
  return context.run();
}
