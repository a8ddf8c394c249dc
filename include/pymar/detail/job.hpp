// The boundary between the templates in the public headers and the library in src/: a job is
// described here without the user's types, run by the library, and handed back as encoded partials.
#pragma once

#include "pymar/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pymar/detail/payload_kind.hpp"
#include "pymar/job_options.hpp"

namespace pymar {

struct JobStats;

namespace detail {

/// One slice as a kernel sees it, on a worker or in local mode.
struct SliceInput {
  std::size_t offset = 0;
  std::size_t limit = 0;
  std::string_view params;   ///< msgpack-encoded source parameters, empty when the source has none
  std::string_view payload;  ///< the slice's elements, for in-memory sources
};

/// Runs `reduce_fn(map_fn(source))` for one (producer, source) pair over one slice and appends
/// the encoded partial value to `out`. Throws whatever the user's code throws.
using Kernel = void (*)(const SliceInput& input, std::string& out);

/// Checks that bytes decode as the job's value type; throws DecodeError if not. Used on the
/// producer so that a malformed partial from a worker is rejected before it is counted.
using PartialCheck = void (*)(std::string_view encoded);

/// The producer-side view of in-memory data.
struct MemoryData {
  PayloadKind kind = PayloadKind::none;
  /// raw: element i occupies [base + i * element_size, base + (i + 1) * element_size) and stays
  /// valid until `map` returns.
  const std::byte* base = nullptr;
  std::size_t element_size = 0;
  /// msgpack: appends the encoding of elements [offset, offset + limit) to `out`.
  std::function<void(std::size_t offset, std::size_t limit, std::string& out)> encode_slice;

  /// The bytes a worker receives for slice [offset, offset + limit), when kind is raw.
  std::string_view raw_slice(std::size_t offset, std::size_t limit) const {
    return {reinterpret_cast<const char*>(base + offset * element_size), limit * element_size};
  }
};

/// Slices side by side that are alike, as one record: `count` slices from `index`, each of
/// `length` elements and beginning where the last one ends, with the same worker, attempts and
/// times (as in SliceStats). What the `--stats` file holds ("slice_runs").
struct SliceRun {
  std::uint64_t index = 0;
  std::uint64_t count = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::int64_t worker = -2;  // SliceStats::kNone
  std::uint32_t attempts = 0;
  std::int64_t start_ns = -1;
  std::int64_t end_ns = -1;
};

/// Everything the library needs to run one `map` call.
struct JobRequest {
  std::string producer;    ///< registered producer name
  std::string source;      ///< registered source name
  std::string params;      ///< encoded source parameters
  std::size_t length = 0;  ///< full_length() of the source
  std::size_t parts = 0;   ///< WORKERS_NUMBER of the producer
  Kernel kernel = nullptr;
  PartialCheck check_partial = nullptr;
  MemoryData memory;
  JobOptions options;
  /// When set, run_job fills it with the job's statistics (slices included), also when it
  /// throws. Must outlive run_job.
  JobStats* stats = nullptr;
  /// With `stats`, when only the `--stats` file wants them: the slices' records go here as runs
  /// and stats->slices stays empty. A job of 10^4 slices in a few batches is a few runs, made in
  /// a fraction of the time its 10^4 records took on the producer's I/O thread.
  std::vector<SliceRun>* slice_runs = nullptr;
};

/// The encoded partial values of a finished job, in slice order.
class Partials {
 public:
  explicit Partials(std::size_t count = 0) : spans_(count) {}
  std::size_t size() const noexcept { return spans_.size(); }
  std::string_view operator[](std::size_t slice) const {
    return std::string_view(arena_).substr(spans_[slice].first, spans_[slice].second);
  }
  void set(std::size_t slice, std::string_view bytes) {
    spans_[slice] = {arena_.size(), bytes.size()};
    arena_.append(bytes);
  }

 private:
  std::string arena_;  // one buffer for all partials: no allocation per slice
  std::vector<std::pair<std::size_t, std::size_t>> spans_;
};

/// Runs a job on the workers, or locally when there are none; blocks until every slice has a
/// partial value. Throws SliceError, TimeoutError, Interrupted or Error.
Partials run_job(const JobRequest& request);

/// Whether every job's statistics are wanted (the producer runs with `--stats FILE`).
bool job_stats_wanted() noexcept;

/// A job's statistics, complete (reduce included): written to the `--stats` file, if any. Taken
/// by value: a producer's own record (no caller asked for it) is moved in, not copied.
/// `runs`: the slices as runs, when stats.slices was left empty for them (JobRequest::slice_runs).
void job_stats_done(JobStats stats, std::vector<SliceRun> runs = {});

}  // namespace detail
}  // namespace pymar
