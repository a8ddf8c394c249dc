#include "observe/render.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>

#include <fmt/format.h>

namespace pymar::detail {
namespace {

constexpr FaultKind kFaultKinds[] = {
    FaultKind::worker_dropped,   FaultKind::slice_crash,       FaultKind::slice_error,
    FaultKind::late_result,      FaultKind::duplicate_result,  FaultKind::stale_result,
    FaultKind::malformed_result, FaultKind::malformed_message, FaultKind::refused_message,
    FaultKind::refused_peer,
};

class Exposition {
 public:
  /// Starts a metric family: its HELP and TYPE lines.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(text_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    fmt::format_to(std::back_inserter(text_), "{}{}{}{} {}\n", name, labels.empty() ? "" : "{",
                   labels, labels.empty() ? "" : "}", value);
  }
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    fmt::format_to(std::back_inserter(text_), "{}{}{}{} {}\n", name, labels.empty() ? "" : "{",
                   labels, labels.empty() ? "" : "}", value);
  }
  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

/// A JSON string literal; bytes outside printable ASCII are escaped, so the answer is valid
/// UTF-8 whatever a peer named itself.
std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte >= 0x7f) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(byte));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

double ms(std::int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

}  // namespace

std::string prometheus_label(std::string_view value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string prometheus_text(const Observation& o) {
  Exposition e;
  e.family("pymar_jobs_started_total", "counter", "Jobs (calls of map) this producer started.");
  e.sample("pymar_jobs_started_total", "", o.jobs_started);
  e.family("pymar_jobs_total", "counter",
           "Jobs that ended, by outcome: done (a value) or failed (any other ending).");
  e.sample("pymar_jobs_total", "outcome=\"done\"", o.jobs_done);
  e.sample("pymar_jobs_total", "outcome=\"failed\"", o.jobs_failed);
  e.family("pymar_jobs_here_total", "counter",
           "Of the jobs done, those computed by the caller of map as too small for a round trip.");
  e.sample("pymar_jobs_here_total", "", o.jobs_here);
  e.family("pymar_slices_total", "counter", "Slices whose partial value counted.");
  e.sample("pymar_slices_total", "", o.slices_done);
  e.family("pymar_reruns_total", "counter",
           "Slices handed out again after their worker was lost or their code threw.");
  e.sample("pymar_reruns_total", "", o.reruns);
  e.family("pymar_faults_total", "counter", "Faults seen, by kind (README: Reliability).");
  // Every known kind, zeros included, so that rate() and alerts see a series from the start.
  std::map<std::string, std::uint64_t, std::less<>> faults;
  for (const FaultKind kind : kFaultKinds) faults[std::string(to_string(kind))] = 0;
  for (const auto& [kind, count] : o.faults) faults[kind] = count;
  for (const auto& [kind, count] : faults) {
    e.sample("pymar_faults_total", fmt::format("kind=\"{}\"", prometheus_label(kind)), count);
  }
  e.family("pymar_bytes_total", "counter",
           "Bytes on the producer's socket: in (received) and out (sent).");
  e.sample("pymar_bytes_total", "direction=\"in\"", o.bytes_in);
  e.sample("pymar_bytes_total", "direction=\"out\"", o.bytes_out);
  e.family("pymar_worker_busy_seconds_total", "counter",
           "Compute time each worker process reported for its counted slices (the busiest "
           "256 processes).");
  for (const WorkerTotals& w : o.workers) {
    e.sample("pymar_worker_busy_seconds_total",
             fmt::format("host=\"{}\",pid=\"{}\"", prometheus_label(w.host), w.pid),
             static_cast<double>(w.busy_ns) / 1e9);
  }
  e.family("pymar_worker_slices_total", "counter",
           "Slices each worker process computed whose result counted (the busiest 256).");
  for (const WorkerTotals& w : o.workers) {
    e.sample("pymar_worker_slices_total",
             fmt::format("host=\"{}\",pid=\"{}\"", prometheus_label(w.host), w.pid), w.slices);
  }
  e.family("pymar_workers_connected", "gauge", "Worker processes registered now.");
  e.sample("pymar_workers_connected", "", o.workers_connected);
  const bool running = o.current.has_value();
  e.family("pymar_job_running", "gauge", "1 while a job runs, else 0.");
  e.sample("pymar_job_running", "", std::uint64_t{running ? 1u : 0u});
  e.family("pymar_job_slices_done", "gauge",
           "Slices of the running job (else of the last one) whose partial value counted.");
  const JobStats* job = running ? &*o.current : (o.last ? &*o.last : nullptr);
  e.sample("pymar_job_slices_done", "", job ? job->slices_done : 0);
  e.family("pymar_job_slices", "gauge", "Slices the running job (else the last one) is cut into.");
  e.sample("pymar_job_slices", "", job ? job->slices_total : 0);
  return e.take();
}

std::string dashboard_state_json(const Observation& o) {
  std::string out;
  auto put = std::back_inserter(out);
  const auto taken_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(o.taken.time_since_epoch()).count();
  fmt::format_to(put,
                 "{{\"sequence\":{},\"taken_unix_ms\":{},\"workers_connected\":{},"
                 "\"totals\":{{\"jobs_started\":{},\"jobs_done\":{},\"jobs_failed\":{},"
                 "\"jobs_here\":{},\"slices\":{},\"reruns\":{},\"bytes_in\":{},\"bytes_out\":{}}}",
                 o.sequence, taken_ms, o.workers_connected, o.jobs_started, o.jobs_done,
                 o.jobs_failed, o.jobs_here, o.slices_done, o.reruns, o.bytes_in, o.bytes_out);
  const JobStats* job = o.current ? &*o.current : (o.last ? &*o.last : nullptr);
  if (job == nullptr) return out + ",\"job\":null}";
  fmt::format_to(put,
                 ",\"job\":{{\"running\":{},\"job\":{},\"producer\":{},\"source\":{},"
                 "\"ending\":{},\"started_unix_ms\":{},\"elements\":{},\"slices_total\":{},"
                 "\"slices_done\":{},\"local_slices\":{},\"reruns\":{},\"wall_ms\":{:.1f},"
                 "\"bytes_in\":{},\"bytes_out\":{}",
                 o.current.has_value(), job->job, json_string(job->producer),
                 json_string(job->source),
                 o.current ? std::string("null") : json_string(to_string(job->ending)),
                 job->started_unix_ms, job->elements, job->slices_total, job->slices_done,
                 job->local_slices, job->reruns, ms(job->wall_ns), job->bytes_in, job->bytes_out);

  const std::size_t shown_workers = std::min(job->workers.size(), kStateWorkers);
  out += ",\"workers\":[";
  for (std::size_t i = 0; i < shown_workers; ++i) {
    const WorkerStats& w = job->workers[i];
    fmt::format_to(put,
                   "{}{{\"host\":{},\"pid\":{},\"slices\":{},\"compute_ms\":{:.1f},"
                   "\"dropped\":{},\"drop_reason\":{}}}",
                   i == 0 ? "" : ",", json_string(w.host), w.pid, w.slices,
                   ms(static_cast<std::int64_t>(w.compute_ns)), w.dropped,
                   json_string(w.drop_reason));
  }
  fmt::format_to(put, "],\"workers_not_shown\":{}",
                 job->workers.size() - shown_workers + job->workers_left_out);

  // The task stream: [worker, start ms, end ms, slice] for the most recent finished slices of
  // shown workers (or of the producer itself: worker -1).
  out += ",\"slices\":[";
  const std::size_t first =
      job->slices.size() > kStateSlices ? job->slices.size() - kStateSlices : 0;
  bool any = false;
  for (std::size_t i = first; i < job->slices.size(); ++i) {
    const SliceStats& s = job->slices[i];
    if (s.start_ns < 0 || s.end_ns < 0) continue;
    if (s.worker != SliceStats::kLocal &&
        (s.worker < 0 || static_cast<std::size_t>(s.worker) >= shown_workers)) {
      continue;
    }
    fmt::format_to(put, "{}[{},{:.1f},{:.1f},{}]", any ? "," : "", s.worker, ms(s.start_ns),
                   ms(s.end_ns), s.index);
    any = true;
  }
  out += "]";

  out += ",\"faults\":[";
  const std::size_t first_fault =
      job->faults.size() > kStateFaults ? job->faults.size() - kStateFaults : 0;
  for (std::size_t i = first_fault; i < job->faults.size(); ++i) {
    const FaultEvent& f = job->faults[i];
    fmt::format_to(put, "{}{{\"ms\":{:.1f},\"kind\":{},\"detail\":{}}}",
                   i == first_fault ? "" : ",", ms(f.time_ns), json_string(to_string(f.kind)),
                   json_string(f.detail));
  }
  out += "],\"fault_counts\":{";
  bool first_count = true;
  for (const auto& [kind, count] : job->fault_counts) {
    fmt::format_to(put, "{}{}:{}", first_count ? "" : ",", json_string(kind), count);
    first_count = false;
  }
  return out + "}}}";
}

}  // namespace pymar::detail
