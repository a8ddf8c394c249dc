// Cutting a job into slices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace pymar::detail {

struct Part {
  std::size_t offset = 0;
  std::size_t limit = 0;
  bool operator==(const Part&) const = default;
};

/// Cuts [0, length) into min(parts, length) contiguous parts whose sizes differ by at most one,
/// the larger ones first. Every element is in exactly one part; no part is empty.
std::vector<Part> split(std::size_t length, std::size_t parts);

/// Slice numbers as a log line gives them, runs of consecutive ones as first-last: "0-499, 640".
/// A batch is mostly one run, so a line stays short however many slices it has.
std::string slice_list_text(std::span<const std::uint64_t> slices);

}  // namespace pymar::detail
