#include "producer/scheduler.hpp"

#include <string.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/log.hpp"
#include "common/printable.hpp"
#include "producer/stats_file.hpp"

namespace pymar::detail {
namespace {

std::string describe_end(const wire::Predecessor& p) {
  if (p.signal != 0) {
    const char* abbrev = sigabbrev_np(p.signal);
    return abbrev ? fmt::format("killed by SIG{}", abbrev)
                  : fmt::format("killed by signal {}", p.signal);
  }
  return fmt::format("exited with status {}", p.exit_code);
}

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Batches expected to compute for less than this are queued ahead on a worker (see window()).
constexpr double kPrefetchBelowNs = 20e6;
// A batch weighing this much on the wire is heavy: it is not queued ahead, and several slices
// are not put together into one that would weigh more (see batch_size()).
constexpr double kHeavyBatchBytes = 1 << 20;

// About the time a batch spends going to a worker and back, beyond computing.
constexpr double kRoundTripNs = 100e3;

// The least work worth giving an idle worker of its own at the end of a job, rather than adding
// it to another worker's batch: below it, the extra round trip costs more than it saves.
constexpr double kShareWorthNs = 20e3;

// What a slice costs beyond its kernel (the worker's kernel time is all the scheduler measures):
// encoding and decoding its partial value and the scheduler's own bookkeeping, ~0.3 us here.
constexpr double kSliceOverheadNs = 300;

// Slices a worker must have computed in the job before its speed is trusted, for copies.
constexpr std::size_t kSpeedSamples = 2;

// A copy sent because it would end sooner on an idle, faster worker must be expected to save
// at least this much beyond a quarter of its own time: estimates are means, and a copy that
// loses keeps a worker busy past the job's end.
constexpr double kCopyWorthNs = 5e6;

// Slice indices shown in one log line at most: a lost worker may have held thousands.
constexpr std::size_t kLoggedSlices = 8;

// Occurrences of an event a peer can cause (a worker lost with slices, a slice that threw or
// crashed its worker, the last worker serving a job gone) logged before LogBudget's doubling rule:
// plenty for a real cluster's troubles, a few dozen lines for a peer that repeats them at will.
constexpr std::size_t kLoggedEventsFirst = 32;

// "0, 1, 2", or "0, 1, ..., 7 and 992 more (1000 in all)": a bounded line whatever the count,
// for events a peer can repeat. The -v audit of a returned batch names every slice instead, as
// runs (slice_list_text, in common/slicing.hpp).
std::string slice_list(const std::vector<SliceIndex>& slices) {
  if (slices.size() <= kLoggedSlices) return fmt::format("{}", fmt::join(slices, ", "));
  return fmt::format("{} and {} more ({} in all)",
                     fmt::join(slices.begin(), slices.begin() + kLoggedSlices, ", "),
                     slices.size() - kLoggedSlices, slices.size());
}

// The bytes a registration makes the producer hold, roughly: its names and their hash nodes.
std::size_t registration_bytes(const wire::Ready& ready) {
  std::size_t bytes =
      sizeof(wire::Ready) + ready.host.size() + ready.task.size() + ready.build.size();
  for (const auto* names : {&ready.producers, &ready.sources}) {
    for (const std::string& name : *names) bytes += name.size() + 64;
  }
  return bytes;
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig config, Outbox& outbox)
    : config_(std::move(config)),
      outbox_(outbox),
      lost_log_(kLoggedEventsFirst),
      threw_log_(kLoggedEventsFirst),
      crash_log_(kLoggedEventsFirst),
      unserved_log_(kLoggedEventsFirst) {}

// --- workers -------------------------------------------------------------------------------

void Scheduler::on_ready(const std::string& id, const wire::Ready& ready, Clock::time_point now) {
  if (ready.build != config_.build) {
    const std::string reason = fmt::format(
        "this worker runs build {} of '{}', the producer runs build {}: start workers from "
        "the same binary as the producer",
        ready.build, ready.task, config_.build);
    record_fault(FaultKind::refused_peer, now, [&] {
      return fmt::format("pid {} on {} runs build {} of '{}'", ready.pid, ready.host, ready.build,
                         ready.task);
    });
    if (refused_.size() > 10000) refused_.clear();  // bounded, whatever strangers send
    if (refused_.insert(id).second && refused_log_.spend()) {
      spdlog::error(
          "refused worker {} (pid {} on {}): it runs build {} of '{}', this producer runs "
          "build {}",
          printable(id), ready.pid, ready.host, ready.build, ready.task, config_.build);
    }
    outbox_.send(id, wire::Refuse{reason});
    return;
  }
  if (ready.predecessor) record_crash(ready, now);
  if (workers_.contains(id)) drop_worker(id, "registered again", now);
  // The table of workers is bounded, in entries and in the bytes their names take: beyond
  // either, a READY is not registered (the worker, asked WHO on its next heartbeat, tries again).
  const std::size_t bytes = registration_bytes(ready);
  if (workers_.size() >= config_.max_workers ||
      registered_bytes_ + bytes > config_.max_registered_bytes) {
    if (full_log_.spend()) {
      spdlog::warn(
          "did not register worker {} (pid {} on {}): the producer holds {} worker(s) in {} "
          "bytes, the most it keeps is {} in {} MiB ({} READY(s) not registered so far)",
          printable(id), ready.pid, ready.host, workers_.size(), registered_bytes_,
          config_.max_workers, config_.max_registered_bytes >> 20, full_log_.count());
    }
    return;
  }

  Worker w;
  w.id = id;
  w.info = ready;
  w.producers.insert(ready.producers.begin(), ready.producers.end());
  w.sources.insert(ready.sources.begin(), ready.sources.end());
  // Kept once, in the sets above.
  w.info.producers.clear();
  w.info.sources.clear();
  w.bytes = bytes;
  registered_bytes_ += bytes;
  w.last_heard = now;
  w.last_sent = now;
  w.totals.host = ready.host;
  w.totals.pid = ready.pid;
  w.totals.connected = true;
  auto [it, inserted] = workers_.emplace(id, std::move(w));
  spdlog::debug("worker {} joined (pid {} on {}, credit {}); {} worker(s)", printable(id),
                ready.pid, ready.host, ready.credit, workers_.size());
  if (state_ == JobState::running) {
    update_eligibility(now);
    assign_to(it->second, now);
  }
}

void Scheduler::record_crash(const wire::Ready& ready, Clock::time_point now) {
  const wire::Predecessor& p = *ready.predecessor;
  const std::string how = describe_end(p);
  // Every registration of the dead process (it may have reconnected under a new identity).
  std::vector<std::string> dead;
  for (const auto& [id, w] : workers_) {
    if (w.info.host == ready.host && w.info.pid == p.pid) dead.push_back(id);
  }
  for (const std::string& id : dead) drop_worker(id, how, now);
  if (!p.in_slice || state_ != JobState::running || !(p.job == job_id_) ||
      p.slice >= slices_.size()) {
    return;
  }
  SliceState& s = slices_[p.slice];
  if (s.done) return;
  ++s.crashes;
  record_fault(FaultKind::slice_crash, now, [&] {
    return fmt::format("slice {}: worker pid {} on {} {}", p.slice, p.pid, ready.host, how);
  });
  if (crash_log_.spend()) {
    spdlog::warn("slice {} was running when worker pid {} on {} {} (attempt {} of {})", p.slice,
                 p.pid, ready.host, how, s.crashes, config_.max_attempts);
  }
  if (s.crashes >= config_.max_attempts) {
    fail(p.slice, ready.host, p.pid,
         p.signal != 0
             ? fmt::format("signal SIG{}", sigabbrev_np(p.signal) ? sigabbrev_np(p.signal) : "?")
             : "exit",
         fmt::format("the worker process {} while computing this slice, on each of {} attempts",
                     how, s.crashes),
         s.crashes + s.errors);
  }
}

void Scheduler::on_result(const std::string& id, const wire::Result& result,
                          std::span<const std::string_view> values, Clock::time_point now,
                          std::size_t wire_bytes) {
  auto it = workers_.find(id);
  if (it == workers_.end()) {
    ++drops_.late;
    record_fault(FaultKind::late_result, now, [&] {
      return fmt::format("batch {} from worker {}, given up on earlier", result.batch,
                         printable(id));
    });
    if (late_log_.spend()) {
      spdlog::info("dropped a late result of batch {} from worker {}, given up on earlier",
                   result.batch, printable(id));
    }
    outbox_.send(id, wire::Who{});
    return;
  }
  Worker& w = it->second;
  w.last_heard = now;
  w.totals.bytes_in += wire_bytes;
  if (WorkerStats* record = w.stats_job == jobs_started_ ? job_record(w) : nullptr) {
    record->bytes_in += wire_bytes;
  }
  auto b = w.batches.find(result.batch);
  if (b == w.batches.end() || !(b->second.job == result.job) || !(result.job == job_id_)) {
    if (!(result.job == job_id_)) {
      ++drops_.stale;
      record_fault(FaultKind::stale_result, now, [&] {
        return fmt::format("batch {} of job {} from worker {}", result.batch, result.job.seq,
                           printable(id));
      });
      spdlog::debug("dropped a result of another job from worker {}", printable(id));
    } else if (result.batch < next_batch_) {
      // Issued once, then taken back: the worker was given up on, or the job moved on.
      ++drops_.late;
      record_fault(FaultKind::late_result, now, [&] {
        return fmt::format("batch {} from worker {}: handed out again", result.batch,
                           printable(id));
      });
      if (late_log_.spend()) {
        spdlog::info(
            "dropped a late result of batch {} from worker {}: its slices were handed "
            "out again",
            result.batch, printable(id));
      }
    } else {
      ++drops_.malformed;
      record_fault(FaultKind::malformed_result, now, [&] {
        return fmt::format("batch {} from worker {}: never sent", result.batch, printable(id));
      });
      if (malformed_log_.spend()) {
        spdlog::warn("dropped a result of batch {} from worker {}, which was never sent",
                     result.batch, printable(id));
      }
    }
    return;
  }
  Batch batch = std::move(b->second);
  w.batches.erase(b);

  bool matches = result.outcomes.size() == batch.slices.size();
  for (std::size_t i = 0; matches && i < batch.slices.size(); ++i) {
    matches = result.outcomes[i].slice == batch.slices[i];
  }
  if (!matches) {
    ++drops_.malformed;
    record_fault(FaultKind::malformed_result, now, [&] {
      return fmt::format("batch {} from worker {}: slices not in it", result.batch, printable(id));
    });
    if (malformed_log_.spend()) {
      spdlog::warn("worker {} answered batch {} with slices that were not in it; re-queued them",
                   printable(id), result.batch);
    }
    for (SliceIndex s : batch.slices) release(s);
    assign_all(now);
    return;
  }
  // Who computed what, for whoever audits a run (-v): the id names the worker's key and host.
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("job {}: worker {} returned batch {}: slices {}", result.job.seq, printable(id),
                  result.batch, slice_list_text(batch.slices));
  }

  // What the batch took beyond computing: shipping its payload, queues, the round trip.
  double computed_ns = 0;
  for (const wire::Outcome& o : result.outcomes) computed_ns += static_cast<double>(o.compute_ns);
  const double took_ns = std::chrono::duration<double, std::nano>(now - batch.sent).count();
  const double overhead_ns = std::max(0.0, took_ns - computed_ns);
  mean_overhead_ns_ += (overhead_ns - mean_overhead_ns_) / 8;

  std::size_t next_value = 0;
  bool batch_recorded = false;
  for (std::size_t i = 0; i < batch.slices.size() && state_ == JobState::running; ++i) {
    const wire::Outcome& outcome = result.outcomes[i];
    const SliceIndex slice = batch.slices[i];
    SliceState& s = slices_[slice];
    if (outcome.ok) {
      const std::string_view value = values[next_value++];
      if (s.done) {
        --s.copies;
        ++drops_.duplicate;
        record_fault(FaultKind::duplicate_result, now,
                     [&] { return fmt::format("slice {} from worker {}", slice, printable(id)); });
        continue;
      }
      try {
        job_->check_partial(value);
      } catch (const std::exception& e) {
        ++drops_.malformed;
        record_fault(FaultKind::malformed_result, now, [&] {
          return fmt::format("slice {} from worker {}: {}", slice, printable(id), e.what());
        });
        if (malformed_log_.spend()) {
          spdlog::warn(
              "worker {} sent a partial value for slice {} that does not decode ({}); "
              "slice re-queued",
              printable(id), slice, e.what());
        }
        release(slice);
        continue;
      }
      --s.copies;
      s.done = true;
      ++done_count_;
      ++w.slices_done;
      count_slice(w, slice, outcome, batch.sent, now, batch_recorded);
      partials_.set(slice, value);
      // A running mean of kernel time per slice sizes the next batches.
      ++timed_slices_;
      mean_slice_ns_ += (static_cast<double>(outcome.compute_ns) - mean_slice_ns_) /
                        static_cast<double>(std::min<std::size_t>(timed_slices_, 64));
      // And this worker's own, for speculation; what it reports is capped at what its batch
      // took, so that no worker can claim to be slower than it was and draw copies of its own.
      ++w.job_timed_slices;
      w.job_slice_ns +=
          (std::min(static_cast<double>(outcome.compute_ns), took_ns) - w.job_slice_ns) /
          static_cast<double>(std::min<std::size_t>(w.job_timed_slices, 16));
    } else {
      --s.copies;
      if (s.done) continue;
      ++s.errors;
      record_fault(FaultKind::slice_error, now, [&] {
        return fmt::format("slice {} on worker {}: {}: {}", slice, printable(id),
                           outcome.error_type, outcome.error_message);
      });
      if (s.errors > config_.error_retries) {
        fail(slice, w.info.host, w.info.pid, outcome.error_type, outcome.error_message,
             s.errors + s.crashes);
        return;
      }
      if (threw_log_.spend()) {
        // (Texts from workers were made printable on arrival: only cut here.)
        spdlog::warn("slice {} threw {} on worker {}: {} (attempt {} of {}); retrying", slice,
                     outcome.error_type, printable(id),
                     std::string_view(outcome.error_message).substr(0, 512), s.errors,
                     config_.error_retries + 1);
      }
      if (s.copies == 0) requeue(slice);
    }
  }
  if (state_ != JobState::running) return;
  if (done_count_ == slices_.size()) {
    state_ = JobState::done;
    return;
  }
  assign_to(w, now);
  if (pending_.empty()) speculate_to(w, now);
}

void Scheduler::on_heartbeat(const std::string& id, Clock::time_point now, std::size_t wire_bytes) {
  auto it = workers_.find(id);
  if (it != workers_.end()) {
    Worker& w = it->second;
    w.last_heard = now;
    w.totals.bytes_in += wire_bytes;
    if (w.stats_job == jobs_started_ && state_ == JobState::running) {
      if (WorkerStats* record = job_record(w)) record->bytes_in += wire_bytes;
    }
  } else if (!refused_.contains(id)) {
    outbox_.send(id, wire::Who{});  // a worker of an earlier producer run: ask it to register
  }
}

void Scheduler::on_bye(const std::string& id, std::string_view reason, Clock::time_point now) {
  if (!workers_.contains(id)) return;
  drop_worker(id, fmt::format("it is leaving: {}", reason), now);
}

void Scheduler::on_cancelled(const std::string& id, const wire::JobId& job) {
  auto it = workers_.find(id);
  if (it != workers_.end() && it->second.cancel_unread == job) it->second.cancel_unread.reset();
}

std::size_t Scheduler::cancels_unread() const {
  return static_cast<std::size_t>(
      std::count_if(workers_.begin(), workers_.end(),
                    [](const auto& e) { return e.second.cancel_unread.has_value(); }));
}

void Scheduler::on_garbage(const std::string& id, Clock::time_point now) {
  if (!workers_.contains(id)) return;
  // What it said is lost; if it was a result, waiting for it would wait forever.
  drop_worker(id, "it sent a message that does not decode", now);
  outbox_.send(id, wire::Who{});
}

void Scheduler::forget_workers() {
  for (auto& [id, w] : workers_) {
    w.totals.connected = false;
    departed_.push_back(std::move(w.totals));
    if (departed_.size() > Observation::kMaxWorkers) departed_.pop_front();
  }
  workers_.clear();
  registered_bytes_ = 0;
}

void Scheduler::drop_worker(const std::string& id, std::string_view why, Clock::time_point now) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  std::vector<SliceIndex> requeued;
  for (const auto& [batch_id, batch] : it->second.batches) {
    if (state_ != JobState::running || !(batch.job == job_id_)) continue;
    for (SliceIndex s : batch.slices) {
      if (release(s)) requeued.push_back(s);
    }
  }
  std::sort(requeued.begin(), requeued.end());
  Worker& w = it->second;
  if (state_ == JobState::running) {
    record_fault(FaultKind::worker_dropped, now, [&] {
      return fmt::format("worker {} (pid {} on {}): {}; re-queued {} slice(s)", printable(id),
                         w.info.pid, w.info.host, why, requeued.size());
    });
    if (w.stats_job == jobs_started_) {
      if (WorkerStats* record = job_record(w)) {
        record->dropped = true;
        record->drop_reason = printable(why, 200);
      }
    }
  }
  w.totals.connected = false;
  departed_.push_back(std::move(w.totals));
  if (departed_.size() > Observation::kMaxWorkers) departed_.pop_front();
  if (requeued.empty()) {
    spdlog::debug("worker {} (pid {} on {}) left: {}", printable(id), it->second.info.pid,
                  it->second.info.host, why);
  } else if (lost_log_.spend()) {
    spdlog::warn("worker {} (pid {} on {}) lost: {}; re-queued slices {}", printable(id),
                 it->second.info.pid, it->second.info.host, why, slice_list(requeued));
  }
  registered_bytes_ -= it->second.bytes;
  workers_.erase(it);
  if (state_ == JobState::running) {
    update_eligibility(now);
    assign_all(now);
  }
}

bool Scheduler::release(SliceIndex slice) {
  SliceState& s = slices_[slice];
  if (s.copies > 0) --s.copies;
  return s.copies == 0 && requeue(slice);
}

bool Scheduler::requeue(SliceIndex slice) {
  SliceState& s = slices_[slice];
  if (s.done || s.queued) return false;
  s.queued = true;
  pending_.push_front(slice);  // first out again, so a lost slice does not wait behind the rest
  ++reruns_;
  ++lifetime_reruns_;
  return true;
}

void Scheduler::fail(SliceIndex slice, const std::string& host, std::int64_t pid, std::string type,
                     std::string message, unsigned attempts) {
  SliceError::Details d;
  d.slice = slice;
  d.offset = slices_[slice].part.offset;
  d.limit = slices_[slice].part.limit;
  d.host = host;
  d.pid = pid;
  d.exception_type = std::move(type);
  d.message = std::move(message);
  d.attempts = attempts;
  failure_ = std::move(d);
  state_ = JobState::failed;
}

// --- time --------------------------------------------------------------------------------

void Scheduler::forgive_silence(Clock::time_point now) {
  for (auto& [id, w] : workers_) w.last_heard = std::max(w.last_heard, now);
}

void Scheduler::tick(Clock::time_point now) {
  std::vector<std::string> silent;
  for (const auto& [id, w] : workers_) {
    if (now - w.last_heard >= config_.liveness) silent.push_back(id);
  }
  for (const std::string& id : silent) {
    drop_worker(id, fmt::format("silent for {:.1f} s", seconds(now - workers_.at(id).last_heard)),
                now);
  }
  for (auto& [id, w] : workers_) {
    if (now - w.last_sent >= config_.heartbeat) send(w, wire::Heartbeat{config_.session}, now);
  }
  if (state_ != JobState::running) return;
  update_eligibility(now);
  if (unserved_since_ && now - *unserved_since_ >= grace_) {
    state_ = JobState::no_workers;
    return;
  }
  assign_all(now);
  if (pending_.empty()) {
    for (auto& [id, w] : workers_) speculate_to(w, now);
  }
}

Clock::time_point Scheduler::next_deadline(Clock::time_point now) const {
  Clock::time_point next = Clock::time_point::max();
  for (const auto& [id, w] : workers_) {
    next = std::min({next, w.last_sent + config_.heartbeat, w.last_heard + config_.liveness});
  }
  if (state_ == JobState::running) {
    if (unserved_since_) next = std::min(next, *unserved_since_ + grace_);
    if (config_.speculate && pending_.empty() && mean_slice_ns_ > 0) {
      // Look for stragglers a few times per expected batch time.
      const auto step = std::chrono::nanoseconds(static_cast<std::int64_t>(
          std::clamp(mean_slice_ns_ * static_cast<double>(batch_size()), 1e6, 1e8)));
      next = std::min(next, now + step);
    }
  }
  return next;
}

// --- jobs --------------------------------------------------------------------------------

void Scheduler::start_job(const JobRequest& request, wire::JobId id,
                          std::chrono::milliseconds grace, Clock::time_point now,
                          bool record_slices) {
  job_ = &request;
  job_id_ = id;
  state_ = JobState::running;
  const std::vector<Part> parts = split(request.length, request.parts);
  slices_.assign(parts.size(), SliceState{});
  pending_.clear();
  for (SliceIndex i = 0; i < parts.size(); ++i) {
    slices_[i].part = parts[i];
    slices_[i].queued = true;
    pending_.push_back(i);
  }
  done_count_ = 0;
  partials_ = Partials(parts.size());
  failure_.reset();
  // The cost measured in the last job of this producer over this source, if any: a repeated
  // small job then goes out in one round trip instead of probing with one slice first.
  const auto known = known_cost_.find(cost_key(request));
  mean_slice_ns_ = known == known_cost_.end() ? 0 : known->second.slice_ns;
  // What a slice weighs on the wire: known for raw memory; for the rest, learnt from the
  // batches sent (payloads encoded as they go, or none at all).
  sent_bytes_per_slice_ = request.memory.kind == PayloadKind::raw && !parts.empty()
                              ? static_cast<double>(request.memory.element_size * request.length) /
                                    static_cast<double>(parts.size())
                              : (known == known_cost_.end() ? 0 : known->second.bytes_per_slice);
  timed_slices_ = 0;
  for (auto& [worker_id, w] : workers_) {
    w.job_slice_ns = 0;
    w.job_timed_slices = 0;
  }
  drops_ = {};
  reruns_ = 0;
  grace_ = grace;
  // Statistics: totals and workers always (per batch, cheap); slices only when asked for.
  ++jobs_started_;
  job_started_ = now;
  job_faults_ = {};
  stats_ = JobStats{};
  stats_.job = id.seq;
  stats_.started_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  stats_.producer = request.producer;
  stats_.source = request.source;
  stats_.elements = request.length;
  stats_.slices_total = parts.size();
  record_slices_ = record_slices;
  counted_slices_.clear();
  counted_batches_.clear();
  if (record_slices) counted_slices_.reserve(parts.size());
  unserved_since_.reset();
  if (parts.empty()) {
    state_ = JobState::done;
    return;
  }
  update_eligibility(now);
  assign_all(now);
}

std::string Scheduler::cost_key(const JobRequest& request) {
  return request.producer + '\n' + request.source;
}

void Scheduler::finish_job() {
  if (job_ != nullptr && timed_slices_ > 0) {
    if (known_cost_.size() > 1024) known_cost_.clear();
    known_cost_[cost_key(*job_)] = {mean_slice_ns_, sent_bytes_per_slice_};
  }
  for (auto& [id, w] : workers_) {
    const auto held =
        std::erase_if(w.batches, [&](const auto& entry) { return entry.second.job == job_id_; });
    if (held > 0) {
      outbox_.send(id, wire::Cancel{job_id_});
      w.cancel_unread = job_id_;
    }
  }
  if (state_ != JobState::idle) lifetime_slices_done_ += done_count_;
  state_ = JobState::idle;
  job_ = nullptr;
  pending_.clear();
}

Partials Scheduler::take_partials() {
  return std::exchange(partials_, Partials());
}

std::vector<std::size_t> Scheduler::missing_slices() const {
  std::vector<std::size_t> missing;
  for (std::size_t i = 0; i < slices_.size(); ++i) {
    if (!slices_[i].done) missing.push_back(i);
  }
  return missing;
}

// --- assignment --------------------------------------------------------------------------

bool Scheduler::serves(const Worker& w) const {
  return job_ != nullptr && w.producers.contains(job_->producer) &&
         w.sources.contains(job_->source);
}

void Scheduler::update_eligibility(Clock::time_point now) {
  eligible_workers_ = static_cast<std::size_t>(std::count_if(
      workers_.begin(), workers_.end(), [&](const auto& entry) { return serves(entry.second); }));
  if (eligible_workers_ > 0) {
    unserved_since_.reset();
  } else if (!unserved_since_) {
    unserved_since_ = now;
    // (A peer serving the job could come and go to repeat it: within a budget.)
    if (!workers_.empty() && unserved_log_.spend()) {
      spdlog::warn("{} worker(s) connected, but none serves producer '{}' over source '{}'",
                   workers_.size(), job_->producer, job_->source);
    }
  }
}

std::size_t Scheduler::batch_size() const {
  if (mean_slice_ns_ <= 0) return 1;  // cost unknown yet: one slice at a time
  const double mean = std::max(mean_slice_ns_, 1.0);
  const double target = std::chrono::duration<double, std::nano>(config_.batch_target).count();
  const double pending = static_cast<double>(pending_.size());
  const double workers = static_cast<double>(std::max<std::size_t>(eligible_workers_, 1));
  // About batch_target of work per batch; but a share of what is left, so that the last
  // batches end together: half a share while plenty is left, a whole one when it all fits.
  // A whole share counts what busy workers hold too, so that an idle worker takes what levels
  // it with them: in a small job's first round the second worker takes the other half, not a
  // half of what is pending, whose rest would cost a second round trip after the first.
  const double by_time = target / mean;
  const bool all_fits = pending * mean <= target;
  const double share =
      std::ceil(all_fits ? std::min(pending, (pending + slices_in_flight()) / workers)
                         : pending / (2 * workers));
  // And never less than a round trip's worth, or the last batches go out one after another;
  // but when what is left fits in one batch, workers with nothing to do share it first: a
  // small job of cheap slices is not all sent to the first worker while the others wait. Not
  // when the shares would be tiny: a second round trip in parallel costs more than they save.
  double round_trip = kRoundTripNs / mean;
  const double idle_share = std::ceil(pending / idle_workers());
  if (all_fits && idle_share * (mean + kSliceOverheadNs) >= kShareWorthNs) {
    round_trip = std::min(round_trip, idle_share);
  }
  // (Never more than a worker accepts in one ASSIGN, whatever the configuration says.)
  const double most = static_cast<double>(std::min(config_.max_batch, wire::kMaxSlicesPerBatch));
  double size = std::min({most, by_time, std::max(share, round_trip)});
  // Slices that weigh megabytes go one to a batch: a worker would hold the whole batch's
  // payloads while computing its first slice, and next to shipping them a round trip is little.
  if (sent_bytes_per_slice_ > 0) size = std::min(size, kHeavyBatchBytes / sent_bytes_per_slice_);
  return static_cast<std::size_t>(std::max(1.0, size));
}

double Scheduler::slices_in_flight() const {
  // Per batch, not per slice: this is asked for with each batch sent near a job's end, when
  // many workers may hold thousands of slices. A slice a copy has done meanwhile still counts.
  std::size_t held = 0;
  for (const auto& [id, w] : workers_) {
    if (!serves(w)) continue;
    for (const auto& [number, batch] : w.batches) {
      if (batch.job == job_id_) held += batch.slices.size();
    }
  }
  return static_cast<double>(held);
}

double Scheduler::idle_workers() const {
  const auto idle = std::count_if(workers_.begin(), workers_.end(), [&](const auto& entry) {
    const Worker& w = entry.second;
    return serves(w) && std::none_of(w.batches.begin(), w.batches.end(),
                                     [&](const auto& b) { return b.second.job == job_id_; });
  });
  return static_cast<double>(std::max<std::ptrdiff_t>(idle, 1));
}

std::size_t Scheduler::window(const Worker& w) const {
  // Queueing a second batch behind the one computing saves a round trip per batch, which only
  // matters when batches are short; behind a long one it would hold slices another worker could
  // take. So prefetch only once batches are known to be short.
  // Nor while so little is left that other workers would go without.
  const double batch_ns = mean_slice_ns_ * static_cast<double>(batch_size());
  const bool short_batches = mean_slice_ns_ > 0 && batch_ns < kPrefetchBelowNs;
  // Nor when batches carry megabytes (a source in the producer's memory): one queued ahead
  // would hold its payload in the worker's memory all through the batch before it, doubling
  // what the worker needs, to save a round trip that is little beside shipping it.
  const bool light_batches =
      sent_bytes_per_slice_ * static_cast<double>(batch_size()) < kHeavyBatchBytes;
  const bool plenty_left = pending_.size() >= 2 * eligible_workers_ * batch_size();
  return short_batches && light_batches && plenty_left ? w.info.credit : 1;
}

std::size_t Scheduler::assign_to(Worker& w, Clock::time_point now, std::size_t max_batches) {
  if (state_ != JobState::running || !serves(w)) return 0;
  std::size_t sent = 0;
  while (sent < max_batches && w.batches.size() < window(w) && !pending_.empty()) {
    const std::size_t size = batch_size();
    wire::Assign assign{
        job_id_, next_batch_++, job_->producer, job_->source, job_->params, job_->memory.kind, {}};
    Batch batch{job_id_, {}, now};
    while (assign.slices.size() < size && !pending_.empty()) {
      const SliceIndex slice = pending_.front();
      pending_.pop_front();
      SliceState& s = slices_[slice];
      s.queued = false;
      if (s.done) continue;
      ++s.copies;
      ++s.attempts;
      assign.slices.push_back({slice, s.part.offset, s.part.limit});
      batch.slices.push_back(slice);
    }
    if (batch.slices.empty()) break;
    const std::size_t bytes = outbox_.send_assign(w.id, assign, *job_);
    // The slices' own weight: the parameters go in every ASSIGN, however many slices it has.
    const std::size_t shared = std::min(bytes, job_->params.size());
    sent_bytes_per_slice_ =
        static_cast<double>(bytes - shared) / static_cast<double>(assign.slices.size());
    count_sent(w, bytes);
    w.last_sent = now;
    w.batches.emplace(assign.batch, std::move(batch));
    ++sent;
  }
  return sent;
}

void Scheduler::assign_all(Clock::time_point now) {
  // One batch per worker per round, so that the first worker does not take everything.
  bool progress = true;
  while (progress && !pending_.empty() && state_ == JobState::running) {
    progress = false;
    for (auto& [id, w] : workers_) progress |= assign_to(w, now, 1) > 0;
  }
}

bool Scheduler::copyable(SliceIndex slice) const {
  return !slices_[slice].done && slices_[slice].copies <= 1;
}

bool Scheduler::copyable(const Batch& batch) const {
  return std::any_of(batch.slices.begin(), batch.slices.end(),
                     [&](SliceIndex slice) { return copyable(slice); });
}

bool Scheduler::speculate_to(Worker& w, Clock::time_point now) {
  if (!config_.speculate || !job_->options.speculate || state_ != JobState::running || !serves(w) ||
      !w.batches.empty() || mean_slice_ns_ <= 0) {
    return false;
  }
  // The batch most overdue against its expected time, held by another worker alone; failing
  // that, the one a copy here would end soonest before, by this worker's and its holder's
  // speeds in this job. The mean over all workers sees no straggler in a worker steadily at half
  // speed, yet the last slice it took keeps a faster worker idle to the job's end.
  const Batch* straggler = nullptr;
  double worst = 0;
  const Batch* slower = nullptr;
  double best_saving = 0;
  for (const auto& [id, other] : workers_) {
    if (id == w.id) continue;
    for (const auto& [batch_id, batch] : other.batches) {
      if (!(batch.job == job_id_) || !copyable(batch)) continue;
      const double slices = static_cast<double>(batch.slices.size());
      // Expected: computing, plus what a batch spends beyond that (transfer, queues).
      const double expected = mean_slice_ns_ * slices + mean_overhead_ns_;
      const double elapsed = std::chrono::duration<double, std::nano>(now - batch.sent).count();
      const double overdue = elapsed / (2 * expected + 5e6);  // > 1: well past its time
      if (overdue > 1 && overdue > worst) {
        worst = overdue;
        straggler = &batch;
      }
      if (w.job_timed_slices >= kSpeedSamples && other.job_timed_slices >= kSpeedSamples) {
        // (The overhead is the same both ways and cancels out.)
        const double here = w.job_slice_ns * slices;
        const double saving = other.job_slice_ns * slices - elapsed - here;
        if (saving >= here / 4 + kCopyWorthNs && saving > best_saving) {
          best_saving = saving;
          slower = &batch;
        }
      }
    }
  }
  const bool late = straggler != nullptr;
  if (!late) straggler = slower;
  if (straggler == nullptr) return false;
  Batch copy{job_id_, {}, now};
  for (SliceIndex slice : straggler->slices) {
    if (copyable(slice)) copy.slices.push_back(slice);
  }
  wire::Assign assign{
      job_id_, next_batch_++, job_->producer, job_->source, job_->params, job_->memory.kind, {}};
  for (SliceIndex slice : copy.slices) {
    SliceState& s = slices_[slice];
    ++s.copies;
    ++s.attempts;
    assign.slices.push_back({slice, s.part.offset, s.part.limit});
  }
  if (late) {
    spdlog::debug("slices {} are late; running a copy on worker {}", slice_list(copy.slices),
                  printable(w.id));
  } else {
    spdlog::debug("slices {} would end {:.0f} ms sooner on worker {}; running a copy",
                  slice_list(copy.slices), best_saving / 1e6, printable(w.id));
  }
  count_sent(w, outbox_.send_assign(w.id, assign, *job_));
  w.last_sent = now;
  w.batches.emplace(assign.batch, std::move(copy));
  return true;
}

void Scheduler::send(Worker& w, const wire::Message& message, Clock::time_point now) {
  outbox_.send(w.id, message);
  w.last_sent = now;
}

std::vector<wire::WorkerStatus> Scheduler::worker_status(Clock::time_point now,
                                                         std::size_t max) const {
  std::vector<wire::WorkerStatus> out;
  out.reserve(workers_.size());
  for (const auto& [id, w] : workers_) {
    const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.last_heard);
    out.push_back({w.info.host, w.info.pid, w.info.credit, w.batches.size(), w.slices_done,
                   static_cast<std::uint64_t>(std::max<std::int64_t>(0, silent.count()))});
  }
  // Busiest first: the workers a user asks about are the ones doing (or not doing) the work.
  const auto keep = std::min(max, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep), out.end(),
                    [](const auto& a, const auto& b) {
                      return std::tie(b.slices_done, a.host, a.pid) <
                             std::tie(a.slices_done, b.host, b.pid);
                    });
  out.resize(keep);
  return out;
}

}  // namespace pymar::detail

namespace pymar::detail {

// --- statistics ----------------------------------------------------------------------------

WorkerStats* Scheduler::job_record(Worker& w) {
  if (w.stats_job == jobs_started_) {
    return w.stats_index < stats_.workers.size() ? &stats_.workers[w.stats_index] : nullptr;
  }
  w.stats_job = jobs_started_;
  if (stats_.workers.size() >= JobStats::kMaxWorkers) {
    ++stats_.workers_left_out;  // counted once: its index stays out of range for this job
    w.stats_index = SIZE_MAX;
    return nullptr;
  }
  w.stats_index = stats_.workers.size();
  WorkerStats& record = stats_.workers.emplace_back();
  record.host = w.info.host;
  record.pid = w.info.pid;
  return &record;
}

void Scheduler::count_sent(Worker& w, std::size_t bytes) {
  w.totals.bytes_out += bytes;
  if (WorkerStats* record = job_record(w)) record->bytes_out += bytes;
}

void Scheduler::count_slice(Worker& w, SliceIndex slice, const wire::Outcome& outcome,
                            Clock::time_point sent, Clock::time_point now, bool& batch_recorded) {
  const std::uint64_t length = slices_[slice].part.limit;
  w.totals.slices += 1;
  w.totals.elements += length;
  w.totals.busy_ns += outcome.compute_ns;
  if (stats_.first_result_ns < 0) stats_.first_result_ns = since_start(now);
  WorkerStats* record = job_record(w);
  if (record != nullptr) {
    record->slices += 1;
    record->elements += length;
    record->compute_ns += outcome.compute_ns;
  }
  if (!record_slices_) return;
  if (!batch_recorded) {
    batch_recorded = true;
    counted_batches_.push_back(
        {counted_slices_.size(),
         record != nullptr ? static_cast<std::int64_t>(w.stats_index) : SliceStats::kNone,
         since_start(sent), since_start(now)});
  }
  counted_slices_.push_back(slice);
  counted_batches_.back().end = counted_slices_.size();
}

SliceStats Scheduler::slice_record(SliceIndex slice) const {
  SliceStats record;
  record.index = slice;
  record.offset = slices_[slice].part.offset;
  record.length = slices_[slice].part.limit;
  record.attempts = slices_[slice].attempts;
  return record;
}

void Scheduler::slice_runs(std::vector<SliceRun>& runs) {
  constexpr std::uint32_t kUncounted = std::numeric_limits<std::uint32_t>::max();
  batch_of_.assign(slices_.size(), kUncounted);
  std::size_t begin = 0;
  for (std::size_t b = 0; b < counted_batches_.size(); ++b) {
    for (std::size_t k = begin; k < counted_batches_[b].end; ++k) {
      batch_of_[counted_slices_[k]] = static_cast<std::uint32_t>(b);
    }
    begin = counted_batches_[b].end;
  }
  runs.clear();
  for (SliceIndex i = 0; i < slices_.size(); ++i) {
    const SliceState& s = slices_[i];
    SliceRun next{i, 1, s.part.offset, s.part.limit, SliceStats::kNone, s.attempts, -1, -1};
    if (batch_of_[i] != kUncounted) {
      const CountedBatch& batch = counted_batches_[batch_of_[i]];
      next.worker = batch.worker;
      next.start_ns = batch.start_ns;
      next.end_ns = batch.end_ns;
    }
    if (!runs.empty()) {
      SliceRun& last = runs.back();
      if (next.length == last.length && next.offset == last.offset + last.count * last.length &&
          next.worker == last.worker && next.attempts == last.attempts &&
          next.start_ns == last.start_ns && next.end_ns == last.end_ns) {
        ++last.count;
        continue;
      }
    }
    runs.push_back(next);
  }
}

JobStats Scheduler::take_stats(Clock::time_point now) {
  stats_.slices_done = done_count_;
  stats_.reruns = reruns_;
  stats_.wall_ns = since_start(now);
  for (std::size_t k = 0; k < kFaultKinds; ++k) {
    if (job_faults_[k] > 0)
      stats_.fault_counts[std::string(to_string(FaultKind(k)))] = job_faults_[k];
  }
  // Every slice's record, for the caller (map_with_stats, --stats) only: an observer sees the
  // most recent ones, through snapshot_stats, and a job of 10^4 slices would otherwise make
  // 560 KB of records that nobody reads.
  if (record_slices_ && job_ != nullptr && job_->stats != nullptr && job_->slice_runs != nullptr) {
    slice_runs(*job_->slice_runs);
  } else if (record_slices_ && job_ != nullptr && job_->stats != nullptr) {
    // Every slice in order, then who computed each whose result counted, batch by batch.
    stats_.slices = reuse_slice_records();
    stats_.slices.reserve(slices_.size());
    for (SliceIndex i = 0; i < slices_.size(); ++i) stats_.slices.push_back(slice_record(i));
    std::size_t begin = 0;
    for (const CountedBatch& batch : counted_batches_) {
      for (std::size_t k = begin; k < batch.end; ++k) {
        SliceStats& record = stats_.slices[counted_slices_[k]];
        record.worker = batch.worker;
        record.start_ns = batch.start_ns;
        record.end_ns = batch.end_ns;
      }
      begin = batch.end;
    }
  }
  return std::exchange(stats_, JobStats{});
}

JobStats Scheduler::snapshot_stats(Clock::time_point now, std::size_t max_slices) const {
  JobStats copy;
  // Everything but the slices, which may be many.
  copy.job = stats_.job;
  copy.producer = stats_.producer;
  copy.source = stats_.source;
  copy.started_unix_ms = stats_.started_unix_ms;
  copy.elements = stats_.elements;
  copy.slices_total = stats_.slices_total;
  copy.slices_done = done_count_;
  copy.first_result_ns = stats_.first_result_ns;
  copy.reruns = reruns_;
  copy.wall_ns = since_start(now);
  copy.workers = stats_.workers;
  copy.workers_left_out = stats_.workers_left_out;
  copy.faults = stats_.faults;
  copy.faults_left_out = stats_.faults_left_out;
  for (std::size_t k = 0; k < kFaultKinds; ++k) {
    if (job_faults_[k] > 0)
      copy.fault_counts[std::string(to_string(FaultKind(k)))] = job_faults_[k];
  }
  if (record_slices_) {
    // The most recently counted slices, oldest first: the batches', walked back from the last.
    const std::size_t n = std::min(max_slices, counted_slices_.size());
    const std::size_t first = counted_slices_.size() - n;
    copy.slices.reserve(n);
    auto batch = std::upper_bound(counted_batches_.begin(), counted_batches_.end(), first,
                                  [](std::size_t k, const CountedBatch& b) { return k < b.end; });
    for (std::size_t k = first; k < counted_slices_.size(); ++k) {
      while (k >= batch->end) ++batch;
      SliceStats record = slice_record(counted_slices_[k]);
      record.worker = batch->worker;
      record.start_ns = batch->start_ns;
      record.end_ns = batch->end_ns;
      copy.slices.push_back(record);
    }
  }
  return copy;
}

void Scheduler::observe_lifetime(Observation& into, std::size_t max_workers) const {
  into.slices_done = lifetime_slices_done_ + (state_ == JobState::running ? done_count_ : 0);
  into.reruns = lifetime_reruns_;
  for (std::size_t k = 0; k < kFaultKinds; ++k) {
    if (lifetime_faults_[k] > 0)
      into.faults[std::string(to_string(FaultKind(k)))] = lifetime_faults_[k];
  }
  into.workers_connected = workers_.size();
  into.workers.clear();
  into.workers.reserve(workers_.size() + departed_.size());
  for (const auto& [id, w] : workers_) into.workers.push_back(w.totals);
  into.workers.insert(into.workers.end(), departed_.begin(), departed_.end());
  const std::size_t keep = std::min(max_workers, into.workers.size());
  std::partial_sort(into.workers.begin(), into.workers.begin() + static_cast<std::ptrdiff_t>(keep),
                    into.workers.end(), [](const WorkerTotals& a, const WorkerTotals& b) {
                      return a.slices > b.slices;
                    });
  into.workers.resize(keep);
}

}  // namespace pymar::detail
