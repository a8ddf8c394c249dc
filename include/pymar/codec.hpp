// Encoding of values, parameters and in-memory slices with msgpack, and bounded decoding.
//
// Any type msgpack-c can pack and convert travels: numbers, strings, std containers, user structs
// with MSGPACK_DEFINE, and types given an adaptor by the user (see pymar/int128.hpp).
#pragma once

#include "pymar/detail/config.hpp"

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST  // Pymar never needs msgpack's Boost adaptors; do not require Boost.
#endif
#include <msgpack.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "pymar/error.hpp"

namespace pymar {

/// Bounds checked while decoding bytes that came from another process, before anything is
/// allocated: a forged length can never make a peer allocate more than a small multiple of the
/// bytes it actually received. Container counts are further capped by the input size.
///
/// The decoded msgpack objects take 24 bytes each (strings and binaries are not copied: they
/// point into the input), and a value of B bytes may decode into at most
/// `object_floor + B / bytes_per_object` of them: with the defaults, at most 8 × B + 24 MiB,
/// checked by a counting pass that allocates nothing. (Without the cap, B bytes of nils would
/// make 24 × B.) Converting the objects into C++ values then costs what those values take.
struct DecodeLimits {
  std::size_t max_array = std::size_t{1} << 28;     ///< elements in one array
  std::size_t max_map = std::size_t{1} << 24;       ///< entries in one map
  std::size_t max_str = std::size_t{1} << 30;       ///< bytes in one string
  std::size_t max_bin = std::size_t{1} << 30;       ///< bytes in one binary
  std::size_t max_depth = 64;                       ///< nesting of arrays and maps
  std::size_t object_floor = std::size_t{1} << 20;  ///< objects any value may decode into
  std::size_t bytes_per_object = 3;                 ///< beyond the floor, one per this many bytes

  /// The most msgpack objects a value of `bytes` bytes may decode into.
  std::size_t max_objects(std::size_t bytes) const {
    return object_floor + bytes / std::max<std::size_t>(bytes_per_object, 1);
  }
};

namespace detail {

/// Adapts std::string to the write(const char*, size_t) interface msgpack's packer expects.
struct StringSink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};

/// Unpacks exactly one msgpack object spanning all of `bytes`, under `limits`. Strings and
/// binaries in the result point into `bytes`, which must outlive it.
/// Throws DecodeError on malformed, truncated, oversized or trailing input.
msgpack::object_handle unpack_bounded(std::string_view bytes, const DecodeLimits& limits);

/// Throws DecodeError when `bytes` (well-formed msgpack or not) declares more objects than
/// `limits` let a value of its size decode into; allocates nothing. Senders call it on what
/// they encode, so that a value its receiver would refuse fails where it is made.
void check_decode_cost(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace detail

/// Appends the msgpack encoding of `value` to `out`.
template <class T>
void encode(const T& value, std::string& out) {
  detail::StringSink sink{out};
  msgpack::pack(sink, value);
}

/// Returns the msgpack encoding of `value`.
template <class T>
std::string encode(const T& value) {
  std::string out;
  encode(value, out);
  return out;
}

/// Decodes a T from bytes produced by `encode<T>`. Throws DecodeError if they do not hold one
/// well-formed T within `limits`.
template <class T>
T decode(std::string_view bytes, const DecodeLimits& limits = {}) {
  msgpack::object_handle handle = detail::unpack_bounded(bytes, limits);
  try {
    return handle.get().as<T>();
  } catch (const std::exception& e) {
    throw DecodeError(std::string("value does not have the expected shape (") + e.what() + ")");
  }
}

}  // namespace pymar
