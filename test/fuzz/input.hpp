// The layout of a fuzz input, shared by the fuzz target and the seed corpus generator.
//
// byte 0: which decoder (Target, modulo kTargets); byte 1: the number of payload frames that
// follow the header, for wire::decode, and a bound for some value decoders; bytes 2...: the bytes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <pymar/codec.hpp>

namespace pymar::fuzz {

enum class Target : std::uint8_t {
  wire = 0,          ///< wire::decode(header, frames)
  int64 = 1,         ///< decode<std::int64_t>
  real = 2,          ///< decode<double>
  text = 3,          ///< decode<std::string>
  int64_vector = 4,  ///< decode<std::vector<std::int64_t>>
  counts = 5,        ///< decode<std::map<std::string, std::int64_t>>
  record = 6,        ///< decode<Record>, a struct with MSGPACK_DEFINE
  nested = 7,        ///< nested vectors, under limits as a worker sets them for a slice
  params = 8,        ///< decode<Params>, source parameters as the test task has them
};
inline constexpr unsigned kTargets = 9;

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

/// A fuzz input for `target`.
inline std::string input(Target target, std::uint8_t frames, const std::string& bytes) {
  std::string out;
  out += static_cast<char>(target);
  out += static_cast<char>(frames);
  out += bytes;
  return out;
}

}  // namespace pymar::fuzz
