#include "worker/worker.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
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
#include "common/exit_at_once.hpp"
#include "common/log.hpp"
#include "common/log_budget.hpp"
#include "common/printable.hpp"
#include "common/registry.hpp"
#include "pymar/error.hpp"

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
  std::vector<std::size_t> value_sizes;
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

// A READY that found its new connection not yet usable is sent again this soon.
constexpr std::chrono::milliseconds kReadyRetry{1};

// After a failed handshake (something listens, but it is not our producer, or it refused us), the
// next attempt comes this soon: libzmq's backoff at its longest.
constexpr std::chrono::milliseconds kHandshakeRetry{kRetryMaxMs};

// Bells never make a worker retry more often than libzmq's own fastest retry would.
constexpr std::chrono::milliseconds kBellSpacing{kRetryMs};

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

class Worker {
 public:
  explicit Worker(const WorkerOptions& options)
      : options_(options),
        producers_(served(producer_names(), options.only_producers)),
        sources_(served(source_names(), options.only_sources)),
        predecessor_(options.predecessor) {
    done_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (done_fd_ < 0) throw Error(fmt::format("eventfd: {}", std::strerror(errno)));
    const auto port = endpoint_port(options.endpoint);
    if (options.doorbell && port) {
      try {
        doorbell_.emplace(*port);
      } catch (const Error& e) {
        spdlog::warn("{}; reconnecting on libzmq's timer alone", e.what());
      }
    }
  }

  ~Worker() { ::close(done_fd_); }

  int run() {
    compute_ = std::thread([this] { compute_loop(); });
    int status = 1;
    try {
      connect();
      spdlog::info("waiting for a producer at {}", options_.endpoint);
      status = serve();
    } catch (const std::exception& e) {
      spdlog::error("worker stopped: {}", e.what());
    }
    leave(status);
    return status;
  }

 private:
  // --- the I/O side ------------------------------------------------------------------------

  void connect() {
    close_socket();
    socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    // Unique per process, not per Worker: worker threads of one process (tests) must differ.
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
      socket_->set(zmq::sockopt::curve_serverkey, keys->producer);
      socket_->set(zmq::sockopt::curve_publickey, keys->own.public_key);
      socket_->set(zmq::sockopt::curve_secretkey, keys->own.secret_key);
    }
    socket_->set(zmq::sockopt::routing_id, identity_);
    socket_->set(zmq::sockopt::linger, 0);
    // Nothing is queued for a connection that is not made: a heartbeat or result queued while the
    // producer is away would reach the next one as a burst of stale messages. The worker greets
    // each new connection with READY instead.
    socket_->set(zmq::sockopt::immediate, 1);
    if (doorbell_ && on_loopback(options_.endpoint)) {
      // A producer on this machine rings when it binds: the timer is a fallback.
      socket_->set(zmq::sockopt::reconnect_ivl, kDoorbellRetryMs);
      socket_->set(zmq::sockopt::reconnect_ivl_max, 0);
    } else {
      // Retry soon after a producer goes: the next run may start at once, and each attempt at a
      // closed port costs the producer's host next to nothing.
      socket_->set(zmq::sockopt::reconnect_ivl, kRetryMs);
      socket_->set(zmq::sockopt::reconnect_ivl_max, kRetryMaxMs);
    }
    socket_->set(zmq::sockopt::tcp_keepalive, 1);
    // A frame larger than any slice the producer sends is not from a producer of ours.
    socket_->set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(wire::kMaxPayloadBytes));
    // Told when a connection is made, the worker greets at once: a producer started after the
    // previous one ended then learns of it without waiting for a heartbeat.
    const std::string monitor_endpoint = "inproc://pymar-monitor-" + identity_;
    zmq_socket_monitor(socket_->handle(), monitor_endpoint.c_str(),
                       ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(monitor_endpoint);
    socket_->connect(options_.endpoint);
    last_heard_ = Clock::now();
    connected_to_producer_ = false;
    linked_ = false;
    ready_unsent_ = false;
    gave_up_ = false;
  }

  /// A producer rang this worker's doorbell: if the worker is waiting to reconnect, it retries
  /// now rather than at its timer. The address stays the one it was given; a bell heard while
  /// connected is kept for the moment that connection ends (a new producer may ring before the
  /// old one's connection is seen to close).
  void on_bell(Clock::time_point now) {
    if (doorbell_->drain() > 0) bell_pending_ = true;
    answer_bell(now);
  }

  void answer_bell(Clock::time_point now) {
    if (!bell_pending_ || linked_ || now < last_bell_retry_ + kBellSpacing) return;
    bell_pending_ = false;
    last_bell_retry_ = now;
    spdlog::debug("a producer rang: connecting to {} now", options_.endpoint);
    reconnect_now();
  }

  /// Retries the connection at once, rather than when libzmq's timer says.
  void reconnect_now() {
    handshake_retry_at_.reset();
    try {
      socket_->disconnect(options_.endpoint);
      socket_->connect(options_.endpoint);
    } catch (const zmq::error_t&) {
      connect();  // a fresh socket does the same
    }
  }

  void close_socket() {
    if (!socket_) return;
    zmq_socket_monitor(socket_->handle(), nullptr, 0);
    monitor_.reset();
    socket_.reset();
  }

  /// A connection to the producer's address was made or lost. Each new one is greeted with READY:
  /// messages may have been lost with an old one, or the producer may be a new one. A producer
  /// that knew us re-queues what we held; one that did not learns of us at once.
  void on_connection_event(Clock::time_point now) {
    zmq::message_t event;
    zmq::message_t address;
    if (!monitor_->recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more()) (void)monitor_->recv(address, zmq::recv_flags::dontwait);
    std::uint16_t id = 0;
    std::uint32_t value = 0;
    if (event.size() >= 6) {
      std::memcpy(&id, event.data(), sizeof id);
      std::memcpy(&value, event.data<char>() + 2, sizeof value);
    }
    if (id == ZMQ_EVENT_DISCONNECTED) {
      if (!linked_) return;  // a failed handshake: reported as such
      linked_ = false;
      ready_unsent_ = false;
      last_heard_ = now;  // the liveness clock now measures how long the producer is away
      // Said once per producer run that spoke to this worker; quietly for one that never did.
      spdlog::log(connected_to_producer_ ? spdlog::level::info : spdlog::level::debug,
                  "the producer at {} went away; waiting for the next one", options_.endpoint);
      connected_to_producer_ = false;
      return answer_bell(now);
    }
    if (id != ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      // Something listens there, and a failed handshake does not always say why (the peer may
      // reset the connection before its greeting is read): try again soon, not in a second or two.
      handshake_retry_at_ = now + kHandshakeRetry;
      return on_failed_handshake(id, value);
    }
    handshake_retry_at_.reset();
    failed_handshakes_ = 0;
    linked_ = true;
    gave_up_ = false;
    bell_pending_ = false;
    last_heard_ = now;
    drop_queued_tasks();
    send_ready(now);
  }

  /// The CURVE handshake with whatever listens at the producer's address failed. Refused by the
  /// producer: restarting cannot help, so the worker ends with kExitRefused. Anything else (a peer
  /// without keys, or with a key that is not the producer's) may be a port squatter that a real
  /// producer replaces later: the worker keeps trying, and never talks to it.
  void on_failed_handshake(std::uint16_t id, std::uint32_t value) {
    const bool mismatch = id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                          value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      refusal_ = fmt::format(
          "the producer at {} refused this worker's key {}: add the worker's NAME.key file to the "
          "folder the producer gives with --allow",
          options_.endpoint, options_.keys ? options_.keys->own.public_key : "(none)");
    } else if (!options_.keys && (mismatch || ++failed_handshakes_ >= kFailuresMeaningKeys)) {
      // Without keys the handshake has little to fail on but the peer's mechanism: it uses keys.
      // libzmq reports that as a mismatch only when our side reads the peer's greeting before
      // the peer hangs up on ours; otherwise the same failure, again and again, says it.
      refusal_ = fmt::format(
          "the producer at {} requires keys: give this worker --secret-key and --producer-key "
          "(see --help and the README, \"Running on many machines\")",
          options_.endpoint);
    } else if (LogBudget& budget = handshake_logs_[mismatch ? "mismatch" : "key"]; budget.spend()) {
      spdlog::warn(
          "the peer at {} is not the producer this worker was given ({} so far): {}; not talking "
          "to it",
          options_.endpoint, budget.count(),
          mismatch ? "it does not use keys" : "its key is not the one given with --producer-key");
    }
  }

  void send_ready(Clock::time_point now) {
    wire::Ready ready;
    ready.build = build_fingerprint();
    ready.task = task_name();
    ready.host = host_name();
    ready.pid = getpid();
    ready.credit = options_.credit;
    ready.producers = producers_;
    ready.sources = sources_;
    ready.predecessor = predecessor_;
    // The connection is announced a moment before the socket can send on it: if READY finds no
    // connection yet, it is sent again shortly.
    ready_unsent_ = !send(ready, now) && linked_;
    if (ready_unsent_) spdlog::debug("READY found no connection yet; trying again");
  }

  /// False when the message found no connection to go out on (it is dropped, never queued).
  bool send(const wire::Message& message, Clock::time_point now) {
    header_.clear();
    wire::encode(message, header_);
    const bool sent = socket_->send(zmq::buffer(header_), zmq::send_flags::dontwait).has_value();
    last_sent_ = now;
    return sent;
  }

  int serve() {
    std::vector<zmq::message_t> frames;
    Clock::time_point awake = Clock::now();  // the time the last turn acted on
    while (true) {
      const Clock::time_point now = Clock::now();
      // Stopped (SIGSTOP) or starved of CPU between two turns: the silence was ours.
      if (now - awake > options_.heartbeat) last_heard_ = now;
      const Clock::time_point deadline = next_deadline();
      std::chrono::milliseconds timeout(-1);  // waiting for a producer: nothing to do until then
      if (deadline != Clock::time_point::max()) {
        timeout = std::max(std::chrono::milliseconds(0),
                           std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
      }
      zmq::pollitem_t items[] = {
          {socket_->handle(), 0, ZMQ_POLLIN, 0},
          {nullptr, done_fd_, ZMQ_POLLIN, 0},
          {monitor_->handle(), 0, ZMQ_POLLIN, 0},
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
        last_heard_ = after;
      }
      if (items[0].revents & ZMQ_POLLIN) {
        for (int i = 0; i < 256; ++i) {
          frames.clear();
          if (!zmq::recv_multipart(*socket_, std::back_inserter(frames),
                                   zmq::recv_flags::dontwait)) {
            break;
          }
          handle(frames, after);
        }
      }
      if (items[1].revents & ZMQ_POLLIN) send_results(after);
      if (items[2].revents & ZMQ_POLLIN) on_connection_event(after);
      if (items[3].revents & ZMQ_POLLIN) on_bell(after);
      if (!refusal_.empty()) {
        spdlog::error("{}", refusal_);
        return kExitRefused;
      }
      on_time(after);
      // The last moment this turn acted on: a stop anywhere after it shows as a gap next turn.
      awake = after;
    }
  }

  /// When the loop must act next, or max() when only an event can give it something to do.
  Clock::time_point next_deadline() const {
    Clock::time_point deadline = Clock::time_point::max();
    if (refused_until_) {
      deadline = *refused_until_;
    } else if (linked_) {
      deadline = std::min(last_sent_ + options_.heartbeat, last_heard_ + options_.liveness);
      if (ready_unsent_) deadline = last_sent_ + kReadyRetry;
    } else if (!gave_up_) {
      deadline = last_heard_ + options_.liveness;
    }
    if (bell_pending_ && !linked_) deadline = std::min(deadline, last_bell_retry_ + kBellSpacing);
    if (handshake_retry_at_ && !linked_) deadline = std::min(deadline, *handshake_retry_at_);
    return deadline;
  }

  void on_time(Clock::time_point now) {
    answer_bell(now);
    if (handshake_retry_at_ && now >= *handshake_retry_at_ && !linked_) reconnect_now();
    if (refused_until_) {
      if (now >= *refused_until_) {
        refused_until_.reset();
        last_heard_ = now;
        send_ready(now);  // perhaps a producer of our build runs there now
      }
      return;
    }
    if (!linked_) {
      // No connection: nothing to heartbeat, and libzmq (or a doorbell) is already retrying.
      // Only work held for a producer that has been away this long is given up on, once.
      if (!gave_up_ && now - last_heard_ >= options_.liveness) {
        gave_up_ = true;
        drop_queued_tasks();
        abandon_if_computing(std::nullopt, "the producer is gone");
      }
      return;
    }
    if (now - last_heard_ >= options_.liveness) {
      // Connected, but the producer is silent (hung, or a link that died without a word): start
      // afresh with a new socket and offer ourselves again.
      if (connected_to_producer_) {
        spdlog::warn("producer at {} silent for {:.1f} s; reconnecting", options_.endpoint,
                     std::chrono::duration<double>(now - last_heard_).count());
      }
      drop_queued_tasks();
      abandon_if_computing(std::nullopt, "the producer is gone");
      connect();
      return;
    }
    if (ready_unsent_) {
      if (now >= last_sent_ + kReadyRetry) send_ready(now);
      return;
    }
    if (now - last_sent_ >= options_.heartbeat) send(wire::Heartbeat{0}, now);
  }

  void handle(std::vector<zmq::message_t>& frames, Clock::time_point now) {
    wire::Message message;
    try {
      message = wire::decode(frames[0].to_string_view(), frames.size() - 1);
    } catch (const wire::ProtocolError& e) {
      LogBudget& budget = garbage_logs_[e.kind_name()];
      if (budget.spend()) {
        spdlog::warn("dropped a malformed message from the producer ({} of this kind so far): {}",
                     budget.count(), e.what());
      }
      return;
    }
    last_heard_ = now;
    if (!connected_to_producer_) {
      connected_to_producer_ = true;
      predecessor_.reset();  // reported to a producer that listens
      spdlog::info("connected to producer at {}", options_.endpoint);
    }
    if (auto* heartbeat = std::get_if<wire::Heartbeat>(&message)) {
      serve_session(heartbeat->session);
    } else if (auto* assign = std::get_if<wire::Assign>(&message)) {
      if (!serve_session(assign->job.session)) return;  // of a producer run already replaced
      Task task{std::move(*assign), {}};
      task.payloads.reserve(frames.size() - 1);
      for (std::size_t i = 1; i < frames.size(); ++i) task.payloads.push_back(std::move(frames[i]));
      std::lock_guard lock(mutex_);
      if (!cancelled_.contains(task.assign.job)) tasks_.push_back(std::move(task));
      task_ready_.notify_one();
    } else if (auto* cancel = std::get_if<wire::Cancel>(&message)) {
      std::unique_lock lock(mutex_);
      if (cancelled_.size() > 1024) cancelled_.clear();
      cancelled_.insert(cancel->job);
      const auto dropped =
          std::erase_if(tasks_, [&](const Task& t) { return t.assign.job == cancel->job; });
      spdlog::debug("job {} cancelled: dropped {} queued batch(es)", cancel->job.seq, dropped);
      lock.unlock();
      abandon_if_computing(cancel->job, "the job was cancelled");
    } else if (std::holds_alternative<wire::Who>(message)) {
      send_ready(now);
    } else if (auto* refuse = std::get_if<wire::Refuse>(&message)) {
      // Each new reason is logged, within a budget: a producer could send ever new ones.
      if (refuse->reason != last_refusal_ && refusal_log_.spend()) {
        spdlog::error("refused by the producer at {}: {}", options_.endpoint,
                      printable(refuse->reason));
        last_refusal_ = refuse->reason;
      }
      refused_until_ = now + 6 * options_.liveness;
      drop_queued_tasks();
    } else if (LogBudget& budget = garbage_logs_["a message producers do not send"];
               budget.spend()) {
      spdlog::warn("dropped a {} message, which producers do not send ({} so far)",
                   wire::type_name(message), budget.count());
    }
  }

  /// Notes which producer run is talking. When a new one has taken over the address, work
  /// queued or running for the old one is of no use to anybody. Returns false for a run that
  /// was already replaced: its messages may still arrive late (ZeroMQ reads the old connection
  /// and the new one in turn), and must not make the worker drop the work of its successor.
  bool serve_session(std::uint64_t session) {
    if (session == 0 || session == session_) return true;
    if (std::find(replaced_sessions_.begin(), replaced_sessions_.end(), session) !=
        replaced_sessions_.end()) {
      return false;
    }
    if (session_ != 0) {
      if (new_run_log_.spend()) {
        spdlog::info("a new producer run is serving at {} ({} so far)", options_.endpoint,
                     new_run_log_.count());
      }
      if (replaced_sessions_.size() >= kReplacedSessionsKept) replaced_sessions_.pop_front();
      replaced_sessions_.push_back(session_);
    }
    session_ = session;
    {
      std::lock_guard lock(mutex_);
      std::erase_if(tasks_, [&](const Task& t) { return t.assign.job.session != session; });
      if (!computing_ || computing_->session == session) return true;
    }
    abandon_if_computing(std::nullopt, "its producer run has ended");
    return true;
  }

  void send_results(Clock::time_point now) {
    std::uint64_t value;
    [[maybe_unused]] ssize_t n = ::read(done_fd_, &value, sizeof value);
    std::deque<Done> ready;
    {
      std::lock_guard lock(mutex_);
      ready.swap(done_);
    }
    for (Done& d : ready) {
      header_.clear();
      wire::encode(d.result, header_);
      const bool has_values = !d.value_sizes.empty();
      const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
      (void)socket_->send(zmq::buffer(header_), has_values ? more : zmq::send_flags::dontwait);
      std::size_t offset = 0;
      for (std::size_t i = 0; i < d.value_sizes.size(); ++i) {
        const bool last = i + 1 == d.value_sizes.size();
        (void)socket_->send(zmq::buffer(d.values.data() + offset, d.value_sizes[i]),
                            last ? zmq::send_flags::dontwait : more);
        offset += d.value_sizes[i];
      }
      last_sent_ = now;
    }
  }

  void drop_queued_tasks() {
    std::lock_guard lock(mutex_);
    tasks_.clear();
  }

  void leave(int status) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      tasks_.clear();
      task_ready_.notify_all();
    }
    if (socket_) {
      spdlog::info("leaving: telling the producer");
      send(wire::Bye{"the worker was asked to stop"}, Clock::now());
      socket_->set(zmq::sockopt::linger, 1000);  // give the BYE a moment to reach the producer
      close_socket();
    }
    context_.close();
    if (options_.supervised) exit_at_once(status);  // a kernel may still be running: do not wait
    compute_.join();
  }

  // --- the compute side ------------------------------------------------------------------

  void compute_loop() {
    std::map<std::pair<std::string, std::string>, KernelLookup> kernels;
    while (true) {
      Task task;
      {
        std::unique_lock lock(mutex_);
        task_ready_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (stopping_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      const wire::Assign& a = task.assign;
      auto key = std::make_pair(a.producer, a.source);
      auto found = kernels.find(key);
      if (found == kernels.end()) {
        if (kernels.size() > 256) kernels.clear();  // bounded, whatever names arrive
        found = kernels.emplace(key, lookup(a.producer, a.source)).first;
      }
      Done done;
      done.result.job = a.job;
      done.result.batch = a.batch;
      set_computing(a.job);
      const bool finished = compute(task, found->second, done);
      set_computing(std::nullopt);
      if (!finished) continue;  // cancelled
      {
        std::lock_guard lock(mutex_);
        done_.push_back(std::move(done));
      }
      const std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(done_fd_, &one, sizeof one);
    }
  }

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
    std::lock_guard lock(mutex_);
    computing_ = job;
  }

  /// A supervised worker computing for a job nobody waits for any more exits, so that its pool
  /// restarts it at once, free for work that counts.
  void abandon_if_computing(const std::optional<wire::JobId>& job, std::string_view why) {
    if (!options_.supervised) return;
    std::lock_guard lock(mutex_);
    if (!computing_ || (job && !(*computing_ == *job))) return;
    // A slice of the usual length finishes sooner than a restart would make the worker free.
    const auto elapsed = Clock::now().time_since_epoch().count() - slice_started_.load();
    const auto typical = typical_slice_ns_.load();
    if (typical > 0 && elapsed < 2 * typical + 10'000'000) return;
    spdlog::info("abandoning a slice of job {}: {}; restarting", computing_->seq, why);
    if (CrashRecord* r = options_.crash_record) r->abandoned.store(1, std::memory_order_release);
    exit_at_once(kExitAbandoned);
  }

  bool cancelled(const wire::JobId& job) {
    std::lock_guard lock(mutex_);
    return stopping_ || cancelled_.contains(job);
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
      if (CrashRecord* r = options_.crash_record) {
        r->session.store(a.job.session, std::memory_order_relaxed);
        r->seq.store(a.job.seq, std::memory_order_relaxed);
        r->slice.store(range.index, std::memory_order_relaxed);
        r->in_slice.store(1, std::memory_order_release);
      }
      const Clock::time_point start = Clock::now();
      slice_started_.store(std::chrono::nanoseconds(start.time_since_epoch()).count());
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
      if (CrashRecord* r = options_.crash_record) r->in_slice.store(0, std::memory_order_release);
      const auto typical = typical_slice_ns_.load();
      typical_slice_ns_.store(
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
        done.value_sizes.push_back(done.values.size() - before);
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

  const WorkerOptions& options_;
  const std::vector<std::string> producers_;
  const std::vector<std::string> sources_;
  std::optional<wire::Predecessor> predecessor_;

  // I/O thread only.
  zmq::context_t context_{1};
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<zmq::socket_t> monitor_;  // connection events of socket_
  // Handshakes failed in a row (without keys: a peer that wants keys, after kFailuresMeaningKeys).
  unsigned failed_handshakes_ = 0;
  static constexpr unsigned kFailuresMeaningKeys = 3;
  std::optional<Doorbell> doorbell_;  // rung by a producer binding our producer's port
  bool linked_ = false;               // socket_ has a connection through its handshake
  bool gave_up_ = false;              // not linked, and queued work was dropped after liveness
  bool ready_unsent_ = false;         // linked, but READY found no connection to go out on yet
  std::optional<Clock::time_point> handshake_retry_at_;  // after a failed handshake
  bool bell_pending_ = false;                            // a bell not yet answered
  Clock::time_point last_bell_retry_;                    // when a bell last made the worker retry
  std::string identity_;
  std::string header_;
  Clock::time_point last_heard_;
  Clock::time_point last_sent_;
  bool connected_to_producer_ = false;
  std::optional<Clock::time_point> refused_until_;
  std::string refusal_;        // why the producer refused this worker at the handshake
  LogBudgets handshake_logs_;  // failed handshakes with a peer that is not our producer
  std::string last_refusal_;
  LogBudgets garbage_logs_;     // malformed messages, by kind
  LogBudget unknown_name_log_;  // the compute thread's
  std::uint64_t session_ = 0;   // the producer run being served, once known
  // Producer runs replaced by a later one, most recent last (serve_session).
  static constexpr std::size_t kReplacedSessionsKept = 16;
  std::deque<std::uint64_t> replaced_sessions_;
  LogBudget new_run_log_{16};  // a producer could claim a new session with every message
  LogBudget refusal_log_;
  int done_fd_ = -1;

  // Shared between the I/O thread and the compute thread.
  std::mutex mutex_;
  std::condition_variable task_ready_;
  std::deque<Task> tasks_;
  std::deque<Done> done_;
  std::unordered_set<wire::JobId, JobIdHash> cancelled_;
  std::optional<wire::JobId> computing_;           // the job of the batch being computed
  std::atomic<std::int64_t> slice_started_{0};     // steady clock, ns: the slice computing now
  std::atomic<std::int64_t> typical_slice_ns_{0};  // running mean of slice compute times
  bool stopping_ = false;

  std::thread compute_;
};

}  // namespace

int run_worker(const WorkerOptions& options) {
  Worker worker(options);
  return worker.run();
}

}  // namespace pymar::detail
