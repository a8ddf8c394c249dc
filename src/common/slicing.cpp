#include "common/slicing.hpp"

#include <algorithm>

namespace pymar::detail {

std::vector<Part> split(std::size_t length, std::size_t parts) {
  const std::size_t count = std::min(parts, length);
  std::vector<Part> out;
  out.reserve(count);
  if (count == 0) return out;
  const std::size_t base = length / count;
  const std::size_t larger = length % count;  // this many parts get one element more
  std::size_t offset = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t limit = base + (i < larger ? 1 : 0);
    out.push_back({offset, limit});
    offset += limit;
  }
  return out;
}

}  // namespace pymar::detail
