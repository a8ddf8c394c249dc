// The worker process's shell: the DEALER socket, its connection events, the doorbell and the
// eventfds on the I/O thread, kernels on the compute thread. What to say and when is decided by
// WorkerSession (session.hpp), which has no I/O of its own.
#include "worker/worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/build_id.hpp"
#include "common/clock.hpp"
#include "common/doorbell.hpp"
#include "common/endpoint_record.hpp"
#include "common/log.hpp"
#include "common/log_budget.hpp"
#include "common/printable.hpp"
#include "common/registry.hpp"
#include "common/time_slice.hpp"
#include "common/unique_fd.hpp"
#include "pymar/error.hpp"
#include "worker/session.hpp"

namespace pymar::detail {
namespace {

/// One ASSIGN as the compute thread receives it.
struct Task {
  wire::Assign assign;
  std::vector<zmq::message_t> payloads;
};

/// One batch's outcomes, with the encoded values of the successful ones.
struct Done {
  wire::Result result;
  std::string values;  // concatenated
};

struct JobIdHash {
  std::size_t operator()(const wire::JobId& id) const noexcept {
    return std::hash<std::uint64_t>()(id.session * 31 + id.seq);
  }
};

// A worker waiting for a producer on this machine retries this often (libzmq adds up to as much
// again at random): its doorbell makes it retry at once when a producer binds the port, so the
// timer is only a fallback, and an idle pool costs next to nothing.
constexpr int kDoorbellRetryMs = 1000;

// Without a doorbell (a producer on another host), libzmq's backoff: 10 ms doubling to 100 ms.
constexpr int kRetryMs = 10;
constexpr int kRetryMaxMs = 100;

/// True for an endpoint on this machine's loopback interface ("tcp://127.0.0.1:7627").
bool on_loopback(std::string_view endpoint) {
  const auto colon = endpoint.rfind(':');
  if (!endpoint.starts_with("tcp://") || colon == std::string_view::npos) return false;
  const std::string_view host = endpoint.substr(6, colon - 6);
  return host.starts_with("127.") || host == "localhost" || host == "[::1]" || host == "::1";
}

std::vector<std::string> served(const std::vector<std::string>& registered,
                                const std::vector<std::string>& only) {
  if (only.empty()) return registered;
  std::vector<std::string> out;
  for (const std::string& name : registered) {
    if (std::find(only.begin(), only.end(), name) != only.end()) out.push_back(name);
  }
  return out;
}

/// What the I/O thread and the compute thread share. Held by a shared_ptr that each thread
/// has: a supervised worker leaving while a kernel runs leaves the compute thread its own copy.
struct BetweenThreads {
  std::mutex mutex;  // guards everything below but the atomics and the eventfd
  std::condition_variable task_ready;
  std::deque<Task> tasks;  // queued batches, oldest first
  std::deque<Done> done;   // finished batches not yet sent
  std::unordered_set<wire::JobId, JobIdHash> cancelled;
  std::optional<wire::JobId> computing;           // the job of the batch being computed
  std::atomic<std::int64_t> slice_started{0};     // steady clock, ns: the slice computing now
  std::atomic<std::int64_t> typical_slice_ns{0};  // running mean of slice compute times
  bool stopping = false;
  UniqueFd done_fd = make_eventfd();  // rung by the compute thread when `done` has a batch
};

/// The compute thread: takes batches, runs their kernels, hands back the results. Its state is
/// its own but for what it shares through `shared`.
class ComputeThread {
 public:
  ComputeThread(std::shared_ptr<BetweenThreads> shared, std::vector<std::string> producers,
                std::vector<std::string> sources, CrashRecord* crash_record)
      : shared_(std::move(shared)),
        producers_(std::move(producers)),
        sources_(std::move(sources)),
        crash_record_(crash_record) {}

  void run() {
    while (true) {
      Task task;
      {
        std::unique_lock lock(shared_->mutex);
        shared_->task_ready.wait(lock,
                                 [&] { return shared_->stopping || !shared_->tasks.empty(); });
        if (shared_->stopping) return;
        task = std::move(shared_->tasks.front());
        shared_->tasks.pop_front();
      }
      const wire::Assign& a = task.assign;
      auto key = std::make_pair(a.producer, a.source);
      auto found = kernels_.find(key);
      if (found == kernels_.end()) {
        if (kernels_.size() > 256) kernels_.clear();  // bounded, whatever names arrive
        found = kernels_.emplace(key, lookup(a.producer, a.source)).first;
      }
      Done done;
      done.result.job = a.job;
      done.result.batch = a.batch;
      set_computing(a.job);
      const bool finished = compute(task, found->second, done);
      // The payloads go before the results do: the producer answers a result with the next
      // batch, whose payload must not arrive while this one is still held.
      task.payloads.clear();
      set_computing(std::nullopt);
      if (!finished) continue;  // cancelled
      {
        std::lock_guard lock(shared_->mutex);
        shared_->done.push_back(std::move(done));
      }
      signal_eventfd(shared_->done_fd);
    }
  }

 private:
  KernelLookup lookup(const std::string& producer, const std::string& source) {
    auto serves = [](const std::vector<std::string>& names, const std::string& name) {
      return std::find(names.begin(), names.end(), name) != names.end();
    };
    KernelLookup result;
    if (!serves(producers_, producer)) {
      result.error = fmt::format("this worker does not serve producer '{}' (it serves: {})",
                                 producer, fmt::join(producers_, ", "));
    } else if (!serves(sources_, source)) {
      result.error = fmt::format("this worker does not serve data source '{}' (it serves: {})",
                                 source, fmt::join(sources_, ", "));
    } else {
      result = find_kernel(producer, source);
    }
    if (!result.error.empty() && unknown_name_log_.spend()) {
      spdlog::warn("refusing slices: {}", printable(result.error));
    }
    return result;
  }

  void set_computing(std::optional<wire::JobId> job) {
    std::lock_guard lock(shared_->mutex);
    shared_->computing = job;
  }

  bool cancelled(const wire::JobId& job) {
    std::lock_guard lock(shared_->mutex);
    return shared_->stopping || shared_->cancelled.contains(job);
  }

  /// Runs every slice of a task; false when its job was cancelled meanwhile.
  bool compute(const Task& task, const KernelLookup& kernel, Done& done) {
    const wire::Assign& a = task.assign;
    done.result.outcomes.reserve(a.slices.size());
    for (std::size_t i = 0; i < a.slices.size(); ++i) {
      if (cancelled(a.job)) return false;
      const wire::SliceRange& range = a.slices[i];
      wire::Outcome outcome;
      outcome.slice = range.index;
      if (kernel.kernel == nullptr) {
        outcome.error_type = "pymar::Error";
        outcome.error_message = kernel.error;
        done.result.outcomes.push_back(std::move(outcome));
        continue;
      }
      SliceInput input{range.offset, range.limit, a.params, {}};
      if (!task.payloads.empty()) input.payload = task.payloads[i].to_string_view();
      const std::size_t before = done.values.size();
      spdlog::debug("slice {} of job {} started", range.index, a.job.seq);
      if (CrashRecord* r = crash_record_) {
        r->session.store(a.job.session, std::memory_order_relaxed);
        r->seq.store(a.job.seq, std::memory_order_relaxed);
        r->slice.store(range.index, std::memory_order_relaxed);
        r->in_slice.store(1, std::memory_order_release);
      }
      const Clock::time_point start = Clock::now();
      shared_->slice_started.store(std::chrono::nanoseconds(start.time_since_epoch()).count());
      try {
        kernel.kernel(input, done.values);
        outcome.ok = true;
      } catch (const std::exception& e) {
        outcome.error_type = type_name(typeid(e));
        outcome.error_message = e.what();
      } catch (...) {
        outcome.error_type = "unknown exception";
        outcome.error_message = "a non-standard exception was thrown";
      }
      outcome.compute_ns = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
      if (CrashRecord* r = crash_record_) r->in_slice.store(0, std::memory_order_release);
      const auto typical = shared_->typical_slice_ns.load();
      shared_->typical_slice_ns.store(
          typical == 0 ? static_cast<std::int64_t>(outcome.compute_ns)
                       : (7 * typical + static_cast<std::int64_t>(outcome.compute_ns)) / 8);
      if (outcome.ok && done.values.size() - before > wire::kMaxValueBytes) {
        outcome.ok = false;
        outcome.error_type = "pymar::Error";
        outcome.error_message = fmt::format(
            "the partial value of this slice encodes to {} bytes, over the {} MiB a result may "
            "carry: raise WORKERS_NUMBER, or reduce to something smaller",
            done.values.size() - before, wire::kMaxValueBytes >> 20);
      }
      if (outcome.ok) {
        outcome.value_bytes = done.values.size() - before;
      } else {
        done.values.resize(before);
        spdlog::debug("slice {} threw {}: {}", range.index, outcome.error_type,
                      outcome.error_message);
      }
      spdlog::debug("slice {} of job {} finished in {:.3f} ms", range.index, a.job.seq,
                    static_cast<double>(outcome.compute_ns) / 1e6);
      done.result.outcomes.push_back(std::move(outcome));
    }
    return true;
  }

  std::shared_ptr<BetweenThreads> shared_;
  const std::vector<std::string> producers_;
  const std::vector<std::string> sources_;
  CrashRecord* const crash_record_;  // may be null
  std::map<std::pair<std::string, std::string>, KernelLookup> kernels_;
  LogBudget unknown_name_log_;
};

WorkerSessionConfig session_config(const WorkerOptions& options) {
  WorkerSessionConfig config;
  config.endpoint = options.endpoint;
  config.heartbeat = options.heartbeat;
  config.liveness = options.liveness;
  config.credit = options.credit;
  config.producers = served(producer_names(), options.only_producers);
  config.sources = served(source_names(), options.only_sources);
  config.predecessor = options.predecessor;
  if (options.keys) config.own_key = options.keys->own.public_key;
  config.build = build_fingerprint();
  config.task = task_name();
  config.host = host_name();
  config.pid = getpid();
  return config;
}

/// The I/O thread: the socket to the producer and everything it polls, driving the session; it
/// starts the compute thread and stops it.
class IoThread final : private WorkerActions {
 public:
  explicit IoThread(const WorkerOptions& options)
      : options_(options), endpoint_(options.endpoint), session_(session_config(options), *this) {
    if (!endpoint_.empty()) open_doorbell();
  }

  int run() {
    // Born with its long slice (threads inherit it), not given it once it first runs.
    request_time_slice(kComputeSliceNs);
    compute_ = std::thread(
        [compute = ComputeThread(shared_, served(producer_names(), options_.only_producers),
                                 served(source_names(), options_.only_sources),
                                 options_.crash_record)]() mutable { compute.run(); });
    request_time_slice(kMessagingSliceNs);
    int status = 1;
    try {
      if (endpoint_.empty()) {
        // Started before the producer bound its port: everything but the connection is ready.
        std::optional<std::string> endpoint = read_endpoint_record(options_.endpoint_fd);
        ::close(options_.endpoint_fd);
        if (!endpoint) {
          leave(0);
          return 0;
        }
        endpoint_ = std::move(*endpoint);
        session_.set_endpoint(endpoint_);
        open_doorbell();
      }
      connect();
      session_.on_new_socket(Clock::now());
      spdlog::info("waiting for a producer at {}", endpoint_);
      status = serve();
    } catch (const std::exception& e) {
      spdlog::error("worker stopped: {}", e.what());
    }
    leave(status);
    return status;
  }

 private:
  /// Binds the doorbell a producer on this machine rings when it binds our producer's port.
  void open_doorbell() {
    const auto port = endpoint_port(endpoint_);
    if (options_.doorbell && port) {
      try {
        doorbell_.emplace(*port);
      } catch (const Error& e) {
        spdlog::warn("{}; reconnecting on libzmq's timer alone", e.what());
      }
    }
  }

  // --- WorkerActions ---------------------------------------------------------------------

  bool send(const wire::Message& message) override {
    header_.clear();
    wire::encode(message, header_);
    const bool sent = socket_.send(zmq::buffer(header_), zmq::send_flags::dontwait).has_value();
    if (sent && spdlog::should_log(spdlog::level::trace)) {
      trace_message(MessageWay::sent, wire::type_name(message), std::nullopt, header_.size());
    }
    return sent;
  }

  enum class MessageWay { sent, received };

  /// -vv: one line per message, within trace_rate_ (a producer decides how many it sends);
  /// nothing is formatted for the lines left out.
  void trace_message(MessageWay way, std::string_view type, std::optional<std::size_t> slices,
                     std::size_t bytes) {
    std::size_t dropped = 0;
    if (!trace_rate_.allow(Clock::now(), dropped)) return;
    const std::string of = slices ? fmt::format(" of {} slice(s)", *slices) : "";
    const std::string note =
        dropped > 0 ? fmt::format(" ({} message line(s) left out)", dropped) : "";
    spdlog::trace("{} {}{} {} the producer, {} bytes{}",
                  way == MessageWay::sent ? "sent" : "received", type, of,
                  way == MessageWay::sent ? "to" : "from", bytes, note);
  }

  void reconnect(bool fresh) override {
    if (fresh) return connect();
    // Retries the connection at once, rather than when libzmq's timer says.
    try {
      socket_.disconnect(endpoint_);
      socket_.connect(endpoint_);
    } catch (const zmq::error_t&) {
      connect();  // a fresh socket does the same
      session_.on_new_socket(Clock::now());
    }
  }

  void compute(wire::Assign&& assign) override {
    Task task{std::move(assign), {}};
    task.payloads.reserve(frames_.size() - 1);
    for (std::size_t i = 1; i < frames_.size(); ++i) task.payloads.push_back(std::move(frames_[i]));
    std::lock_guard lock(shared_->mutex);
    if (!shared_->cancelled.contains(task.assign.job)) shared_->tasks.push_back(std::move(task));
    shared_->task_ready.notify_one();
  }

  void cancel(const wire::JobId& job) override {
    std::lock_guard lock(shared_->mutex);
    if (shared_->cancelled.size() > 1024) shared_->cancelled.clear();
    shared_->cancelled.insert(job);
    const auto dropped =
        std::erase_if(shared_->tasks, [&](const Task& t) { return t.assign.job == job; });
    spdlog::debug("job {} cancelled: dropped {} queued batch(es)", job.seq, dropped);
  }

  void drop_queued(std::optional<std::uint64_t> keep_session) override {
    std::lock_guard lock(shared_->mutex);
    if (!keep_session) return shared_->tasks.clear();
    std::erase_if(shared_->tasks,
                  [&](const Task& t) { return t.assign.job.session != *keep_session; });
  }

  /// A supervised worker computing for a job nobody waits for any more leaves: its pool starts a
  /// fresh process at once, free for work that counts. It ends at the end of this turn.
  void abandon(std::optional<wire::JobId> job, std::optional<std::uint64_t> keep_session,
               std::string_view why) override {
    if (!options_.supervised || abandoning_) return;
    std::lock_guard lock(shared_->mutex);
    const std::optional<wire::JobId>& computing = shared_->computing;
    if (!computing || (job && !(*computing == *job))) return;
    if (keep_session && computing->session == *keep_session) return;
    const std::chrono::nanoseconds elapsed =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()) -
        std::chrono::nanoseconds(shared_->slice_started.load());
    if (!worth_abandoning(elapsed, std::chrono::nanoseconds(shared_->typical_slice_ns.load())))
      return;
    spdlog::info("abandoning a slice of job {}: {}; restarting", computing->seq, why);
    if (CrashRecord* r = options_.crash_record) r->abandoned.store(1, std::memory_order_release);
    abandoning_ = true;
  }

  // --- the socket ------------------------------------------------------------------------

  void connect() {
    close_socket();
    socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
    // Unique per process, not per IoThread: worker threads of one process (tests) must differ.
    // The random part keeps it unguessable: the producer lets a reconnecting peer take over its
    // own routing id, so a guessable id would let another peer take over this worker's link.
    static std::atomic<unsigned> generation{0};
    std::random_device random;
    identity_ = fmt::format("{}/{}/{}/{:08x}{:08x}", host_name(), getpid(), ++generation, random(),
                            random());
    if (const auto& keys = options_.keys) {
      // The producer accepts a message only under a routing id that begins with the key it was
      // sent with, so no other peer can speak for this one.
      identity_ = keys->own.public_key + "/" + identity_;
      socket_.set(zmq::sockopt::curve_serverkey, keys->producer);
      socket_.set(zmq::sockopt::curve_publickey, keys->own.public_key);
      socket_.set(zmq::sockopt::curve_secretkey, keys->own.secret_key);
    }
    socket_.set(zmq::sockopt::routing_id, identity_);
    socket_.set(zmq::sockopt::linger, 0);
    // Nothing is queued for a connection that is not made: a heartbeat or result queued while the
    // producer is away would reach the next one as a burst of stale messages. The worker greets
    // each new connection with READY instead.
    socket_.set(zmq::sockopt::immediate, 1);
    if (doorbell_ && on_loopback(endpoint_)) {
      // A producer on this machine rings when it binds: the timer is a fallback.
      socket_.set(zmq::sockopt::reconnect_ivl, kDoorbellRetryMs);
      socket_.set(zmq::sockopt::reconnect_ivl_max, 0);
    } else {
      // Retry soon after a producer goes: the next run may start at once, and each attempt at a
      // closed port costs the producer's host next to nothing.
      socket_.set(zmq::sockopt::reconnect_ivl, kRetryMs);
      socket_.set(zmq::sockopt::reconnect_ivl_max, kRetryMaxMs);
    }
    socket_.set(zmq::sockopt::tcp_keepalive, 1);
    // A frame larger than any slice the producer sends is not from a producer of ours.
    socket_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(wire::kMaxPayloadBytes));
    // Told when a connection is made, the worker greets at once: a producer started after the
    // previous one ended then learns of it without waiting for a heartbeat.
    const std::string monitor_endpoint = "inproc://pymar-monitor-" + identity_;
    zmq_socket_monitor(socket_.handle(), monitor_endpoint.c_str(),
                       ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    monitor_ = zmq::socket_t(context_, zmq::socket_type::pair);
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(monitor_endpoint);
    socket_.connect(endpoint_);
  }

  void close_socket() {
    if (!socket_) return;
    zmq_socket_monitor(socket_.handle(), nullptr, 0);
    monitor_.close();
    socket_.close();
  }

  /// A connection to the producer's address was made or lost, or its handshake failed.
  void on_connection_event(Clock::time_point now) {
    zmq::message_t event;
    zmq::message_t address;
    if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more()) (void)monitor_.recv(address, zmq::recv_flags::dontwait);
    std::uint16_t id = 0;
    std::uint32_t value = 0;
    if (event.size() >= 6) {
      std::memcpy(&id, event.data(), sizeof id);
      std::memcpy(&value, event.data<char>() + 2, sizeof value);
    }
    if (id == ZMQ_EVENT_DISCONNECTED) return session_.on_link_down(now);
    if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) return session_.on_link_up(now);
    HandshakeFailure failure = HandshakeFailure::other;
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      failure = HandshakeFailure::refused;
    } else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
               value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      failure = HandshakeFailure::mechanism_mismatch;
    }
    session_.on_handshake_failed(failure, now);
  }

  void receive(Clock::time_point now) {
    for (int i = 0; i < 256 && !abandoning_; ++i) {
      frames_.clear();
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames_), zmq::recv_flags::dontwait)) {
        break;
      }
      wire::Message message;
      try {
        message = wire::decode(frames_[0].to_string_view(), frames_.size() - 1);
      } catch (const wire::ProtocolError& e) {
        session_.on_malformed(e);
        continue;
      }
      if (spdlog::should_log(spdlog::level::trace)) trace_received(message);
      session_.on_message(std::move(message), now);
    }
  }

  void trace_received(const wire::Message& message) {
    std::size_t bytes = 0;
    for (const zmq::message_t& frame : frames_) bytes += frame.size();
    const auto* assign = std::get_if<wire::Assign>(&message);
    trace_message(MessageWay::received, wire::type_name(message),
                  assign ? std::optional(assign->slices.size()) : std::nullopt, bytes);
  }

  void send_results(Clock::time_point now) {
    drain_eventfd(shared_->done_fd);
    std::deque<Done> ready;
    {
      std::lock_guard lock(shared_->mutex);
      ready.swap(shared_->done);
    }
    for (Done& d : ready) {
      header_.clear();
      wire::encode(d.result, header_);
      const bool has_values = !d.values.empty();  // every value takes a byte at least
      const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
      const bool sent =
          socket_.send(zmq::buffer(header_), has_values ? more : zmq::send_flags::dontwait)
              .has_value();
      // The values end to end, in frames of at most kMaxValueBytes (what the producer takes in
      // one frame), none across two frames: most batches fit in one.
      std::size_t frame_start = 0;
      std::size_t frame_end = 0;
      for (const wire::Outcome& o : d.result.outcomes) {
        if (!o.ok) continue;
        if (frame_end > frame_start &&
            frame_end - frame_start + o.value_bytes > wire::kMaxValueBytes) {
          (void)socket_.send(zmq::buffer(d.values.data() + frame_start, frame_end - frame_start),
                             more);
          frame_start = frame_end;
        }
        frame_end += o.value_bytes;
      }
      if (has_values) {
        (void)socket_.send(zmq::buffer(d.values.data() + frame_start, frame_end - frame_start),
                           zmq::send_flags::dontwait);
      }
      if (sent && spdlog::should_log(spdlog::level::trace)) {
        trace_message(MessageWay::sent, "RESULT", d.result.outcomes.size(),
                      header_.size() + d.values.size());
      }
      session_.on_results_sent(now);
    }
  }

  /// Polls until asked to stop (0), refused (kExitRefused), or a slice is abandoned
  /// (kExitAbandoned).
  int serve() {
    Clock::time_point awake = Clock::now();  // the time the last turn acted on
    while (true) {
      const Clock::time_point now = Clock::now();
      // Stopped (SIGSTOP) or starved of CPU between two turns: the silence was ours.
      if (now - awake > options_.heartbeat) session_.forgive_silence(now);
      const Clock::time_point deadline = session_.next_deadline();
      std::chrono::milliseconds timeout(-1);  // waiting for a producer: nothing to do until then
      if (deadline != Clock::time_point::max()) {
        timeout = std::max(std::chrono::milliseconds(0),
                           std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
      }
      zmq::pollitem_t items[] = {
          {socket_.handle(), 0, ZMQ_POLLIN, 0},
          {nullptr, shared_->done_fd.get(), ZMQ_POLLIN, 0},
          {monitor_.handle(), 0, ZMQ_POLLIN, 0},
          {nullptr, doorbell_ ? doorbell_->fd() : -1,
           static_cast<short>(doorbell_ ? ZMQ_POLLIN : 0), 0},
          {nullptr, options_.stop_fd, ZMQ_POLLIN, 0},
      };
      try {
        zmq::poll(items, options_.stop_fd >= 0 ? 5 : 4, timeout);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (options_.stop_fd >= 0 && (items[4].revents & ZMQ_POLLIN)) return 0;
      const Clock::time_point after = Clock::now();
      if (timeout.count() >= 0 && after - (now + timeout) > options_.heartbeat) {
        // We overslept (the process was stopped, or starved of CPU): the silence was ours, and
        // what the producer sent meanwhile may not have reached the socket yet. Do not blame it.
        session_.forgive_silence(after);
      }
      if (items[0].revents & ZMQ_POLLIN) receive(after);
      if (abandoning_) return kExitAbandoned;
      if (items[1].revents & ZMQ_POLLIN) send_results(after);
      if (items[2].revents & ZMQ_POLLIN) on_connection_event(after);
      if ((items[3].revents & ZMQ_POLLIN) && doorbell_->drain() > 0) session_.on_bell(after);
      if (const auto& end = session_.end()) {
        spdlog::error("{}", end->why);
        return end->status;
      }
      session_.on_time(after);
      if (CrashRecord* r = options_.crash_record) {
        r->connected.store(session_.talking() ? 1 : 0, std::memory_order_relaxed);
      }
      if (abandoning_) return kExitAbandoned;
      // The last moment this turn acted on: a stop anywhere after it shows as a gap next turn.
      awake = after;
    }
  }

  /// Stops the compute thread and the socket. An abandoned slice leaves without a goodbye, as a
  /// process that died would: the producer hears of it from the next process in its slot.
  void leave(int status) {
    {
      std::lock_guard lock(shared_->mutex);
      shared_->stopping = true;
      shared_->tasks.clear();
      shared_->task_ready.notify_all();
    }
    if (socket_ && status != kExitAbandoned) {
      spdlog::info("leaving: telling the producer");
      send(wire::Bye{"the worker was asked to stop"});
      socket_.set(zmq::sockopt::linger, 1000);  // give the BYE a moment to reach the producer
    }
    close_socket();
    context_.close();
    if (options_.supervised) {
      // A kernel may still be running: do not wait for it. The compute thread keeps what it
      // shares with us; the pool ends this process as soon as run_worker returns.
      compute_.detach();
    } else {
      compute_.join();
    }
  }

  // The I/O thread's own state.
  const WorkerOptions& options_;
  std::string endpoint_;  // the producer's (options_.endpoint, or read from endpoint_fd)
  zmq::context_t context_{1};
  zmq::socket_t socket_;              // to the producer; a fresh one after a silent producer
  zmq::socket_t monitor_;             // connection events of socket_
  std::optional<Doorbell> doorbell_;  // rung by a producer binding our producer's port
  std::string identity_;
  std::string header_;                  // reused encoding buffer
  std::vector<zmq::message_t> frames_;  // the message being handled
  LineRate trace_rate_;                 // -vv: message lines, at most 100 a second
  bool abandoning_ = false;             // leaving a slice nobody needs: end this turn
  WorkerSession session_;

  // The compute thread, and what this thread shares with it.
  std::shared_ptr<BetweenThreads> shared_ = std::make_shared<BetweenThreads>();
  std::thread compute_;
};

}  // namespace

int run_worker(const WorkerOptions& options) {
  // This thread and libzmq's pass messages; the compute thread asks for its own slice.
  request_time_slice(kMessagingSliceNs);
  IoThread worker(options);
  return worker.run();
}

}  // namespace pymar::detail
