// The MongoDB plugin on the MongoDB C driver: BSON fields as C++ values, the query of a slice,
// and cursors that fail within the server-selection timeout rather than hang.
#include <mongoc/mongoc.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "pymar/mongo.hpp"

namespace pymar::mongo {
namespace {

// mongoc_init once per process, before the first client; mongoc_cleanup is left to process exit,
// as clients of other threads may outlive any static object.
void init_driver() {
  static std::once_flag once;
  std::call_once(once, [] { mongoc_init(); });
}

template <class T, void (*Destroy)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept {
    if (p) Destroy(p);
  }
};
// An owned bson_t. (Not a std::unique_ptr: bson_t carries an alignment attribute that a
// template argument would drop, which GCC warns about.)
class Bson {
 public:
  explicit Bson(bson_t* bson) : bson_(bson) {}
  ~Bson() {
    if (bson_) bson_destroy(bson_);
  }
  Bson(Bson&& other) noexcept : bson_(std::exchange(other.bson_, nullptr)) {}
  Bson(const Bson&) = delete;
  Bson& operator=(const Bson&) = delete;
  Bson& operator=(Bson&&) = delete;

  bson_t* get() const noexcept { return bson_; }
  bson_t* operator->() const noexcept { return bson_; }
  explicit operator bool() const noexcept { return bson_ != nullptr; }

 private:
  bson_t* bson_;
};
using Uri = std::unique_ptr<mongoc_uri_t, Deleter<mongoc_uri_t, mongoc_uri_destroy>>;
using Client = std::unique_ptr<mongoc_client_t, Deleter<mongoc_client_t, mongoc_client_destroy>>;
using Collection =
    std::unique_ptr<mongoc_collection_t, Deleter<mongoc_collection_t, mongoc_collection_destroy>>;
using Database =
    std::unique_ptr<mongoc_database_t, Deleter<mongoc_database_t, mongoc_database_destroy>>;
using MongoCursor =
    std::unique_ptr<mongoc_cursor_t, Deleter<mongoc_cursor_t, mongoc_cursor_destroy>>;

std::string json_of(const bson_t* bson) {
  char* text = bson_as_relaxed_extended_json(bson, nullptr);
  std::string out = text ? text : "";
  bson_free(text);
  return out;
}

// `uri` with any password replaced by "***", for messages.
std::string redact(std::string_view uri) {
  std::string out(uri);
  const auto scheme = out.find("://");
  if (scheme == std::string::npos) return out;
  const auto start = scheme + 3;
  const auto end = std::min(out.find_first_of("/?", start), out.size());
  const auto at = out.rfind('@', end);
  if (at != std::string::npos && at >= start) {
    const auto colon = out.find(':', start);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  return out;
}

std::string where(const Params& p) {
  return fmt::format("MongoDB source {} {}.{}", redact(p.uri), p.database, p.collection);
}

// Extended JSON to BSON; empty text is the empty document.
Bson parse(const Params& p, std::string_view what, const std::string& json) {
  if (json.empty()) return Bson(bson_new());
  bson_error_t error;
  Bson out(bson_new_from_json(reinterpret_cast<const std::uint8_t*>(json.data()),
                              static_cast<ssize_t>(json.size()), &error));
  if (!out) {
    throw QueryError(fmt::format("{}: the {} is not valid extended JSON: {} (in: {})", where(p),
                                 what, error.message, json));
  }
  return out;
}

// The error of a failed call: ConnectionError when no server could be reached or the
// credentials were refused, QueryError otherwise.
[[noreturn]] void fail(const Params& p, std::string_view doing, const bson_error_t& error) {
  if (error.domain == MONGOC_ERROR_SERVER_SELECTION || error.domain == MONGOC_ERROR_STREAM) {
    throw ConnectionError(fmt::format(
        "{}: cannot reach the server to {}: {} (each worker connects from its own machine: "
        "'localhost' there is the worker's machine)",
        where(p), doing, error.message));
  }
  if (error.domain == MONGOC_ERROR_CLIENT && error.code == MONGOC_ERROR_CLIENT_AUTHENTICATE) {
    throw ConnectionError(
        fmt::format("{}: the server refused the credentials: {}", where(p), error.message));
  }
  throw QueryError(fmt::format("{}: cannot {}: {}", where(p), doing, error.message));
}

Client connect(const Params& p) {
  init_driver();
  if (p.uri.empty())
    throw ConnectionError("MongoDB source: no URI: set Params::uri (mongodb://host)");
  if (p.database.empty() || p.collection.empty()) {
    throw QueryError(fmt::format("{}: set Params::database and Params::collection", where(p)));
  }
  bson_error_t error;
  Uri uri(mongoc_uri_new_with_error(p.uri.c_str(), &error));
  if (!uri) {
    throw ConnectionError(
        fmt::format("MongoDB source {}: invalid URI: {}", redact(p.uri), error.message));
  }
  // Bounded waiting: the driver's defaults (30 s to select a server) would look like a hang.
  if (p.server_selection_timeout_ms > 0) {
    if (!mongoc_uri_has_option(uri.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS)) {
      mongoc_uri_set_option_as_int32(uri.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                     p.server_selection_timeout_ms);
    }
    if (!mongoc_uri_has_option(uri.get(), MONGOC_URI_CONNECTTIMEOUTMS)) {
      mongoc_uri_set_option_as_int32(uri.get(), MONGOC_URI_CONNECTTIMEOUTMS,
                                     p.server_selection_timeout_ms);
    }
  }
  Client client(mongoc_client_new_from_uri_with_error(uri.get(), &error));
  if (!client) {
    throw ConnectionError(fmt::format("{}: cannot make a client: {}", where(p), error.message));
  }
  mongoc_client_set_error_api(client.get(), MONGOC_ERROR_API_VERSION_2);
  mongoc_client_set_appname(client.get(), "pymar");
  return client;
}

Collection collection_of(const Params& p, mongoc_client_t* client) {
  return Collection(mongoc_client_get_collection(client, p.database.c_str(), p.collection.c_str()));
}

std::string_view type_name(bson_type_t type) {
  switch (type) {
    case BSON_TYPE_DOUBLE:
      return "a double";
    case BSON_TYPE_UTF8:
      return "a string";
    case BSON_TYPE_DOCUMENT:
      return "a document";
    case BSON_TYPE_ARRAY:
      return "an array";
    case BSON_TYPE_BINARY:
      return "binary data";
    case BSON_TYPE_OID:
      return "an ObjectId";
    case BSON_TYPE_BOOL:
      return "a boolean";
    case BSON_TYPE_DATE_TIME:
      return "a date";
    case BSON_TYPE_NULL:
      return "null";
    case BSON_TYPE_REGEX:
      return "a regular expression";
    case BSON_TYPE_INT32:
      return "an int32";
    case BSON_TYPE_TIMESTAMP:
      return "a timestamp";
    case BSON_TYPE_INT64:
      return "an int64";
    case BSON_TYPE_DECIMAL128:
      return "a decimal128";
    default:
      return "a value of another BSON type";
  }
}

detail::Field field_of(const bson_iter_t& iter) {
  detail::Field f;
  const bson_type_t type = bson_iter_type(&iter);
  f.type_name = type_name(type);
  switch (type) {
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
      f.type = detail::FieldType::null;
      break;
    case BSON_TYPE_BOOL:
      f.type = detail::FieldType::boolean;
      f.boolean = bson_iter_bool(&iter);
      break;
    case BSON_TYPE_INT32:
      f.type = detail::FieldType::int32;
      f.integer = bson_iter_int32(&iter);
      break;
    case BSON_TYPE_INT64:
      f.type = detail::FieldType::int64;
      f.integer = bson_iter_int64(&iter);
      break;
    case BSON_TYPE_DOUBLE:
      f.type = detail::FieldType::real;
      f.real = bson_iter_double(&iter);
      break;
    case BSON_TYPE_UTF8: {
      std::uint32_t length = 0;
      const char* text = bson_iter_utf8(&iter, &length);
      f.type = detail::FieldType::string;
      f.text = std::string_view(text, length);
      break;
    }
    case BSON_TYPE_OID:
      f.type = detail::FieldType::object_id;
      std::memcpy(f.oid.data(), bson_iter_oid(&iter)->bytes, 12);
      break;
    case BSON_TYPE_DATE_TIME:
      f.type = detail::FieldType::date;
      f.integer = bson_iter_date_time(&iter);
      break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
      std::uint32_t length = 0;
      const std::uint8_t* data = nullptr;
      if (type == BSON_TYPE_DOCUMENT) {
        bson_iter_document(&iter, &length, &data);
        f.type = detail::FieldType::document;
      } else {
        bson_iter_array(&iter, &length, &data);
        f.type = detail::FieldType::array;
      }
      f.bytes = std::span<const std::uint8_t>(data, length);
      break;
    }
    default:
      f.type = detail::FieldType::other;
  }
  return f;
}

// A short readable form of a field's value, for messages: `a string ("1999")`.
std::string value_of(const detail::Field& f) {
  using detail::FieldType;
  switch (f.type) {
    case FieldType::boolean:
      return fmt::format("{} ({})", f.type_name, f.boolean);
    case FieldType::int32:
    case FieldType::int64:
      return fmt::format("{} ({})", f.type_name, f.integer);
    case FieldType::real:
      return fmt::format("{} ({})", f.type_name, f.real);
    case FieldType::string:
      return fmt::format("{} (\"{}{}\")", f.type_name, f.text.substr(0, 60),
                         f.text.size() > 60 ? "..." : "");
    case FieldType::object_id:
      return fmt::format("{} ({})", f.type_name, ObjectId{f.oid}.hex());
    default:
      return std::string(f.type_name);
  }
}

// The document named by its _id, for messages.
std::string name_of(const Document& document) {
  const detail::Field id = detail::field_at(document.bytes(), "_id");
  switch (id.type) {
    case detail::FieldType::missing:
      return "a document without _id";
    case detail::FieldType::object_id:
      return fmt::format("the document with _id ObjectId(\"{}\")", ObjectId{id.oid}.hex());
    case detail::FieldType::string:
      return fmt::format("the document with _id \"{}\"", id.text);
    case detail::FieldType::int32:
    case detail::FieldType::int64:
      return fmt::format("the document with _id {}", id.integer);
    default:
      return fmt::format("the document with _id of {}", id.type_name);
  }
}

}  // namespace

std::string ObjectId::hex() const {
  std::string out;
  for (std::uint8_t b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

// --- Document ----------------------------------------------------------------------------------

Document Document::from_bson(const std::uint8_t* data, std::size_t size) {
  bson_t view;
  if (!bson_init_static(&view, data, size) || !bson_validate(&view, BSON_VALIDATE_NONE, nullptr)) {
    throw Error("MongoDB document: the bytes are not a valid BSON document");
  }
  Document out;
  out.bson_.assign(data, data + size);
  return out;
}

Document Document::from_json(std::string_view json) {
  bson_error_t error;
  Bson bson(bson_new_from_json(reinterpret_cast<const std::uint8_t*>(json.data()),
                               static_cast<ssize_t>(json.size()), &error));
  if (!bson)
    throw Error(fmt::format("MongoDB document: not valid extended JSON: {}", error.message));
  return from_bson(bson_get_data(bson.get()), bson->len);
}

bool Document::contains(std::string_view path) const {
  return detail::field_at(bytes(), path).type != detail::FieldType::missing;
}

std::string Document::json() const {
  if (bson_.empty()) return "{ }";
  bson_t view;
  bson_init_static(&view, bson_.data(), bson_.size());
  return json_of(&view);
}

namespace detail {

Field field_at(std::span<const std::uint8_t> bson, std::string_view path) {
  if (bson.empty()) return {};
  bson_iter_t iter;
  bson_iter_t found;
  const std::string dotted(path);
  if (!bson_iter_init_from_data(&iter, bson.data(), bson.size()) ||
      !bson_iter_find_descendant(&iter, dotted.c_str(), &found)) {
    return {};
  }
  return field_of(found);
}

std::vector<Field> elements_of(const Field& array) {
  std::vector<Field> out;
  bson_iter_t iter;
  if (array.type != FieldType::array ||
      !bson_iter_init_from_data(&iter, array.bytes.data(), array.bytes.size())) {
    return out;
  }
  while (bson_iter_next(&iter)) out.push_back(field_of(iter));
  return out;
}

void throw_missing(const Document& document, std::string_view path, const std::string& target) {
  throw FieldError(fmt::format(
      "MongoDB document: field '{}' of {} is missing: read it as std::optional<{}> (or with "
      "find()) if it may be",
      path, name_of(document), target));
}

void throw_unconvertible(const Document& document, std::string_view path, const Field& field,
                         const std::string& target) {
  throw FieldError(
      fmt::format("MongoDB document: field '{}' of {} holds {}, which does not convert to {}", path,
                  name_of(document), value_of(field), target));
}

void throw_out_of_range(const Document& document, std::string_view path, const Field& field,
                        const std::string& target) {
  throw FieldError(
      fmt::format("MongoDB document: field '{}' of {} holds {}, which is not a {} value", path,
                  name_of(document), value_of(field), target));
}

// --- cursors -----------------------------------------------------------------------------------

struct Cursor {
  Params params;  // for messages
  Client client;
  Collection collection;
  MongoCursor cursor;
};

void CursorDeleter::operator()(Cursor* cursor) const noexcept {
  // Members go in reverse order: the cursor before its collection and client.
  delete cursor;
}

bool next(Cursor& c, Document& out) {
  const bson_t* document = nullptr;
  if (mongoc_cursor_next(c.cursor.get(), &document)) {
    out = Document::from_bson(bson_get_data(document), document->len);
    return true;
  }
  bson_error_t error;
  if (mongoc_cursor_error(c.cursor.get(), &error)) fail(c.params, "read documents", error);
  return false;
}

}  // namespace detail

// --- the queries of a source -------------------------------------------------------------------

SliceRequest slice_request(const Params& params, std::size_t offset, std::size_t limit) {
  Bson filter = parse(params, "filter", params.filter);
  Bson projection = parse(params, "projection", params.projection);
  Bson options(bson_new());
  // _id is unique and always indexed: sorting by it makes slices a fixed partition.
  bson_t sort;
  BSON_APPEND_DOCUMENT_BEGIN(options.get(), "sort", &sort);
  BSON_APPEND_INT32(&sort, "_id", 1);
  bson_append_document_end(options.get(), &sort);
  BSON_APPEND_INT64(options.get(), "skip", static_cast<std::int64_t>(offset));
  BSON_APPEND_INT64(options.get(), "limit", static_cast<std::int64_t>(limit));
  if (!params.projection.empty())
    BSON_APPEND_DOCUMENT(options.get(), "projection", projection.get());
  return {json_of(filter.get()), json_of(options.get())};
}

std::size_t count_documents(const Params& params) {
  Bson filter = parse(params, "filter", params.filter);
  Client client = connect(params);
  bson_error_t error;
  // A collection that does not exist reads as empty: say so instead of counting 0.
  Database database(mongoc_client_get_database(client.get(), params.database.c_str()));
  Bson name_filter(BCON_NEW("filter", "{", "name", BCON_UTF8(params.collection.c_str()), "}"));
  char** names =
      mongoc_database_get_collection_names_with_opts(database.get(), name_filter.get(), &error);
  // A user allowed to read the collection but not to list collections (Unauthorized, code 13)
  // skips the check rather than fail.
  constexpr std::uint32_t kUnauthorized = 13;
  if (names == nullptr && !(error.domain == MONGOC_ERROR_SERVER && error.code == kUnauthorized)) {
    fail(params, "list the collections", error);
  }
  const bool exists = names == nullptr || names[0] != nullptr;
  if (names) bson_strfreev(names);
  if (!exists) {
    throw QueryError(fmt::format("{}: collection '{}' does not exist in database '{}'",
                                 where(params), params.collection, params.database));
  }
  Collection collection = collection_of(params, client.get());
  const std::int64_t count = mongoc_collection_count_documents(collection.get(), filter.get(),
                                                               nullptr, nullptr, nullptr, &error);
  if (count < 0) fail(params, "count the documents", error);
  return static_cast<std::size_t>(count);
}

detail::CursorPtr open_slice(const Params& params, std::size_t offset, std::size_t limit) {
  const SliceRequest request = slice_request(params, offset, limit);
  Bson filter = parse(params, "filter", params.filter);
  Bson options = parse(params, "options", request.options);
  detail::CursorPtr c(new detail::Cursor{params, connect(params), nullptr, nullptr});
  c->collection = collection_of(params, c->client.get());
  c->cursor = MongoCursor(
      mongoc_collection_find_with_opts(c->collection.get(), filter.get(), options.get(), nullptr));
  return c;
}

}  // namespace pymar::mongo
