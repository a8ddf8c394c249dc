// The MongoDB plugin without a server: documents read as C++ values, the queries slices run, and
// a server that is not there fails in bounded time with a message that says so.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/mongo.hpp>

#include "support/process.hpp"

using namespace pymar::mongo;

namespace {

const char* const kBook = R"({
  "_id": {"$oid": "65f0a1b2c3d4e5f601234567"},
  "title": "One",
  "year": 1999,
  "big": {"$numberLong": "5000000000"},
  "price": 2.5,
  "whole": 3.0,
  "ok": true,
  "tags": ["a", "b"],
  "scores": [1, 2, 3],
  "author": {"name": "X", "born": {"$date": "1970-01-01T00:00:01Z"}},
  "nothing": null
})";

template <class F>
double seconds_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The message of the ConnectionError `f` throws, and how long it took to come.
template <class F>
std::pair<std::string, double> connection_failure(F&& f) {
  std::string message;
  const double seconds = seconds_of([&] {
    try {
      f();
    } catch (const ConnectionError& e) {
      message = e.what();
    }
  });
  return {message, seconds};
}

Params unreachable(std::string uri = "mongodb://127.0.0.1:1") {
  Params p;
  p.uri = std::move(uri);
  p.database = "pymar";
  p.collection = "books";
  p.server_selection_timeout_ms = 300;
  return p;
}

}  // namespace

TEST_SUITE("mongo") {
  TEST_CASE("document fields read as C++ values") {
    const Document book = Document::from_json(kBook);
    CHECK(book.get<std::string>("title") == "One");
    CHECK(book.get<int>("year") == 1999);
    CHECK(book.get<double>("year") == 1999.0);
    CHECK(book.get<std::int64_t>("big") == 5'000'000'000);
    CHECK(book.get<double>("price") == 2.5);
    CHECK(book.get<int>("whole") == 3);  // a whole double, as shells store numbers
    CHECK(book.get<bool>("ok"));
    CHECK(book.get<std::vector<std::string>>("tags") == std::vector<std::string>{"a", "b"});
    CHECK(book.get<std::vector<int>>("scores") == std::vector<int>{1, 2, 3});
    CHECK(book.get<std::string>("tags.1") == "b");
    CHECK(book.get<std::string>("author.name") == "X");
    CHECK(book.get<Document>("author").get<std::string>("name") == "X");
    CHECK(book.get<std::chrono::system_clock::time_point>("author.born") ==
          std::chrono::system_clock::time_point(std::chrono::seconds(1)));
    CHECK(book.get<ObjectId>("_id").hex() == "65f0a1b2c3d4e5f601234567");
  }

  TEST_CASE("missing and null fields read as empty optionals") {
    const Document book = Document::from_json(kBook);
    CHECK_FALSE(book.find<int>("missing").has_value());
    CHECK_FALSE(book.find<int>("nothing").has_value());
    CHECK_FALSE(book.get<std::optional<std::string>>("author.missing").has_value());
    CHECK(book.find<std::string>("title") == "One");
    CHECK(book.contains("nothing"));
    CHECK(book.contains("author.born"));
    CHECK_FALSE(book.contains("missing"));
    CHECK_FALSE(Document().contains("_id"));
    CHECK_FALSE(Document().find<int>("x").has_value());
  }

  TEST_CASE("a field that does not convert names the field, the document and the types") {
    const Document book = Document::from_json(kBook);
    CHECK_THROWS_WITH_AS(book.get<int>("title"),
                         "MongoDB document: field 'title' of the document with _id "
                         "ObjectId(\"65f0a1b2c3d4e5f601234567\") holds a string (\"One\"), which "
                         "does not convert to std::int32_t",
                         FieldError);
    CHECK_THROWS_WITH_AS(book.get<std::string>("missing"),
                         doctest::Contains("field 'missing' of the document with _id "
                                           "ObjectId(\"65f0a1b2c3d4e5f601234567\") is missing: "
                                           "read it as std::optional<std::string>"),
                         FieldError);
    CHECK_THROWS_WITH_AS(book.get<std::int32_t>("big"),
                         doctest::Contains("holds an int64 (5000000000), which is not a "
                                           "std::int32_t value"),
                         FieldError);
    CHECK_THROWS_WITH_AS(book.get<int>("price"),
                         doctest::Contains("holds a double (2.5), which is not a std::int32_t"),
                         FieldError);
    CHECK_THROWS_WITH_AS(book.get<std::vector<int>>("tags"), doctest::Contains("field 'tags.0'"),
                         FieldError);
    CHECK_THROWS_WITH_AS(book.get<std::string>("nothing"),
                         doctest::Contains("holds null, which does not convert to std::string"),
                         FieldError);
    CHECK_THROWS_WITH_AS(book.get<bool>("author"),
                         doctest::Contains("holds a document, which does not convert to bool"),
                         FieldError);
  }

  TEST_CASE("documents round-trip through JSON and BSON") {
    const Document book = Document::from_json(kBook);
    CHECK(Document::from_json(book.json()) == book);
    CHECK(Document::from_bson(book.bytes().data(), book.bytes().size()) == book);
    CHECK_THROWS_WITH_AS(Document::from_json("{\"a\": "),
                         doctest::Contains("not valid extended JSON"), Error);
    const std::uint8_t garbage[] = {9, 0, 0, 0, 42, 0, 0, 0, 0};
    CHECK_THROWS_AS(Document::from_bson(garbage, sizeof garbage), Error);
  }

  TEST_CASE("a slice is the filter's documents in _id order, skipped to its offset") {
    Params p;
    p.uri = "mongodb://localhost";
    p.database = "library";
    p.collection = "books";
    p.filter = R"({"year": {"$gte": 2000}})";
    p.projection = R"({"text": 1})";
    const SliceRequest request = slice_request(p, 10, 5);
    CHECK(request.filter == R"({ "year" : { "$gte" : 2000 } })");
    CHECK(request.options ==
          R"({ "sort" : { "_id" : 1 }, "skip" : 10, "limit" : 5, "projection" : { "text" : 1 } })");

    Params all = p;
    all.filter.clear();
    all.projection.clear();
    const SliceRequest whole = slice_request(all, 0, 3);
    CHECK(whole.filter == "{ }");
    CHECK(whole.options == R"({ "sort" : { "_id" : 1 }, "skip" : 0, "limit" : 3 })");

    p.filter = R"({"year": )";
    CHECK_THROWS_WITH_AS(slice_request(p, 0, 1),
                         doctest::Contains("the filter is not valid extended JSON"), QueryError);
    p.filter.clear();
    p.projection = "[1, 2";
    CHECK_THROWS_WITH_AS(slice_request(p, 0, 1),
                         doctest::Contains("the projection is not valid extended JSON"),
                         QueryError);
  }

  TEST_CASE("parameters travel to workers unchanged") {
    Params p{"mongodb://h", "d", "c", R"({"a": 1})", R"({"b": 1})", 1234};
    const Params q = pymar::decode<Params>(pymar::encode(p));
    CHECK(q.uri == p.uri);
    CHECK(q.database == p.database);
    CHECK(q.collection == p.collection);
    CHECK(q.filter == p.filter);
    CHECK(q.projection == p.projection);
    CHECK(q.server_selection_timeout_ms == 1234);
  }

  TEST_CASE("a server that does not answer fails within the selection timeout" *
            doctest::timeout(60)) {
    SUBCASE("nothing listens on the port") {
      const auto [message, seconds] = connection_failure([] { count_documents(unreachable()); });
      CHECK(message.find(
                "MongoDB source mongodb://127.0.0.1:1 pymar.books: cannot reach the server") !=
            std::string::npos);
      CHECK(message.find("No suitable servers") != std::string::npos);
      CHECK(seconds < 10);
    }
    SUBCASE("an address that does not answer at all") {
      // Packets to this address go nowhere (or the network is unreachable at once): either way
      // the connect and selection timeouts bound the wait.
      const auto [message, seconds] =
          connection_failure([] { count_documents(unreachable("mongodb://10.255.255.1:27017")); });
      CHECK(message.find("cannot") != std::string::npos);
      CHECK(seconds < 10);
    }
    SUBCASE("the URI's own timeout wins") {
      Params p = unreachable("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200");
      p.server_selection_timeout_ms = 600'000;
      const auto [message, seconds] = connection_failure([&] { count_documents(p); });
      CHECK(message.find("No suitable servers") != std::string::npos);
      CHECK(seconds < 10);
    }
    SUBCASE("a worker's slice") {
      Source books(unreachable());
      books.offset = 0;
      books.limit = 3;
      const auto [message, seconds] = connection_failure([&] {
        for ([[maybe_unused]] const Document& book : books.items()) {
        }
      });
      CHECK(message.find("cannot reach the server to read documents") != std::string::npos);
      CHECK(seconds < 10);
    }
    SUBCASE("the password is hidden") {
      const auto [message, seconds] = connection_failure(
          [] { count_documents(unreachable("mongodb://reader:secret@127.0.0.1:1")); });
      CHECK(message.find("mongodb://reader:***@127.0.0.1:1") != std::string::npos);
      CHECK(message.find("secret") == std::string::npos);
      CHECK(seconds < 10);
    }
  }

  TEST_CASE("a configuration that cannot reach a collection says what is wrong") {
    Params p = unreachable("mongo://127.0.0.1");
    CHECK_THROWS_WITH_AS(count_documents(p), doctest::Contains("invalid URI"), ConnectionError);
    p.uri.clear();
    CHECK_THROWS_WITH_AS(count_documents(p), doctest::Contains("set Params::uri"), ConnectionError);
    p = unreachable();
    p.collection.clear();
    CHECK_THROWS_WITH_AS(count_documents(p),
                         doctest::Contains("set Params::database and Params::collection"),
                         QueryError);
    p = unreachable();
    p.filter = "{";
    CHECK_THROWS_WITH_AS(count_documents(p),
                         doctest::Contains("the filter is not valid extended JSON"), QueryError);
  }

  TEST_CASE("a slice of no elements reads nothing and connects nowhere") {
    Source books(unreachable());
    books.offset = 5;
    books.limit = 0;
    CHECK(books.items().begin() == std::default_sentinel);
  }

  TEST_CASE("wordcount_mongo stops with a clear error when the server is not there" *
            doctest::timeout(60)) {
    using namespace pymar::test;
    Process producer({binary("examples/wordcount_mongo"), "--local", "--",
                      "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"});
    const auto status = producer.wait(std::chrono::seconds(30));
    INFO("stderr:\n" << producer.err());
    REQUIRE(status.has_value());
    CHECK(*status == 1);
    CHECK(producer.err().find("MongoDB source mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300 "
                              "pymar.books: cannot") != std::string::npos);
    CHECK(producer.out().find("Answer") == std::string::npos);
  }
}
