// What writing the `--stats` file cost: for the tests, which check that a job's write does not
// grow with the jobs before it (the file is never rewritten whole, and earlier jobs are not kept).
#pragma once

#include <cstddef>
#include <vector>

#include "pymar/stats.hpp"

namespace pymar::detail {

struct StatsFileCost {
  std::size_t jobs = 0;           ///< jobs handed to the file since write_stats_to
  std::size_t bytes_written = 0;  ///< by the last job's write (0 if it failed)
};

/// Waits until every job handed to the file is written, then says what the last write cost.
StatsFileCost stats_file_cost();

/// An empty vector with room for the slice records of the largest job the file has written since
/// the last call (none, or only jobs of over 2^18 slices: no room), for the next job's records.
std::vector<SliceStats> reuse_slice_records();

}  // namespace pymar::detail
