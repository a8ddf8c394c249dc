// The parameters of the MongoDB plugin's source, as they travel to every worker: a header of
// their own, without <ranges>, so that the fuzz target (clang) decodes them as workers do.
#pragma once

#include <cstdint>
#include <string>

#include <pymar/codec.hpp>

namespace pymar::mongo {

/// Where a source's documents come from. Travels to every worker (msgpack-encoded). Every
/// member has a default, so designated initialisers may name only those they set.
struct Params {
  /// `mongodb://[user:password@]host[:port][/?options]`. Each worker connects from its own
  /// machine: `localhost` there is the worker's machine.
  std::string uri{};
  std::string database{};
  std::string collection{};
  /// Which documents: a query in (relaxed or canonical) extended JSON, `{"year": {"$gte": 2000}}`.
  /// Empty: all of them.
  std::string filter{};
  /// Which fields: extended JSON, `{"text": 1}`. Empty: whole documents.
  std::string projection{};
  /// How long to look for a server before failing (serverSelectionTimeoutMS and
  /// connectTimeoutMS), unless the URI sets them itself.
  std::int32_t server_selection_timeout_ms = 5000;
  MSGPACK_DEFINE(uri, database, collection, filter, projection, server_selection_timeout_ms)
};

}  // namespace pymar::mongo
