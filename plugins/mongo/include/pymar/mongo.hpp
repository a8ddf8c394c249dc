// The MongoDB data-source plugin: the documents of a collection as a Pymar DataSource.
//
//   struct Books : pymar::mongo::Source { using Source::Source; };
//   REGISTER_DATASOURCE(Books);
//   ...
//   pymar::mongo::Params params{.uri = "mongodb://dbhost", .database = "library",
//                               .collection = "books", .projection = R"({"text": 1})"};
//   auto counts = WordCount().map(pymar::factory<Books>(params));
//
// Each worker connects on its own and reads only its own slice of the documents (those that
// match `filter`), in `_id` order. A document reaches map_fn as a pymar::mongo::Document, whose
// fields read as C++ values: `book.get<std::string>("text")`, `book.find<int>("year")`.
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/data_source.hpp>
#include <pymar/error.hpp>
#include <pymar/pull_range.hpp>

#include "pymar/mongo/params.hpp"

namespace pymar::mongo {

/// Base of every error of the MongoDB plugin. A worker's exception reaches the producer's `map`
/// as a pymar::SliceError carrying the type name and the message.
class Error : public pymar::Error {
 public:
  using pymar::Error::Error;
};

/// The server could not be reached in time (see Params::server_selection_timeout_ms), refused
/// the credentials, or the URI is not valid.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

/// The filter or projection is not valid JSON, the collection does not exist, or the server
/// refused the query.
class QueryError : public Error {
 public:
  using Error::Error;
};

/// A field is missing, or does not convert to the C++ type it is read as.
class FieldError : public Error {
 public:
  using Error::Error;
};

/// A BSON ObjectId (the usual `_id`).
struct ObjectId {
  std::array<std::uint8_t, 12> bytes{};
  /// The 24 hexadecimal digits.
  std::string hex() const;
  auto operator<=>(const ObjectId&) const = default;
};

class Document;

namespace detail {

/// The BSON type of a field, as far as conversion cares.
enum class FieldType : std::uint8_t {
  missing,
  null,
  boolean,
  int32,
  int64,
  real,  // BSON double
  string,
  object_id,
  date,
  document,
  array,
  other,
};

/// A field found in a document; views into the document's bytes.
struct Field {
  FieldType type = FieldType::missing;
  bool boolean = false;
  std::int64_t integer = 0;  // int32, int64, and date (milliseconds since the epoch)
  double real = 0;
  std::string_view text;                // string
  std::array<std::uint8_t, 12> oid{};   // object_id
  std::span<const std::uint8_t> bytes;  // document, array: their BSON
  std::string_view type_name;           // BSON's name of the type, for messages
};

/// The field at a dotted path ("author.name", "tags.0") of a BSON document.
Field field_at(std::span<const std::uint8_t> bson, std::string_view path);
/// The elements of an array field, in order.
std::vector<Field> elements_of(const Field& array);

[[noreturn]] void throw_missing(const Document& document, std::string_view path,
                                const std::string& target);
[[noreturn]] void throw_unconvertible(const Document& document, std::string_view path,
                                      const Field& field, const std::string& target);
[[noreturn]] void throw_out_of_range(const Document& document, std::string_view path,
                                     const Field& field, const std::string& target);

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};

template <class T>
constexpr bool is_character =
    std::same_as<T, char> || std::same_as<T, wchar_t> || std::same_as<T, char8_t> ||
    std::same_as<T, char16_t> || std::same_as<T, char32_t>;

using TimePoint = std::chrono::system_clock::time_point;

template <class T>
constexpr bool is_plain_field = std::same_as<T, bool> ||
                                (std::integral<T> && !is_character<T>) || std::floating_point<T> ||
                                std::same_as<T, std::string> || std::same_as<T, ObjectId> ||
                                std::same_as<T, TimePoint> || std::same_as<T, Document>;

template <class T>
constexpr bool is_field = is_plain_field<T>;
template <class T>
constexpr bool is_field<std::optional<T>> = is_field<T> && !IsOptional<T>::value;
template <class T>
constexpr bool is_field<std::vector<T>> = is_field<T> && !IsOptional<T>::value;

}  // namespace detail

/// A C++ type a field reads as: bool; an integer type (from int32, int64, or a double holding a
/// whole number; range-checked); float or double (from double, int32, int64); std::string;
/// ObjectId; std::chrono::system_clock::time_point (from a date); Document (from an embedded
/// document); std::vector of one of these (from an array); std::optional of one of these
/// (empty when the field is missing or null).
template <class T>
concept FieldValue = detail::is_field<T>;

/// How a C++ type is named in messages.
template <FieldValue T>
std::string type_label() {
  if constexpr (detail::IsOptional<T>::value) {
    return "std::optional<" + type_label<typename T::value_type>() + ">";
  } else if constexpr (detail::IsVector<T>::value) {
    return "std::vector<" + type_label<typename T::value_type>() + ">";
  } else if constexpr (std::same_as<T, bool>) {
    return "bool";
  } else if constexpr (std::integral<T>) {
    return std::string(std::is_signed_v<T> ? "std::int" : "std::uint") +
           std::to_string(sizeof(T) * 8) + "_t";
  } else if constexpr (std::floating_point<T>) {
    return sizeof(T) == sizeof(float) ? "float" : "double";
  } else if constexpr (std::same_as<T, std::string>) {
    return "std::string";
  } else if constexpr (std::same_as<T, ObjectId>) {
    return "pymar::mongo::ObjectId";
  } else if constexpr (std::same_as<T, detail::TimePoint>) {
    return "std::chrono::system_clock::time_point";
  } else {
    return "pymar::mongo::Document";
  }
}

/// One BSON document, owned. Fields are read by dotted path as C++ values (see FieldValue).
class Document {
 public:
  /// The empty document.
  Document() = default;
  /// A copy of `size` bytes of BSON. Throws Error when they are not one valid document.
  static Document from_bson(const std::uint8_t* data, std::size_t size);
  /// Parses extended JSON. Throws Error naming the position of a syntax error.
  static Document from_json(std::string_view json);

  /// The field at `path` ("text", "author.name", "tags.0") as a T. Throws FieldError when it is
  /// missing (unless T is a std::optional) or does not convert.
  template <FieldValue T>
  T get(std::string_view path) const {
    return convert<T>(detail::field_at(bytes(), path), path);
  }

  /// The field at `path` as a T, or nullopt when it is missing or null. Throws FieldError when
  /// it is there but does not convert.
  template <FieldValue T>
  requires(!detail::IsOptional<T>::value) std::optional<T> find(std::string_view path)
  const { return get<std::optional<T>>(path); }

  /// Whether the document has a field at `path` (null counts).
  bool contains(std::string_view path) const;

  /// The document as relaxed extended JSON.
  std::string json() const;

  /// The document's BSON bytes.
  std::span<const std::uint8_t> bytes() const noexcept { return bson_; }

  bool operator==(const Document& other) const = default;

 private:
  template <FieldValue T>
  T convert(const detail::Field& f, std::string_view path) const;

  std::vector<std::uint8_t> bson_;  // empty: the empty document
};

template <FieldValue T>
T Document::convert(const detail::Field& f, std::string_view path) const {
  using detail::FieldType;
  if constexpr (detail::IsOptional<T>::value) {
    if (f.type == FieldType::missing || f.type == FieldType::null) return std::nullopt;
    return convert<typename T::value_type>(f, path);
  } else {
    if (f.type == FieldType::missing) detail::throw_missing(*this, path, type_label<T>());
    if constexpr (std::same_as<T, bool>) {
      if (f.type == FieldType::boolean) return f.boolean;
    } else if constexpr (std::integral<T>) {
      if (f.type == FieldType::int32 || f.type == FieldType::int64) {
        if (!std::in_range<T>(f.integer))
          detail::throw_out_of_range(*this, path, f, type_label<T>());
        return static_cast<T>(f.integer);
      }
      if (f.type == FieldType::real) {
        // Shells and JSON store numbers as doubles: a whole one reads as an integer.
        constexpr double two63 = 9223372036854775808.0;
        const double d = f.real;
        if (d >= -two63 && d < two63 && static_cast<double>(static_cast<std::int64_t>(d)) == d &&
            std::in_range<T>(static_cast<std::int64_t>(d))) {
          return static_cast<T>(static_cast<std::int64_t>(d));
        }
        detail::throw_out_of_range(*this, path, f, type_label<T>());
      }
    } else if constexpr (std::floating_point<T>) {
      if (f.type == FieldType::real) return static_cast<T>(f.real);
      if (f.type == FieldType::int32 || f.type == FieldType::int64)
        return static_cast<T>(f.integer);
    } else if constexpr (std::same_as<T, std::string>) {
      if (f.type == FieldType::string) return std::string(f.text);
    } else if constexpr (std::same_as<T, ObjectId>) {
      if (f.type == FieldType::object_id) return ObjectId{f.oid};
    } else if constexpr (std::same_as<T, detail::TimePoint>) {
      if (f.type == FieldType::date) {
        return detail::TimePoint(std::chrono::duration_cast<detail::TimePoint::duration>(
            std::chrono::milliseconds(f.integer)));
      }
    } else if constexpr (std::same_as<T, Document>) {
      if (f.type == FieldType::document) return from_bson(f.bytes.data(), f.bytes.size());
    } else {
      if (f.type == FieldType::array) {
        T out;
        std::size_t index = 0;
        for (const detail::Field& element : detail::elements_of(f)) {
          out.push_back(convert<typename T::value_type>(
              element, std::string(path) + "." + std::to_string(index++)));
        }
        return out;
      }
    }
    detail::throw_unconvertible(*this, path, f, type_label<T>());
  }
}

namespace detail {
struct Cursor;
struct CursorDeleter {
  void operator()(Cursor* cursor) const noexcept;
};
using CursorPtr = std::unique_ptr<Cursor, CursorDeleter>;
/// Moves to the next document into `out`; false at the end. Throws ConnectionError, QueryError.
bool next(Cursor& cursor, Document& out);
}  // namespace detail

/// The documents of one slice, read as the range is iterated: a single-pass (input) range of
/// `const Document&`, each valid until the iterator moves on.
class Documents : public PullRange<Documents, Document> {
 public:
  /// No documents (a slice of no elements).
  Documents() = default;
  explicit Documents(detail::CursorPtr cursor) : cursor_(std::move(cursor)) {}

  /// The next document into `out`; false after the last. Called by PullRange.
  bool read(Document& out) { return cursor_ && detail::next(*cursor_, out); }

 private:
  detail::CursorPtr cursor_;
};

/// The query a slice runs: `find(filter, options)`, both as relaxed extended JSON.
struct SliceRequest {
  std::string filter;
  std::string options;
};

/// The query of slice [offset, offset + limit): the filter, sorted by _id, skipping `offset`
/// documents and returning `limit`, with the projection. Throws QueryError when the filter or
/// projection is not valid JSON.
SliceRequest slice_request(const Params& params, std::size_t offset, std::size_t limit);

/// The number of documents that match the filter. Throws ConnectionError when no server answers
/// within the timeout, QueryError when the collection does not exist or the filter is refused.
std::size_t count_documents(const Params& params);

/// Connects (a client of its own) and starts slice [offset, offset + limit).
detail::CursorPtr open_slice(const Params& params, std::size_t offset, std::size_t limit);

/// A data source over a collection: derive from it (`using Source::Source;`) or register it
/// directly, and give pymar::factory a Params. A slice's elements are Documents.
class Source : public pymar::DataSource {
 public:
  using Params = mongo::Params;

  explicit Source(Params params) : params_(std::move(params)) {}

  /// The number of documents that match the filter (see count_documents).
  static std::size_t full_length(const Params& params) { return count_documents(params); }

  /// This slice's documents, in _id order.
  Documents items() const {
    if (limit == 0) return Documents();
    return Documents(open_slice(params_, offset, limit));
  }

  const Params& params() const noexcept { return params_; }

 private:
  Params params_;
};

}  // namespace pymar::mongo
