#include <algorithm>

#include "pymar/codec.hpp"

namespace pymar::detail {

msgpack::object_handle unpack_bounded(std::string_view bytes, const DecodeLimits& limits) {
  // Every element takes at least one byte on the wire (a map entry two), so no honest input
  // declares more elements than it has bytes: capping counts by size bounds what msgpack allocates.
  const std::size_t size = bytes.size();
  const msgpack::unpack_limit limit(std::min(limits.max_array, size),
                                    std::min(limits.max_map, size / 2),
                                    std::min(limits.max_str, size), std::min(limits.max_bin, size),
                                    std::min<std::size_t>(size, 1 << 20), limits.max_depth);
  std::size_t offset = 0;
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(bytes.data(), size, offset, nullptr, nullptr, limit);
  } catch (const msgpack::insufficient_bytes&) {
    throw DecodeError("truncated msgpack data");
  } catch (const std::exception& e) {
    throw DecodeError(std::string("malformed msgpack data (") + e.what() + ")");
  }
  if (offset != size) {
    throw DecodeError("trailing bytes after a msgpack value");
  }
  return handle;
}

}  // namespace pymar::detail
