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
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

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

/// Unpacks exactly one msgpack object spanning all of `bytes`, under `limits`, into `zone`.
/// Strings and binaries in the result point into `bytes`, which must outlive it.
/// Throws DecodeError on malformed, truncated, oversized or trailing input.
msgpack::object unpack_bounded(msgpack::zone& zone, std::string_view bytes,
                               const DecodeLimits& limits);

/// The zone a decode on this thread unpacks into: the thread's own, emptied and kept for the
/// next decode (a small value then decodes without allocating: a producer decodes every
/// partial value twice, and a job may have millions), or a zone of its own for a decode inside
/// another one (a user's adaptor that calls decode).
class ScratchZone {
 public:
  ScratchZone();
  ~ScratchZone();
  ScratchZone(const ScratchZone&) = delete;
  ScratchZone& operator=(const ScratchZone&) = delete;
  msgpack::zone& get() { return *zone_; }

 private:
  msgpack::zone* zone_;
  std::unique_ptr<msgpack::zone> own_;  // when nested
};

/// Throws DecodeError when `bytes` (well-formed msgpack or not) declares more objects than
/// `limits` let a value of its size decode into; allocates nothing. Senders call it on what
/// they encode, so that a value its receiver would refuse fails where it is made.
void check_decode_cost(std::string_view bytes, const DecodeLimits& limits = {});

/// The integer types std::in_range takes: not bool, nor the character types.
template <class T>
constexpr bool kStandardInteger =
    std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> &&
    !std::is_same_v<T, wchar_t> && !std::is_same_v<T, char8_t> && !std::is_same_v<T, char16_t> &&
    !std::is_same_v<T, char32_t>;

/// `bytes` read as one msgpack integer or float, when that is all they are and T holds the
/// value as msgpack's own conversion would give it; nullopt for anything else, which then takes
/// the general path (and its errors). Partial values are often one number: a producer decodes
/// each twice, and a job may have millions.
template <class T>
std::optional<T> decode_scalar(std::string_view bytes) {
  if (bytes.empty()) return std::nullopt;
  const auto tag = static_cast<unsigned char>(bytes[0]);
  const std::size_t rest = bytes.size() - 1;
  auto big_endian = [&](std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 1; i <= n; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
    return v;
  };
  if constexpr (kStandardInteger<T>) {
    std::size_t size = 0;  // bytes after the tag
    bool negative_form = false;
    if (tag <= 0x7f || tag >= 0xe0) {
      size = 0;  // fixint: the value is the tag
    } else if (tag >= 0xcc && tag <= 0xcf) {
      size = std::size_t{1} << (tag - 0xcc);
    } else if (tag >= 0xd0 && tag <= 0xd3) {
      size = std::size_t{1} << (tag - 0xd0);
      negative_form = true;
    } else {
      return std::nullopt;
    }
    if (rest != size) return std::nullopt;
    auto held = [](auto value) -> std::optional<T> {
      if (!std::in_range<T>(value)) return std::nullopt;  // msgpack's conversion refuses it
      return static_cast<T>(value);
    };
    if (tag >= 0xe0) return held(static_cast<std::int8_t>(tag));
    if (size == 0) return held(tag);
    const std::uint64_t raw = big_endian(size);
    if (!negative_form) return held(raw);
    // Signed forms: sign-extended from `size` bytes.
    const unsigned shift = static_cast<unsigned>(64 - 8 * size);
    return held(static_cast<std::int64_t>(raw << shift) >> shift);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (tag == 0xcb && rest == 8) {
      const std::uint64_t raw = big_endian(8);
      double value;
      std::memcpy(&value, &raw, sizeof value);
      return static_cast<T>(value);
    }
    if (tag == 0xca && rest == 4) {
      const auto raw = static_cast<std::uint32_t>(big_endian(4));
      float value;
      std::memcpy(&value, &raw, sizeof value);
      return static_cast<T>(value);
    }
  }
  return std::nullopt;
}

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
  if constexpr (std::is_arithmetic_v<T>) {
    if (const std::optional<T> value = detail::decode_scalar<T>(bytes)) return *value;
  }
  detail::ScratchZone zone;
  const msgpack::object object = detail::unpack_bounded(zone.get(), bytes, limits);
  try {
    return object.as<T>();
  } catch (const std::exception& e) {
    throw DecodeError(std::string("value does not have the expected shape (") + e.what() + ")");
  }
}

}  // namespace pymar
