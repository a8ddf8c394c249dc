#include <algorithm>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "pymar/codec.hpp"

namespace pymar::detail {
namespace {

// Counts the elements that containers declare against the bytes there are. Every element takes
// at least one byte (a map entry two) and is in one container, so honest input never declares
// more elements in all than it has bytes. Capping each container's count by the size is not
// enough: each of `max_depth` nested containers may claim that many at once, and the unpacker
// allocates for a container as soon as it meets its header. The count stops where the unpacker
// would stop too (too deep), so that the parser's own stack stays small.
class DeclaredElements : public msgpack::null_visitor {
 public:
  DeclaredElements(std::size_t budget, std::size_t max_depth)
      : budget_(budget), max_depth_(max_depth) {}
  bool start_array(std::uint32_t count) { return open(count); }
  bool start_map(std::uint32_t count) { return open(2 * std::size_t{count}); }
  bool end_array() { return close(); }
  bool end_map() { return close(); }
  bool exceeded() const { return exceeded_; }

 private:
  bool open(std::size_t count) {
    if (count > budget_) {
      exceeded_ = true;
      return false;  // stops the parse
    }
    budget_ -= count;
    return ++depth_ <= max_depth_;
  }
  bool close() {
    --depth_;
    return true;
  }
  std::size_t budget_;
  std::size_t max_depth_;
  std::size_t depth_ = 0;
  bool exceeded_ = false;
};

// Below this size, what nested containers can claim is too little to be worth a second pass.
constexpr std::size_t kCountElementsAbove = 1024;

// Strings, binaries and extensions point into the input instead of being copied into the
// zone: the decoded objects then take 24 bytes each and nothing more.
bool reference_in_place(msgpack::type::object_type, std::size_t, void*) {
  return true;
}

}  // namespace

void check_decode_cost(std::string_view bytes, const DecodeLimits& limits) {
  const std::size_t size = bytes.size();
  if (size <= kCountElementsAbove) return;
  // Objects other than the outermost value are the elements containers declare; each takes at
  // least a byte (so never more than size - 1 of them), and at most max_objects in all.
  const std::size_t budget = std::min(size - 1, limits.max_objects(size) - 1);
  DeclaredElements declared(budget, limits.max_depth);
  std::size_t parsed = 0;
  // Malformed input is left to the unpacker, which says what is wrong with it.
  (void)msgpack::parse(bytes.data(), size, parsed, declared);
  if (declared.exceeded()) {
    throw DecodeError(fmt::format(
        "{} bytes of msgpack declare more elements than the {} objects a value of that size "
        "may decode into",
        size, budget + 1));
  }
}

msgpack::object unpack_bounded(msgpack::zone& zone, std::string_view bytes,
                               const DecodeLimits& limits) {
  // Every element takes at least one byte on the wire (a map entry two), so no honest input
  // declares more elements than it has bytes: capping counts by size bounds what msgpack allocates.
  const std::size_t size = bytes.size();
  const msgpack::unpack_limit limit(std::min(limits.max_array, size),
                                    std::min(limits.max_map, size / 2),
                                    std::min(limits.max_str, size), std::min(limits.max_bin, size),
                                    std::min<std::size_t>(size, 1 << 20), limits.max_depth);
  check_decode_cost(bytes, limits);
  std::size_t offset = 0;
  msgpack::object object;
  try {
    object = msgpack::unpack(zone, bytes.data(), size, offset, &reference_in_place, nullptr, limit);
  } catch (const msgpack::insufficient_bytes&) {
    throw DecodeError("truncated msgpack data");
  } catch (const std::exception& e) {
    throw DecodeError(std::string("malformed msgpack data (") + e.what() + ")");
  }
  if (offset != size) {
    throw DecodeError("trailing bytes after a msgpack value");
  }
  return object;
}

namespace {

thread_local msgpack::zone t_scratch_zone;
thread_local bool t_scratch_zone_in_use = false;

}  // namespace

ScratchZone::ScratchZone() {
  if (t_scratch_zone_in_use) {
    own_ = std::make_unique<msgpack::zone>();
    zone_ = own_.get();
  } else {
    t_scratch_zone_in_use = true;
    zone_ = &t_scratch_zone;
  }
}

ScratchZone::~ScratchZone() {
  if (own_) return;
  // Frees every chunk but the first: a large value's objects do not stay allocated.
  t_scratch_zone.clear();
  t_scratch_zone_in_use = false;
}

}  // namespace pymar::detail
