#include "producer/dispatcher.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <variant>

#include <fmt/format.h>
#include <zmq_addon.hpp>

#include "common/build_id.hpp"
#include "common/doorbell.hpp"
#include "common/log.hpp"
#include "common/printable.hpp"
#include "common/time_slice.hpp"
#include "producer/inbound.hpp"
#include "pymar/codec.hpp"
#include "pymar/error.hpp"
#include "pymar/version.hpp"

namespace pymar::detail {
namespace {

// Below this size a payload is copied: ZeroMQ would copy it into the message anyway, and the
// release callback would cost more than it saves.
constexpr std::size_t kZeroCopyMinBytes = 16 << 10;

// Messages taken from the socket before timers get a turn.
constexpr int kReceiveBurst = 512;
// At most this long (or the liveness limit, if shorter) an ending producer waits for its workers
// to confirm the CANCEL of its last job.
constexpr std::chrono::seconds kCancelReadWait(2);

// How far a job got: a plain log line this often, or the live line redrawn at most this often.
constexpr std::chrono::seconds kProgressInterval{5};
constexpr std::chrono::milliseconds kLiveInterval{200};

/// "12.3 s", "4 min 05 s", "2 h 07 min".
std::string duration_text(double seconds) {
  if (seconds < 60) return fmt::format("{:.1f} s", seconds);
  const auto whole = static_cast<long>(seconds);
  if (whole < 3600) return fmt::format("{} min {:02} s", whole / 60, whole % 60);
  return fmt::format("{} h {:02} min", whole / 3600, whole % 3600 / 60);
}

/// "950", "12.3 k", "4.56 M": elements per second.
std::string rate_text(double per_second) {
  if (per_second < 1e3) return fmt::format("{:.0f}", per_second);
  if (per_second < 1e6) return fmt::format("{:.1f} k", per_second / 1e3);
  if (per_second < 1e9) return fmt::format("{:.2f} M", per_second / 1e6);
  return fmt::format("{:.2f} G", per_second / 1e9);
}

// The garbage kind of a message sent under another peer's routing id (with keys).
constexpr std::string_view kForeignRoutingId = "a routing id of another key";

// A job submitted this soon after the port was bound waits, at most this long, for the workers
// whose doorbells rang to register (about 3 ms): it then starts cut for all of them.
constexpr std::chrono::milliseconds kBellWait{50};

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::uint64_t random_session() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

}  // namespace

DispatcherOptions with_session(DispatcherOptions options) {
  if (options.scheduler.session == 0) options.scheduler.session = random_session();
  return options;
}

Dispatcher::Dispatcher(DispatcherOptions options)
    : options_(with_session(std::move(options))),
      context_(1),
      scheduler_(options_.scheduler, *this) {
  // libzmq starts its I/O threads with the first socket; they and the dispatcher's thread pass
  // messages, and get the short slice that lets them run as soon as they wake.
  const MessagingThreadsStart messaging;
  if (options_.keys) {
    std::set<std::string> allowed = options_.keys->allowed;
    // The producer's own key too: its embedded pool (--produce -w N) uses the producer's pair.
    allowed.insert(options_.keys->own.public_key);
    gate_.emplace(context_, std::move(allowed));
  }
  bind_router();
  current_id_.session = options_.scheduler.session;
  thread_ = std::thread([this] { loop(); });
}

Dispatcher::~Dispatcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
  router_.close();
  gate_.reset();
  context_.close();  // returns once ZeroMQ has released every payload it held
}

void Dispatcher::bind_router() {
  router_ = zmq::socket_t(context_, zmq::socket_type::router);
  // A CANCEL on its way is worth a short wait at exit; on a loaded host the I/O thread may not
  // run for a few hundred milliseconds.
  router_.set(zmq::sockopt::linger, 1000);
  router_.set(zmq::sockopt::router_handover, 1);
  router_.set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
  router_.set(zmq::sockopt::tcp_keepalive, 1);
  // Far above what a worker of ours is ever sent at once (its credit's batches, heartbeats), but
  // bounded: replies to a peer that never reads are dropped rather than queued without end.
  router_.set(zmq::sockopt::sndhwm, 10000);
  if (options_.keys) {
    router_.set(zmq::sockopt::curve_server, 1);
    router_.set(zmq::sockopt::curve_secretkey, options_.keys->own.secret_key);
    router_.set(zmq::sockopt::zap_domain, KeyGate::kDomain);
  }
  std::string endpoint = options_.bind;
  if (port_ != 0) {
    // Re-binding after a reset: the same port, so that workers reconnect to it.
    endpoint = endpoint.substr(0, endpoint.rfind(':') + 1) + std::to_string(port_);
  }
  try {
    router_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    std::string hint;
    if (e.num() == EADDRINUSE)
      hint = " (is another producer running? choose a port with -q HOST:PORT)";
    throw Error(fmt::format("cannot listen on {}: {}{}", endpoint, e.what(), hint));
  }
  endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  port_ = static_cast<std::uint16_t>(std::stoul(endpoint_.substr(endpoint_.rfind(':') + 1)));
  spdlog::debug("bound {}", endpoint_);
  if (options_.ring_doorbells) {
    // Workers on this machine waiting for this port retry only every second or two: tell them
    // the port is open now. A bell only makes them retry what they already would.
    bells_rung_ = ring_doorbells(port_);
    bells_until_ = Clock::now() + kBellWait;
    spdlog::debug("rang {} worker doorbell(s) for port {}", bells_rung_, port_);
  }
}

void Dispatcher::wake() const {
  signal_eventfd(wake_fd_);
}

void Dispatcher::release_payload(void*, void* hint) {
  auto* self = static_cast<Dispatcher*>(hint);
  if (self->payloads_in_flight_.fetch_sub(1) == 1) self->wake();
}

JobOutcome Dispatcher::run(const JobRequest& request) {
  // One job at a time: map() called from several threads runs one call after another.
  std::lock_guard one_job(run_mutex_);
  std::unique_lock lock(mutex_);
  if (interrupted_) throw Interrupted();
  if (broken_) throw Error("the producer's I/O thread stopped: " + *broken_);
  submitted_ = &request;
  outcome_.reset();
  lock.unlock();
  wake();
  lock.lock();
  finished_.wait(lock, [&] { return outcome_.has_value(); });
  JobOutcome outcome = std::move(*outcome_);
  outcome_.reset();
  return outcome;
}

// --- the I/O loop ----------------------------------------------------------------------------

void Dispatcher::loop() {
  std::string why;
  try {
    while (step()) {
    }
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
    why = "an exception of unknown type";
  }
  if (!why.empty()) {
    // Nothing should get here; if something does, the caller of map hears of it, not terminate,
    // and not a wait for ever: also a job that was only waiting for its payloads to be released
    // (a failed rebind after a socket reset) ends.
    spdlog::error("the producer's I/O thread stopped: {}", why);
    std::lock_guard lock(mutex_);
    broken_ = why;
    if (current_ != nullptr || submitted_ != nullptr || finishing_) {
      JobOutcome outcome;
      outcome.end = JobEnd::broken;
      outcome.error = why;
      outcome_ = std::move(outcome);
      finished_.notify_all();
    }
    return;
  }
  if (current_ != nullptr) scheduler_.finish_job();  // tell workers to drop what they hold
  await_cancel_reads();
}

void Dispatcher::await_cancel_reads() {
  // A worker's socket drops what it has not read yet when the producer's connection closes: a
  // CANCEL sent just before the end would be lost, and the worker would compute on for nobody
  // until its liveness limit. Each worker says when it has read one; wait for that, briefly.
  const Clock::time_point until =
      Clock::now() + std::min<Clock::duration>(options_.scheduler.liveness, kCancelReadWait);
  while (scheduler_.cancels_unread() > 0) {
    const Clock::time_point now = Clock::now();
    if (now >= until) {
      spdlog::debug("{} worker(s) did not confirm a CANCEL before the producer ended",
                    scheduler_.cancels_unread());
      return;
    }
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::ceil<std::chrono::milliseconds>(until - now));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return;
    }
    if (item.revents & ZMQ_POLLIN) receive(Clock::now());
  }
}

bool Dispatcher::step() {
  const Clock::time_point now = Clock::now();
  // Stopped or starved of CPU between two turns: the workers' silence was ours to cause.
  if (now - awake_ > options_.scheduler.heartbeat) scheduler_.forgive_silence(now);
  const Clock::time_point tick_at = scheduler_.next_deadline(now);
  Clock::time_point deadline = tick_at;
  if (job_deadline_ && !finishing_) deadline = std::min(deadline, *job_deadline_);
  if (finishing_) deadline = std::min(deadline, drain_deadline_);
  if (current_ != nullptr) deadline = std::min(deadline, next_progress_);
  if (now < bells_until_) deadline = std::min(deadline, bells_until_);
  if (observation_wanted_.load(std::memory_order_relaxed)) {
    deadline = std::min(deadline, next_publish_);
  }
  std::chrono::milliseconds timeout(-1);
  if (deadline != Clock::time_point::max()) {
    timeout = std::max(std::chrono::milliseconds(0),
                       std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
  }
  zmq::pollitem_t items[] = {
      {router_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, wake_fd_.get(), ZMQ_POLLIN, 0},
      {gate_ ? gate_->socket().handle() : nullptr, -1, static_cast<short>(gate_ ? ZMQ_POLLIN : 0),
       0},
      {nullptr, options_.interrupt_fd, ZMQ_POLLIN, 0},
  };
  const int count = options_.interrupt_fd >= 0 ? 4 : 3;
  try {
    zmq::poll(items, count, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
  }
  const Clock::time_point after = Clock::now();
  if (timeout.count() >= 0 && after - (now + timeout) > options_.scheduler.heartbeat) {
    // We overslept (stopped or starved of CPU): the workers' silence was ours to cause.
    scheduler_.forgive_silence(after);
  }
  if (items[0].revents & ZMQ_POLLIN) receive(after);
  if (items[1].revents & ZMQ_POLLIN) {
    drain_eventfd(wake_fd_);
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
    }
    take_commands(after);
  } else if (current_ == nullptr && !finishing_) {
    take_commands(after);  // a job held back for the workers whose doorbells rang
  }
  if (items[2].revents & ZMQ_POLLIN) {
    gate_->answer();
    count_refused_peers(after);
  }
  if (count == 4 && (items[3].revents & ZMQ_POLLIN)) on_interrupt(after);
  if (after >= tick_at) scheduler_.tick(after);
  if (current_ != nullptr && after >= next_progress_) report_progress(after);
  check_job(after);
  if (after >= next_publish_ && observation_wanted_.load(std::memory_order_relaxed)) {
    publish(after);
  }
  awake_ = after;  // a stop anywhere after this shows as a gap next turn
  return true;
}

void Dispatcher::receive(Clock::time_point now) {
  for (int i = 0; i < kReceiveBurst; ++i) {
    frames_.clear();
    std::optional<std::size_t> received;
    try {
      received =
          zmq::recv_multipart(router_, std::back_inserter(frames_), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // anything else ends map with an error (see loop())
      return;                       // a signal: the next turn reads on
    }
    if (!received) return;
    handle(frames_[0], frames_, now);
  }
}

void Dispatcher::handle(zmq::message_t& identity_frame, std::vector<zmq::message_t>& frames,
                        Clock::time_point now) {
  const std::string identity = identity_frame.to_string();
  std::size_t wire_bytes = 0;
  for (const zmq::message_t& frame : frames) wire_bytes += frame.size();
  bytes_in_ += wire_bytes;
  auto garbage = [&](std::string_view why, std::string_view kind) {
    ++garbage_count_;
    scheduler_.record_fault(
        kind == kForeignRoutingId ? FaultKind::refused_message : FaultKind::malformed_message, now,
        [&] { return fmt::format("from peer '{}': {}", printable(identity), why); });
    LogBudget& budget = garbage_logs_[kind];
    if (budget.spend()) {
      spdlog::warn("dropped a malformed message from peer '{}' ({} of this kind so far): {}",
                   printable(identity), budget.count(), why);
    }
    scheduler_.on_garbage(identity, now);
  };
  if (frames.size() >= 2 && gate_ && !sent_with_own_key(identity, frames[1])) {
    return garbage("its routing id names another peer's key", kForeignRoutingId);
  }
  views_.clear();
  for (const zmq::message_t& frame : frames) views_.push_back(frame.to_string_view());
  const Inbound in = read_inbound(views_);
  if (!in.message) {
    if (in.foreign_version) {
      send(identity, wire::Refuse{fmt::format("the producer speaks protocol version {}, not {}",
                                              protocol_version(), *in.foreign_version)});
    }
    return garbage(in.problem, in.problem_kind);
  }
  const wire::Message& message = *in.message;
  if (spdlog::should_log(spdlog::level::trace)) {
    trace_message("received", identity, wire::type_name(message), wire_bytes);
  }
  std::visit(
      Overloaded{
          [&](const wire::Ready& m) { scheduler_.on_ready(identity, m, now); },
          [&](const wire::Result& m) {
            scheduler_.on_result(identity, m, in.values, now, wire_bytes);
          },
          [&](const wire::Heartbeat&) { scheduler_.on_heartbeat(identity, now, wire_bytes); },
          [&](const wire::Bye& m) { scheduler_.on_bye(identity, m.reason, now); },
          [&](const wire::Cancelled& m) { scheduler_.on_cancelled(identity, m.job); },
          [&](const wire::StatusQuery&) { answer_status(identity, now); },
          [&](const auto&) {},  // read_inbound drops what workers do not send
      },
      message);
}

/// STATUS for anyone who reaches the producer (with keys: anyone allowed). Each answer costs a
/// walk over the workers, so answers are limited to kStatusAnswersPerSecond; more are dropped.
void Dispatcher::answer_status(const std::string& asker, Clock::time_point now) {
  if (now - status_window_ >= std::chrono::seconds(1)) {
    status_window_ = now;
    status_answers_ = 0;
  }
  if (++status_answers_ > kStatusAnswersPerSecond) {
    LogBudget& budget = garbage_logs_["status queries over the limit"];
    if (budget.spend()) {
      spdlog::warn("dropped a status query from '{}': over {} a second ({} so far)",
                   printable(asker), kStatusAnswersPerSecond, budget.count());
    }
    return;
  }
  wire::Status status;
  status.task = task_name();
  status.build = build_fingerprint();
  status.host = host_name();
  status.pid = getpid();
  status.uptime_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count());
  if (current_ != nullptr) {
    status.job = wire::JobStatus{
        current_id_.seq,
        current_->producer,
        current_->source,
        scheduler_.slices_total(),
        scheduler_.slices_done(),
        scheduler_.reruns(),
        static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - job_started_).count())};
  }
  status.workers_total = scheduler_.live_workers();
  status.workers = scheduler_.worker_status(now, wire::kMaxStatusWorkers);
  send(asker, status);
  spdlog::debug("answered a status query from '{}'", printable(asker));
}

/// With keys, a worker's routing id begins with its public key, and ZeroMQ tells us the key each
/// message was sent with: a peer can only speak for registrations made with its own key, so one
/// invited peer cannot take over another's slices or results.
bool Dispatcher::sent_with_own_key(const std::string& identity, const zmq::message_t& header) {
  const char* key = zmq_msg_gets(header.handle(), "User-Id");
  if (key == nullptr) return false;
  const std::string_view sender(key);
  return identity.size() > sender.size() && identity.compare(0, sender.size(), sender) == 0 &&
         identity[sender.size()] == '/';
}

void Dispatcher::take_commands(Clock::time_point now) {
  const JobRequest* job = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (submitted_ != nullptr && awaiting_bells(now)) return;  // taken on a later turn
    job = std::exchange(submitted_, nullptr);
  }
  if (job == nullptr) return;
  current_ = job;
  current_id_ = {current_id_.session, next_job_++};
  job_started_ = now;
  job_deadline_.reset();
  if (job->options.timeout) {
    job_deadline_ = now + std::chrono::duration_cast<Clock::duration>(*job->options.timeout);
  }
  garbage_count_ = 0;
  next_progress_ = now + (options_.progress == Progress::live ? kLiveInterval : kProgressInterval);
  ++jobs_started_;
  job_bytes_in_ = bytes_in_;
  job_bytes_out_ = bytes_out_;
  // Slices are recorded for map_with_stats and --stats, and for anyone observing.
  if (observation_wanted_.load(std::memory_order_relaxed)) observing_ = true;
  scheduler_.start_job(*job, current_id_, options_.grace, now, job->stats != nullptr || observing_);
  if (observing_) publish(now);
  spdlog::info("job {}: {} over {}, {} elements in {} slices, {} worker(s) connected",
               current_id_.seq, job->producer, job->source, job->length, scheduler_.slices_total(),
               scheduler_.live_workers());
}

bool Dispatcher::awaiting_bells(Clock::time_point now) const {
  return now < bells_until_ && scheduler_.live_workers() < bells_rung_;
}

void Dispatcher::report_progress(Clock::time_point now) {
  const bool live = options_.progress == Progress::live;
  next_progress_ = now + (live ? kLiveInterval : kProgressInterval);
  if (options_.progress == Progress::off) return;
  const std::size_t done = scheduler_.slices_done();
  const std::size_t total = scheduler_.slices_total();
  const double elapsed = std::chrono::duration<double>(now - job_started_).count();
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  // Slices hold equal shares of the elements, give or take one.
  const double rate = elapsed > 0 ? fraction * static_cast<double>(current_->length) / elapsed : 0;
  const std::string left =
      done == 0 ? "unknown" : duration_text(elapsed * (1 - fraction) / fraction);
  if (live) {
    live_line::show(
        fmt::format("job {}: {}/{} ({:.0f}%) | {} elem/s | {} workers | {} re-run | {}, ~{} left",
                    current_id_.seq, done, total, 100 * fraction, rate_text(rate),
                    scheduler_.live_workers(), scheduler_.reruns(), duration_text(elapsed), left));
    return;
  }
  spdlog::info(
      "job {}: {} of {} slices done ({:.0f}%) after {} on {} worker(s), {} elements/s, {} re-run; "
      "about {} to go",
      current_id_.seq, done, total, 100 * fraction, duration_text(elapsed),
      scheduler_.live_workers(), rate_text(rate), scheduler_.reruns(), left);
}

void Dispatcher::on_interrupt(Clock::time_point now) {
  signalfd_siginfo info;
  [[maybe_unused]] ssize_t n = ::read(options_.interrupt_fd, &info, sizeof info);
  if (interrupted_.exchange(true)) {
    // The first one is still being acted on (a job draining its payloads, say): whoever owns the
    // process decides whether to end it now.
    spdlog::warn("second interrupt: exiting now");
    if (options_.on_second_interrupt) options_.on_second_interrupt();
    return;
  }
  spdlog::warn("interrupted (signal {}): stopping", info.ssi_signo);
  if (current_ == nullptr) {
    // A job computed by the caller of `map` sees interrupted() between slices and stops there.
    if (jobs_here_running_.load() > 0) return;
    if (options_.on_idle_interrupt) options_.on_idle_interrupt();
    return;
  }
  check_job(now);
}

void Dispatcher::check_job(Clock::time_point now) {
  if (finishing_) {
    if (payloads_in_flight_.load() == 0) return deliver(now);
    if (now >= drain_deadline_) {
      // A stalled worker's connection still holds payloads that point into the caller's memory,
      // which `map` may not return before ZeroMQ lets go of. Closing the socket makes it let go;
      // the workers reconnect to the new one on their own.
      spdlog::warn("a stalled connection still holds {} slice payload(s); resetting the socket",
                   payloads_in_flight_.load());
      router_.set(zmq::sockopt::linger, 0);
      router_.close();
      for (int attempt = 0;; ++attempt) {
        try {
          bind_router();
          break;
        } catch (const Error&) {
          if (attempt == 50) throw;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the old listener closes
        }
      }
      scheduler_.forget_workers();  // their connections are gone: each registers again
      drain_deadline_ = Clock::time_point::max();
    }
    return;
  }
  if (current_ == nullptr) return;
  JobEnd end;
  if (payload_failure_) {
    end = JobEnd::failed;
  } else
    switch (scheduler_.state()) {
      case JobState::done:
        end = JobEnd::done;
        break;
      case JobState::failed:
        end = JobEnd::failed;
        break;
      case JobState::no_workers:
        end = JobEnd::no_workers;
        break;
      default:
        if (interrupted_) {
          end = JobEnd::interrupted;
        } else if (job_deadline_ && now >= *job_deadline_) {
          end = JobEnd::timed_out;
        } else {
          return;
        }
    }
  JobOutcome outcome;
  outcome.end = end;
  outcome.missing = scheduler_.missing_slices();
  outcome.failure = payload_failure_ ? payload_failure_ : scheduler_.failure();
  payload_failure_.reset();
  outcome.partials = scheduler_.take_partials();
  outcome.seconds = std::chrono::duration<double>(now - job_started_).count();
  outcome.started = job_started_;
  // A new record each job, never changed once published: observations share it.
  std::shared_ptr<JobStats> last;
  if (observing_) {
    last =
        std::make_shared<JobStats>(scheduler_.snapshot_stats(now, Observation::kMaxRecentSlices));
  }
  outcome.stats = scheduler_.take_stats(now);
  static constexpr JobEnding kEndings[] = {JobEnding::done,        JobEnding::failed,
                                           JobEnding::done,        JobEnding::timed_out,
                                           JobEnding::interrupted, JobEnding::broken};
  for (JobStats* stats : {&outcome.stats, last.get()}) {
    if (stats == nullptr) continue;
    stats->ending = kEndings[static_cast<int>(end)];
    stats->bytes_in = bytes_in_ - job_bytes_in_;
    stats->bytes_out = bytes_out_ - job_bytes_out_;
  }
  if (last) last_job_ = std::move(last);
  ++(end == JobEnd::done || end == JobEnd::no_workers ? jobs_done_ : jobs_failed_);
  const DropCounts drops = scheduler_.drops();
  const std::size_t reruns = scheduler_.reruns();
  scheduler_.finish_job();
  if (options_.progress == Progress::live) live_line::clear();
  static constexpr const char* kEnds[] = {"done",      "failed",      "found no workers",
                                          "timed out", "interrupted", "broke"};
  spdlog::info("job {} {} after {:.3f} s: {} of {} slices, {} re-run", current_id_.seq,
               kEnds[static_cast<int>(end)], outcome.seconds,
               outcome.partials.size() - outcome.missing.size(), outcome.partials.size(), reruns);
  if (drops.stale + drops.duplicate + drops.late + drops.malformed + garbage_count_ > 0) {
    spdlog::info(
        "job {} dropped {} late, {} duplicate, {} stale and {} malformed result(s), and "
        "{} malformed message(s)",
        current_id_.seq, drops.late, drops.duplicate, drops.stale, drops.malformed, garbage_count_);
  }
  current_ = nullptr;
  job_deadline_.reset();
  if (observing_) publish(now);
  finishing_ = std::move(outcome);
  drain_deadline_ = now + options_.scheduler.liveness;
  if (payloads_in_flight_.load() == 0) deliver(now);
}

void Dispatcher::deliver(Clock::time_point) {
  std::lock_guard lock(mutex_);
  outcome_ = std::move(finishing_);
  finishing_.reset();
  finished_.notify_all();
}

std::shared_ptr<const Observation> Dispatcher::observe() const {
  // The first call since the last snapshot wakes the I/O thread, which publishes a new one now
  // or at most kPublishInterval after the last.
  if (!observation_wanted_.exchange(true, std::memory_order_relaxed)) wake();
  std::lock_guard lock(observation_mutex_);
  return observation_;
}

std::shared_ptr<const Observation> Dispatcher::observe_fresh(
    std::chrono::milliseconds timeout) const {
  std::uint64_t seen = 0;
  {
    std::lock_guard lock(observation_mutex_);
    seen = observation_->sequence;
  }
  observe();  // asks the I/O thread for a new one
  std::unique_lock lock(observation_mutex_);
  observation_published_.wait_for(lock, timeout, [&] { return observation_->sequence > seen; });
  return observation_;
}

void Dispatcher::publish(Clock::time_point now) {
  observing_ = true;
  observation_wanted_.store(false, std::memory_order_relaxed);
  next_publish_ = now + Observation::kPublishInterval;
  auto o = std::make_shared<Observation>();
  o->taken = std::chrono::system_clock::now();
  o->sequence = ++published_;
  o->jobs_here = jobs_here_.load(std::memory_order_relaxed);
  o->jobs_started = jobs_started_ + o->jobs_here;
  o->jobs_done = jobs_done_ + o->jobs_here;
  o->jobs_failed = jobs_failed_;
  o->bytes_in = bytes_in_;
  o->bytes_out = bytes_out_;
  scheduler_.observe_lifetime(*o, Observation::kMaxWorkers);
  o->slices_done += slices_here_.load(std::memory_order_relaxed);
  if (current_ != nullptr) {
    o->current = scheduler_.snapshot_stats(now, Observation::kMaxRecentSlices);
    o->current->bytes_in = bytes_in_ - job_bytes_in_;
    o->current->bytes_out = bytes_out_ - job_bytes_out_;
  }
  o->last = last_job_;
  {
    std::lock_guard lock(observation_mutex_);
    observation_ = std::move(o);
  }
  observation_published_.notify_all();
}

void Dispatcher::count_refused_peers(Clock::time_point now) {
  for (; gate_refused_ < gate_->refused(); ++gate_refused_) {
    scheduler_.record_fault(FaultKind::refused_peer, now,
                            [] { return "a peer whose key is not allowed"; });
  }
}

// --- outbox --------------------------------------------------------------------------------

void Dispatcher::send(const std::string& worker, const wire::Message& message) {
  header_.clear();
  wire::encode(message, header_);
  bytes_out_ += worker.size() + header_.size();
  if (spdlog::should_log(spdlog::level::trace)) {
    trace_message("sent", worker, wire::type_name(message), worker.size() + header_.size());
  }
  (void)router_.send(zmq::buffer(worker), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  (void)router_.send(zmq::buffer(header_), zmq::send_flags::dontwait);
}

std::size_t Dispatcher::send_assign(const std::string& worker, const wire::Assign& assign,
                                    const JobRequest& job) {
  // Payloads first: one too large for a worker to accept fails the job with a clear error,
  // instead of cutting the worker off again and again.
  payloads_.clear();
  // The first slice that cannot be sent fails the job (in check_job), saying why.
  auto cannot_send = [&](const wire::SliceRange& slice, std::string type, std::string message) {
    if (payload_failure_) return;
    payload_failure_ = SliceError::Details{slice.index, slice.offset,    slice.limit,        "",
                                           getpid(),    std::move(type), std::move(message), 0};
  };
  for (const wire::SliceRange& slice : assign.slices) {
    if (assign.payload == PayloadKind::none) break;
    std::size_t size = 0;
    if (assign.payload == PayloadKind::raw) {
      const std::string_view bytes = job.memory.raw_slice(slice.offset, slice.limit);
      size = bytes.size();
      if (size > wire::kMaxPayloadBytes) {
        // Never sent: nothing to release.
      } else if (size >= kZeroCopyMinBytes) {
        ++payloads_in_flight_;
        payloads_.emplace_back(const_cast<char*>(bytes.data()), size, &release_payload, this);
      } else {
        payloads_.emplace_back(bytes.data(), size);
      }
    } else {
      // Owned here until ZeroMQ takes it: the user's encoding may throw.
      auto encoded = std::make_unique<std::string>();
      job.memory.encode_slice(slice.offset, slice.limit, *encoded);
      size = encoded->size();
      try {
        check_decode_cost(*encoded);  // what the worker would refuse to decode
      } catch (const DecodeError& e) {
        cannot_send(
            slice, "pymar::DecodeError",
            fmt::format("the slice's data cannot be sent: {}: raise WORKERS_NUMBER", e.what()));
      }
      payloads_.emplace_back(
          encoded->data(), size, [](void*, void* hint) { delete static_cast<std::string*>(hint); },
          encoded.get());
      (void)encoded.release();  // ZeroMQ deletes it when sent
    }
    if (size > wire::kMaxPayloadBytes) {
      cannot_send(slice, "pymar::Error",
                  fmt::format("the slice's data is {} bytes, over the {} GiB a message to a "
                              "worker may carry: raise WORKERS_NUMBER",
                              size, wire::kMaxPayloadBytes >> 30));
    }
  }
  if (payload_failure_) {
    payloads_.clear();  // releases what was prepared; the job fails in check_job
    return 0;
  }
  header_.clear();
  wire::encode(assign, header_);
  // Counted before sending: a frame sent is empty here afterwards (ZeroMQ has taken it).
  std::size_t bytes = worker.size() + header_.size();
  for (const zmq::message_t& payload : payloads_) bytes += payload.size();
  const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  (void)router_.send(zmq::buffer(worker), more);
  (void)router_.send(zmq::buffer(header_), payloads_.empty() ? zmq::send_flags::dontwait : more);
  for (std::size_t i = 0; i < payloads_.size(); ++i) {
    const bool last = i + 1 == payloads_.size();
    (void)router_.send(payloads_[i], last ? zmq::send_flags::dontwait : more);
  }
  bytes_out_ += bytes;
  if (spdlog::should_log(spdlog::level::trace)) {
    trace_message("sent", worker, fmt::format("ASSIGN of {} slice(s)", assign.slices.size()),
                  bytes);
  }
  return bytes;
}

void Dispatcher::trace_message(std::string_view direction, const std::string& peer,
                               std::string_view type, std::size_t bytes) {
  std::size_t dropped = 0;
  if (!trace_rate_.allow(Clock::now(), dropped)) return;
  const std::string note =
      dropped > 0 ? fmt::format(" ({} message line(s) left out)", dropped) : "";
  spdlog::trace("{} {} {} '{}', {} bytes{}", direction, type, direction == "sent" ? "to" : "from",
                printable(peer), bytes, note);
}

}  // namespace pymar::detail
