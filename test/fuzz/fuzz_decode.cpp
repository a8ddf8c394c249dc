// libFuzzer target for every decoder of bytes that come from a peer: wire::decode (any message
// type, any number of payload frames) and pymar::decode<T> for the value types a task may use.
//
// Input layout (see input.hpp): byte 0 chooses the decoder, byte 1 the payload frame count for
// wire::decode; the rest is the bytes decoded. Whatever decodes is encoded again and must decode
// to the same encoding: a decoder may reject anything, but what it accepts it must keep.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <pymar/codec.hpp>

#include "fuzz/input.hpp"
#include "wire/protocol.hpp"

namespace {

namespace wire = pymar::wire;
using pymar::fuzz::Target;

// A decoder accepted bytes whose re-encoding it does not give back the same: a bug.
[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_decode: %s\n", what);
  std::abort();
}

void fuzz_wire(std::string_view header, std::size_t payload_frames) {
  wire::Message message;
  try {
    message = wire::decode(header, payload_frames);
  } catch (const wire::ProtocolError&) {
    return;
  }
  (void)wire::type_name(message);
  // The message is of the type its header names (READY is 1, ASSIGN 2, ...).
  const msgpack::object_handle header_object = msgpack::unpack(header.data(), header.size());
  if (header_object.get().via.array.ptr[1].via.u64 != message.index() + 1) {
    broken("the message is not of the type its header names");
  }
  const std::string once = wire::encode(message);
  wire::Message again;
  try {
    again = wire::decode(once, payload_frames);
  } catch (const wire::ProtocolError&) {
    broken("a decoded message does not decode after encoding");
  }
  if (again.index() != message.index()) broken("the message type changed");
  if (wire::encode(again) != once) broken("the encoding changed");
}

// msgpack-c 4.1.3's packer converts a double d <= double(UINT64_MAX) to uint64_t to see whether
// it is integral, which for d == 2^64 (== double(UINT64_MAX) after rounding) is undefined
// behaviour. Only encoding is affected, not decoding: such values are not encoded again here.
template <class T>
bool unpackable(const T&) {
  return false;
}
bool unpackable(double d) {
  return d == 0x1p64;
}
bool unpackable(const pymar::fuzz::Record& r) {
  return std::any_of(r.values.begin(), r.values.end(), [](double d) { return unpackable(d); });
}
template <class T>
bool unpackable(const std::vector<T>& values) {
  return std::any_of(values.begin(), values.end(), [](const T& v) { return unpackable(v); });
}

// Compares encodings rather than values, so that a NaN is equal to itself.
template <class T>
void fuzz_value(std::string_view bytes, const pymar::DecodeLimits& limits = {}) {
  T value;
  try {
    value = pymar::decode<T>(bytes, limits);
  } catch (const pymar::DecodeError&) {
    return;
  }
  if (unpackable(value)) return;
  const std::string once = pymar::encode(value);
  try {
    if (pymar::encode(pymar::decode<T>(once, limits)) != once) broken("the value changed");
  } catch (const pymar::DecodeError&) {
    broken("a decoded value does not decode after encoding");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto target = static_cast<Target>(data[0] % pymar::fuzz::kTargets);
  const std::size_t frames = data[1];
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  using namespace pymar::fuzz;
  switch (target) {
    case Target::wire:
      fuzz_wire(bytes, frames);
      break;
    case Target::int64:
      fuzz_value<std::int64_t>(bytes);
      break;
    case Target::real:
      fuzz_value<double>(bytes);
      break;
    case Target::text:
      fuzz_value<std::string>(bytes);
      break;
    case Target::int64_vector:
      fuzz_value<std::vector<std::int64_t>>(bytes);
      break;
    case Target::counts:
      fuzz_value<std::map<std::string, std::int64_t>>(bytes);
      break;
    case Target::record:
      fuzz_value<Record>(bytes);
      break;
    case Target::nested: {
      // As a worker decodes in-memory slices: arrays bounded by the slice's limit.
      pymar::DecodeLimits limits;
      limits.max_array = frames * 4;
      limits.max_depth = 8;
      fuzz_value<std::vector<std::vector<std::vector<std::int64_t>>>>(bytes, limits);
      fuzz_value<std::vector<Record>>(bytes);
      break;
    }
    case Target::params:
      fuzz_value<Params>(bytes);
      break;
  }
  return 0;
}
