// libFuzzer target for every decoder of bytes that come from a peer: wire::decode (any message
// type, any number of payload frames), the producer's reading of a ROUTER message (identity,
// header, payload frames: read_inbound), a worker's size check of raw slices, and
// pymar::decode<T> for the value types a task may use and the plugins' source parameters.
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
#include <variant>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/detail/raw_payload.hpp>
#include <pymar/mongo/params.hpp>
#include <pymar/sql/params.hpp>
#include <pymar/text/params.hpp>

#include "fuzz/input.hpp"
#include "producer/inbound.hpp"
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

// The producer's reading of a ROUTER message: whatever the frames, it never throws, and what
// it keeps holds together.
void fuzz_envelope(std::uint8_t count, std::string_view bytes) {
  const std::vector<std::string_view> frames = pymar::fuzz::frames(count, bytes);
  const pymar::detail::Inbound in = pymar::detail::read_inbound(frames);
  if (in.identity != frames[0]) broken("the identity is not the first frame");
  if (!in.message) {
    if (in.problem.empty() || in.problem_kind.empty()) broken("a message dropped without reason");
    return;
  }
  if (frames.size() < 2) broken("kept a message without a header frame");
  // A RESULT's values are the payload frames cut in order (a frame may carry several values, so
  // their count is not the frames'); any other message has no values.
  std::string payload_bytes;
  for (std::size_t i = 2; i < frames.size(); ++i) payload_bytes += frames[i];
  std::string value_bytes;
  for (const std::string_view v : in.values) value_bytes += v;
  if (value_bytes != payload_bytes) broken("the values are not the payload frames, in order");
  if (!std::holds_alternative<wire::Result>(*in.message) && !in.values.empty()) {
    broken("values kept for a message that carries none");
  }
  if (!pymar::detail::sent_by_workers(*in.message)) broken("kept a message workers do not send");
  // Every text a peer controls is printable: no control character reaches a log line.
  auto printable = [](std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) {
      const auto byte = static_cast<unsigned char>(c);
      return byte >= 0x20 && byte < 0x7f;
    });
  };
  if (const auto* ready = std::get_if<wire::Ready>(&*in.message)) {
    if (!printable(ready->build) || !printable(ready->task) || !printable(ready->host)) {
      broken("a READY's texts are not printable");
    }
  } else if (const auto* result = std::get_if<wire::Result>(&*in.message)) {
    // One value per ok outcome, in order, of the size it says: what the scheduler indexes.
    const auto ok = static_cast<std::size_t>(std::count_if(
        result->outcomes.begin(), result->outcomes.end(), [](const auto& o) { return o.ok; }));
    if (ok != in.values.size()) broken("a RESULT's values do not match its ok outcomes");
    std::size_t next_value = 0;
    for (const wire::Outcome& o : result->outcomes) {
      if (o.ok && in.values[next_value++].size() != o.value_bytes) {
        broken("a RESULT's value is not of the size its outcome says");
      }
      if (!o.ok && (!printable(o.error_type) || !printable(o.error_message))) {
        broken("a RESULT's error texts are not printable");
      }
    }
  } else if (const auto* bye = std::get_if<wire::Bye>(&*in.message)) {
    if (!printable(bye->reason)) broken("a BYE's reason is not printable");
  }
}

// A worker's check of a raw slice's size: accepts exactly the payloads of `limit` elements.
void fuzz_raw_payload(std::size_t element_size, std::string_view bytes) {
  const pymar::fuzz::RawSizes sizes = pymar::fuzz::raw_sizes(bytes);
  const auto payload = static_cast<std::size_t>(sizes.payload_bytes);
  bool accepted = true;
  try {
    pymar::detail::check_raw_payload(payload, element_size, sizes.limit);
  } catch (const pymar::DecodeError&) {
    accepted = false;
  }
  const unsigned __int128 wanted = static_cast<unsigned __int128>(sizes.limit) * element_size;
  const bool exact = element_size > 0 && wanted == payload;
  if (accepted != exact) broken("a raw payload's size check is wrong");
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
    case Target::envelope:
      fuzz_envelope(data[1], bytes);
      break;
    case Target::raw_payload:
      fuzz_raw_payload(frames, bytes);
      break;
    case Target::sql_params:
      fuzz_value<pymar::sql::Params>(bytes);
      break;
    case Target::text_params:
      fuzz_value<pymar::text::Params>(bytes);
      break;
    case Target::mongo_params:
      fuzz_value<pymar::mongo::Params>(bytes);
      break;
  }
  return 0;
}
