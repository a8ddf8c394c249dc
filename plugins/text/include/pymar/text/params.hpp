// The parameters of the text plugin's source, as they travel to every worker: a header of
// their own, without <ranges>, so that the fuzz target (clang) decodes them as workers do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <pymar/codec.hpp>

namespace pymar::text {

/// The files a job reads. Each worker reads them under the same paths (a shared file system, or
/// copies): relative paths are relative to the worker's working directory.
struct Params {
  std::vector<std::string> files{};
  /// Each file's size when the job started (filled by Lines::prepare on the producer when the
  /// factory is made): a worker that finds another size fails rather than miscount.
  std::vector<std::uint64_t> sizes{};
  MSGPACK_DEFINE(files, sizes)
};

}  // namespace pymar::text
