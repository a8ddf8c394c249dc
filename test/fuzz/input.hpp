// The layout of a fuzz input, shared by the fuzz target and the seed corpus generator.
//
// byte 0: which decoder (Target, modulo kTargets); byte 1: the number of payload frames that
// follow the header, for wire::decode, and a bound for some value decoders; bytes 2...: the bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <pymar/codec.hpp>

namespace pymar::fuzz {

enum class Target : std::uint8_t {
  wire = 0,           ///< wire::decode(header, frames)
  int64 = 1,          ///< decode<std::int64_t>
  real = 2,           ///< decode<double>
  text = 3,           ///< decode<std::string>
  int64_vector = 4,   ///< decode<std::vector<std::int64_t>>
  counts = 5,         ///< decode<std::map<std::string, std::int64_t>>
  record = 6,         ///< decode<Record>, a struct with MSGPACK_DEFINE
  nested = 7,         ///< nested vectors, under limits as a worker sets them for a slice
  params = 8,         ///< decode<Params>, source parameters as the test task has them
  envelope = 9,       ///< read_inbound: frames as the producer's ROUTER receives them (frames())
  raw_payload = 10,   ///< check_raw_payload(size, element size, limit) (raw_sizes())
  sql_params = 11,    ///< decode<pymar::sql::Params>, as a worker decodes the SQL source's
  text_params = 12,   ///< decode<pymar::text::Params>
  mongo_params = 13,  ///< decode<pymar::mongo::Params>
};
inline constexpr unsigned kTargets = 14;

/// A user's struct value, with nested containers.
struct Record {
  std::string name;
  std::vector<double> values;
  std::int64_t count = 0;
  std::map<std::string, std::vector<std::int64_t>> groups;
  MSGPACK_DEFINE(name, values, count, groups)
};

/// Source parameters of the shape test/task/test_task.cpp ships to its workers.
struct Params {
  std::uint64_t length = 0;
  std::int64_t throw_at = -1;
  std::int64_t segv_at = -1;
  std::string segv_marker;
  std::int64_t slow_at = -1;
  std::int64_t slow_ms = 0;
  std::int64_t retry_ms = 0;
  std::string slow_marker;
  bool constructor_throws = false;
  MSGPACK_DEFINE(length, throw_at, segv_at, segv_marker, slow_at, slow_ms, retry_ms, slow_marker,
                 constructor_throws)
};

/// Target::envelope: byte 1 (modulo 8) + 1 frames, each but the last preceded by its length
/// (2 bytes, big-endian, cut to what is left); the last frame takes the rest.
inline std::vector<std::string_view> frames(std::uint8_t count, std::string_view bytes) {
  std::vector<std::string_view> out;
  const std::size_t n = count % 8u + 1;
  while (out.size() + 1 < n && bytes.size() >= 2) {
    const std::size_t length = std::min<std::size_t>(
        (static_cast<std::size_t>(static_cast<unsigned char>(bytes[0])) << 8) |
            static_cast<unsigned char>(bytes[1]),
        bytes.size() - 2);
    out.push_back(bytes.substr(2, length));
    bytes.remove_prefix(2 + length);
  }
  out.push_back(bytes);
  return out;
}

/// The inverse of frames(), for seeds: `count` is what byte 1 must be.
inline std::string envelope(const std::vector<std::string>& parts, std::uint8_t& count) {
  std::string out;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    out += static_cast<char>(parts[i].size() >> 8);
    out += static_cast<char>(parts[i].size() & 0xff);
    out += parts[i];
  }
  out += parts.back();
  count = static_cast<std::uint8_t>(parts.size() - 1);
  return out;
}

/// Target::raw_payload: the payload's size and the slice's limit, 8 bytes each (big-endian);
/// byte 1 is the element size.
struct RawSizes {
  std::uint64_t payload_bytes = 0;
  std::uint64_t limit = 0;
};
inline RawSizes raw_sizes(std::string_view bytes) {
  auto read = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (std::size_t i = at; i < at + 8; ++i) {
      v = v << 8 | (i < bytes.size() ? static_cast<unsigned char>(bytes[i]) : 0u);
    }
    return v;
  };
  return {read(0), read(8)};
}
inline std::string raw_sizes_input(RawSizes sizes) {
  std::string out;
  for (const std::uint64_t v : {sizes.payload_bytes, sizes.limit}) {
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>(v >> shift);
  }
  return out;
}

/// A fuzz input for `target`.
inline std::string input(Target target, std::uint8_t frames, const std::string& bytes) {
  std::string out;
  out += static_cast<char>(target);
  out += static_cast<char>(frames);
  out += bytes;
  return out;
}

}  // namespace pymar::fuzz
