// JobStats as JSON, written by hand (a few escapes, no library needed), and the `--stats` file.
#include "pymar/stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "common/log.hpp"
#include "producer/runtime.hpp"
#include "producer/stats_file.hpp"
#include "pymar/detail/job.hpp"

namespace pymar {
namespace {

/// `text` as a JSON string. Bytes outside printable ASCII are escaped one by one (\u00XX), so
/// the output is valid JSON whatever the bytes; peers' texts are ASCII by then anyway.
void append_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", byte);
    }
  }
  out += '"';
}

/// An integer, in decimal. Faster than fmt for the slice runs, of which a job whose slices
/// all differ (local mode, one-slice batches) has one per slice.
template <typename Integer>
void append_int(std::string& out, Integer value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

/// A time that may be missing (-1): the number, or null.
void append_time(std::string& out, std::int64_t ns) {
  if (ns < 0) {
    out += "null";
  } else {
    append_int(out, ns);
  }
}

}  // namespace

std::string_view to_string(JobEnding ending) {
  switch (ending) {
    case JobEnding::done:
      return "done";
    case JobEnding::failed:
      return "failed";
    case JobEnding::timed_out:
      return "timed_out";
    case JobEnding::interrupted:
      return "interrupted";
    case JobEnding::broken:
      return "broken";
  }
  return "unknown";
}

std::string_view to_string(FaultKind kind) {
  switch (kind) {
    case FaultKind::worker_dropped:
      return "worker_dropped";
    case FaultKind::slice_crash:
      return "slice_crash";
    case FaultKind::slice_error:
      return "slice_error";
    case FaultKind::late_result:
      return "late_result";
    case FaultKind::duplicate_result:
      return "duplicate_result";
    case FaultKind::stale_result:
      return "stale_result";
    case FaultKind::malformed_result:
      return "malformed_result";
    case FaultKind::malformed_message:
      return "malformed_message";
    case FaultKind::refused_message:
      return "refused_message";
    case FaultKind::refused_peer:
      return "refused_peer";
  }
  return "unknown";
}

namespace {

/// The slices as runs: consecutive, of one length, each beginning where the one before ends,
/// and alike in everything else recorded. The slices of one batch share their worker and times,
/// so a job of 10^4 slices in batches of hundreds is a few dozen runs instead of 10^4 records
/// (its JSON was ~1 MB, and writing it cost the producer's CPU beside the running job). A job
/// whose only reader is the --stats file has its runs made by the scheduler
/// (Scheduler::slice_runs), without the records.
std::vector<detail::SliceRun> runs_of(const std::vector<SliceStats>& slices) {
  std::vector<detail::SliceRun> runs;
  for (const SliceStats& s : slices) {
    if (!runs.empty()) {
      detail::SliceRun& last = runs.back();
      if (s.index == last.index + last.count &&
          s.offset == last.offset + last.count * last.length && s.length == last.length &&
          s.worker == last.worker && s.attempts == last.attempts && s.start_ns == last.start_ns &&
          s.end_ns == last.end_ns) {
        ++last.count;
        continue;
      }
    }
    runs.push_back({s.index, 1, s.offset, s.length, s.worker, s.attempts, s.start_ns, s.end_ns});
  }
  return runs;
}

/// Appends `stats` as JSON to `out`, with `runs` for its slices.
void append_json(std::string& out, const JobStats& stats,
                 const std::vector<detail::SliceRun>& runs) {
  out.reserve(out.size() + 1024 + stats.faults.size() * 120);
  auto put = std::back_inserter(out);
  fmt::format_to(put, "{{\"job\":{},\"producer\":", stats.job);
  append_string(out, stats.producer);
  out += ",\"source\":";
  append_string(out, stats.source);
  fmt::format_to(put,
                 ",\"started_unix_ms\":{},\"elements\":{},\"slices_total\":{},"
                 "\"slices_done\":{},\"local_slices\":{},\"local_reason\":",
                 stats.started_unix_ms, stats.elements, stats.slices_total, stats.slices_done,
                 stats.local_slices);
  if (stats.local_reason.empty()) {
    out += "null";
  } else {
    append_string(out, stats.local_reason);
  }
  fmt::format_to(put,
                 ",\"ending\":\"{}\",\"wall_ns\":{},\"first_result_ns\":", to_string(stats.ending),
                 stats.wall_ns);
  append_time(out, stats.first_result_ns);
  fmt::format_to(put, ",\"reduce_ns\":{},\"bytes_out\":{},\"bytes_in\":{},\"reruns\":{}",
                 stats.reduce_ns, stats.bytes_out, stats.bytes_in, stats.reruns);

  out += ",\"workers\":[";
  for (std::size_t i = 0; i < stats.workers.size(); ++i) {
    const WorkerStats& w = stats.workers[i];
    if (i > 0) out += ',';
    fmt::format_to(put, "{{\"index\":{},\"host\":", i);
    append_string(out, w.host);
    fmt::format_to(put,
                   ",\"pid\":{},\"slices\":{},\"elements\":{},\"compute_ns\":{},"
                   "\"bytes_out\":{},\"bytes_in\":{},\"dropped\":{},\"drop_reason\":",
                   w.pid, w.slices, w.elements, w.compute_ns, w.bytes_out, w.bytes_in, w.dropped);
    if (w.dropped) {
      append_string(out, w.drop_reason);
    } else {
      out += "null";
    }
    out += '}';
  }
  fmt::format_to(put, "],\"workers_left_out\":{},\"slice_runs\":[", stats.workers_left_out);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const detail::SliceRun& s = runs[i];
    if (i > 0) out += ',';
    out += "{\"index\":";
    append_int(out, s.index);
    out += ",\"count\":";
    append_int(out, s.count);
    out += ",\"offset\":";
    append_int(out, s.offset);
    out += ",\"length\":";
    append_int(out, s.length);
    out += ",\"worker\":";
    if (s.worker >= 0) {
      append_int(out, s.worker);
    } else if (s.worker == SliceStats::kLocal) {
      out += "\"local\"";
    } else {
      out += "null";
    }
    out += ",\"attempts\":";
    append_int(out, s.attempts);
    out += ",\"start_ns\":";
    append_time(out, s.start_ns);
    out += ",\"end_ns\":";
    append_time(out, s.end_ns);
    out += '}';
  }
  out += "],\"faults\":[";
  for (std::size_t i = 0; i < stats.faults.size(); ++i) {
    const FaultEvent& f = stats.faults[i];
    if (i > 0) out += ',';
    fmt::format_to(put, "{{\"time_ns\":{},\"kind\":\"{}\",\"detail\":", f.time_ns,
                   to_string(f.kind));
    append_string(out, f.detail);
    out += '}';
  }
  fmt::format_to(put, "],\"faults_left_out\":{},\"fault_counts\":{{", stats.faults_left_out);
  bool first = true;
  for (const auto& [kind, count] : stats.fault_counts) {
    if (!first) out += ',';
    first = false;
    append_string(out, kind);
    fmt::format_to(put, ":{}", count);
  }
  out += "}}";
}

}  // namespace

std::string to_json(const JobStats& stats) {
  std::string out;
  append_json(out, stats, runs_of(stats.slices));
  return out;
}

namespace detail {
namespace {

// The --stats file is one JSON document, always: a header, one job per line, and a trailer
// ("\n]}\n"). A job after the first is written over the trailer, with a new trailer after it, so
// each job costs what its own JSON costs, whatever the number of jobs before it; nothing of the
// earlier jobs is kept in memory.
//
// A thread of its own makes the JSON and writes it, so that `map` returns its value without
// waiting for either: a job of many slices that all differ makes megabytes of JSON. At most
// kMaxPending jobs wait for it (then `map` waits), and write_stats_to waits until every job is
// written.
constexpr std::size_t kMaxPending = 2;
// The writer thread keeps its buffer between jobs up to this size.
constexpr std::size_t kKeptBuffer = 16 << 20;
constexpr std::string_view kHeader = "{\"format\":\"pymar-stats\",\"version\":2,\"jobs\":[\n";
constexpr std::string_view kTrailer = "\n]}\n";

struct StatsFile {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::pair<JobStats, std::vector<SliceRun>>> pending;  // handed over, not written
  bool writing = false;                                            // the writer holds a job
  bool stop = false;
  std::thread writer;
  std::optional<std::string> path;
  int fd = -1;           // the file as written so far, open while the process writes it
  off_t trailer_at = 0;  // where kTrailer begins
  bool torn = false;     // a write failed: bytes past the trailer may be left over
  StatsFileCost cost;
  // The slice records of the last job written, emptied, for the next job to fill: a job's records
  // (56 bytes a slice) are otherwise allocated, faulted in and unmapped anew each job, which cost
  // 3 to 5% of a 10^4-slice job on 2 cores. Not those of a huge job: that memory is not held
  // idle, and beside a huge job's work their cost is small.
  std::vector<SliceStats> spare_slices;
};

constexpr std::size_t kMaxSpareSlices = std::size_t{1} << 18;  // 14 MiB of records

StatsFile& stats_file();
void write_pending(StatsFile& file);

/// Waits until every job handed over is written, and ends the writer thread.
void finish_writing(StatsFile& file, std::unique_lock<std::mutex>& lock) {
  if (!file.writer.joinable()) return;
  file.stop = true;
  file.changed.notify_all();
  lock.unlock();
  file.writer.join();
  lock.lock();
  file.writer = std::thread();
  file.stop = false;
}

struct StatsFileOwner {
  StatsFile file;
  ~StatsFileOwner() {
    std::unique_lock lock(file.mutex);
    finish_writing(file, lock);
  }
};

StatsFile& stats_file() {
  static StatsFileOwner owner;
  return owner.file;
}

void close_file(StatsFile& file) {
  if (file.fd >= 0) ::close(file.fd);
  file.fd = -1;
  file.trailer_at = 0;
  file.torn = false;
}

bool write_at(int fd, std::string_view bytes, off_t at) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
    at += n;
  }
  return true;
}

/// The first job: a whole document (header, job, trailer), written beside the file and renamed
/// over it, so that a reader never sees half of it and an earlier run's file stays whole until
/// then.
bool start_file(StatsFile& file, std::string_view document) {
  const std::string temporary = fmt::format("{}.tmp{}", *file.path, getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  if (!write_at(fd, document, 0) || std::rename(temporary.c_str(), file.path->c_str()) != 0) {
    const int error = errno;
    ::close(fd);
    std::remove(temporary.c_str());
    errno = error;
    return false;
  }
  file.fd = fd;
  file.trailer_at = static_cast<off_t>(document.size() - kTrailer.size());
  file.cost.bytes_written = document.size();
  return true;
}

/// A later job (",\n", job, trailer), over the trailer. The bytes past the old trailer go first
/// and the four that replace it last, in one small write: until then the file still begins
/// with the previous document, whole, and a crash between the two writes loses only this job.
bool append_job(StatsFile& file, std::string_view bytes) {
  const std::size_t head = kTrailer.size();  // the bytes that land on the old trailer
  if (!write_at(file.fd, bytes.substr(head), file.trailer_at + static_cast<off_t>(head)) ||
      !write_at(file.fd, bytes.substr(0, head), file.trailer_at)) {
    file.torn = true;
    return false;
  }
  file.trailer_at += static_cast<off_t>(bytes.size() - kTrailer.size());
  // After a failed write (a full disk), what it left past the new end goes.
  if (file.torn &&
      ::ftruncate(file.fd, file.trailer_at + static_cast<off_t>(kTrailer.size())) == 0) {
    file.torn = false;
  }
  file.cost.bytes_written = bytes.size();
  return true;
}

}  // namespace

void write_stats_to(std::optional<std::string> path) {
  StatsFile& file = stats_file();
  std::unique_lock lock(file.mutex);
  finish_writing(file, lock);
  close_file(file);
  file.path = std::move(path);
  file.cost = {};
}

bool job_stats_wanted() noexcept {
  StatsFile& file = stats_file();
  std::lock_guard lock(file.mutex);
  return file.path.has_value();
}

void job_stats_done(JobStats stats, std::vector<SliceRun> runs) {
  StatsFile& file = stats_file();
  std::unique_lock lock(file.mutex);
  if (!file.path) return;
  file.changed.wait(lock, [&] { return file.pending.size() < kMaxPending; });
  file.pending.emplace_back(std::move(stats), std::move(runs));
  if (!file.writer.joinable()) file.writer = std::thread([&file] { write_pending(file); });
  file.changed.notify_all();
}

std::vector<SliceStats> reuse_slice_records() {
  StatsFile& file = stats_file();
  std::lock_guard lock(file.mutex);
  return std::exchange(file.spare_slices, {});
}

StatsFileCost stats_file_cost() {
  StatsFile& file = stats_file();
  std::unique_lock lock(file.mutex);
  file.changed.wait(lock, [&] { return file.pending.empty() && !file.writing; });
  return file.cost;
}

namespace {

/// The writer thread: each job handed over, in order, until told to stop with none left.
void write_pending(StatsFile& file) {
  std::string bytes;
  std::unique_lock lock(file.mutex);
  while (true) {
    file.changed.wait(lock, [&] { return file.stop || !file.pending.empty(); });
    if (file.pending.empty()) return;
    auto [stats, runs] = std::move(file.pending.front());
    file.pending.pop_front();
    file.writing = true;
    file.changed.notify_all();  // room for the next job
    // The file's state is this thread's while it runs (write_stats_to joins it before touching
    // it): `map` waits for the lock only to hand over a job, never for the disk.
    lock.unlock();
    // One buffer for every job, framed as it goes to the file: no megabytes allocated, copied
    // and unmapped per job (an unmap interrupts every core this process's threads run on).
    const bool first = file.fd < 0;
    bytes.clear();
    bytes.append(first ? kHeader : std::string_view(",\n"));
    if (runs.empty()) runs = runs_of(stats.slices);
    append_json(bytes, stats, runs);
    bytes.append(kTrailer);
    file.cost.bytes_written = 0;  // read only once `writing` is false again, under the lock
    const bool written = first ? start_file(file, bytes) : append_job(file, bytes);
    const int error = errno;
    if (bytes.capacity() > kKeptBuffer) std::string().swap(bytes);  // a rare huge job's, not kept
    lock.lock();
    if (!written) {
      // The earlier jobs stay; the next job is written where this one should have been.
      spdlog::warn("cannot write the statistics of job {} to {}: {}", stats.job, *file.path,
                   std::strerror(error));
    }
    if (stats.slices.capacity() > file.spare_slices.capacity() &&
        stats.slices.capacity() <= kMaxSpareSlices) {
      stats.slices.clear();
      std::swap(file.spare_slices, stats.slices);
    }
    ++file.cost.jobs;
    file.writing = false;
    file.changed.notify_all();
  }
}

}  // namespace

}  // namespace detail

}  // namespace pymar
