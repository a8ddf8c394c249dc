// JobStats as JSON, written by hand (a few escapes, no library needed), and the `--stats` file.
#include "pymar/stats.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <mutex>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"
#include "producer/runtime.hpp"
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

/// A time that may be missing (-1): the number, or null.
void append_time(std::string& out, std::int64_t ns) {
  if (ns < 0) {
    out += "null";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", ns);
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

std::string to_json(const JobStats& stats) {
  std::string out;
  out.reserve(1024 + stats.slices.size() * 120 + stats.faults.size() * 120);
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
  fmt::format_to(put, "],\"workers_left_out\":{},\"slices\":[", stats.workers_left_out);
  for (std::size_t i = 0; i < stats.slices.size(); ++i) {
    const SliceStats& s = stats.slices[i];
    if (i > 0) out += ',';
    fmt::format_to(put, "{{\"index\":{},\"offset\":{},\"length\":{},\"worker\":", s.index, s.offset,
                   s.length);
    if (s.worker >= 0) {
      fmt::format_to(put, "{}", s.worker);
    } else if (s.worker == SliceStats::kLocal) {
      out += "\"local\"";
    } else {
      out += "null";
    }
    fmt::format_to(put, ",\"attempts\":{},\"start_ns\":", s.attempts);
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
  return out;
}

namespace detail {
namespace {

// The --stats file: its path, and the JSON of every job written so far (the file is rewritten
// whole after each job, so that it is always one complete document).
struct StatsFile {
  std::mutex mutex;
  std::optional<std::string> path;
  std::vector<std::string> jobs;
};

StatsFile& stats_file() {
  static StatsFile file;
  return file;
}

}  // namespace

void write_stats_to(std::optional<std::string> path) {
  StatsFile& file = stats_file();
  std::lock_guard lock(file.mutex);
  file.path = std::move(path);
  file.jobs.clear();
}

bool job_stats_wanted() noexcept {
  StatsFile& file = stats_file();
  std::lock_guard lock(file.mutex);
  return file.path.has_value();
}

void job_stats_done(const JobStats& stats) {
  StatsFile& file = stats_file();
  std::lock_guard lock(file.mutex);
  if (!file.path) return;
  file.jobs.push_back(to_json(stats));
  // Written beside the file and renamed over it: a reader never sees half a document.
  const std::string temporary = fmt::format("{}.tmp{}", *file.path, getpid());
  std::FILE* out = std::fopen(temporary.c_str(), "w");
  bool written = out != nullptr;
  if (out != nullptr) {
    written = std::fputs("{\"format\":\"pymar-stats\",\"version\":1,\"jobs\":[\n", out) >= 0;
    for (std::size_t i = 0; written && i < file.jobs.size(); ++i) {
      written = std::fputs(file.jobs[i].c_str(), out) >= 0 &&
                std::fputs(i + 1 < file.jobs.size() ? ",\n" : "\n", out) >= 0;
    }
    written = written && std::fputs("]}\n", out) >= 0;
    written = std::fclose(out) == 0 && written;
  }
  if (!written || std::rename(temporary.c_str(), file.path->c_str()) != 0) {
    spdlog::warn("cannot write the statistics to {}: {}", *file.path, std::strerror(errno));
    std::remove(temporary.c_str());
  }
}

}  // namespace detail

}  // namespace pymar
