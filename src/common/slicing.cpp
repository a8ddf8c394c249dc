#include "common/slicing.hpp"

#include <algorithm>

#include <fmt/format.h>

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

std::string slice_list_text(std::span<const std::uint64_t> slices) {
  std::string text;
  for (std::size_t i = 0; i < slices.size();) {
    std::size_t last = i;
    while (last + 1 < slices.size() && slices[last + 1] == slices[last] + 1) ++last;
    if (!text.empty()) text += ", ";
    text +=
        last == i ? fmt::format("{}", slices[i]) : fmt::format("{}-{}", slices[i], slices[last]);
    i = last + 1;
  }
  return text;
}

}  // namespace pymar::detail
