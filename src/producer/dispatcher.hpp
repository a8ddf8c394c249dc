// The producer's I/O thread: owns the ROUTER socket, feeds the scheduler with what workers say,
// sends what it decides, and hands each finished job back to the thread that called `map`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/keys.hpp"
#include "common/log.hpp"
#include "common/log_budget.hpp"
#include "common/unique_fd.hpp"
#include "producer/key_gate.hpp"
#include "producer/observation.hpp"
#include "producer/scheduler.hpp"

namespace pymar::detail {

/// How the producer shows a running job's progress: a live line redrawn in place (stderr is a
/// terminal), a plain log line every few seconds, or nothing.
enum class Progress { live, plain, off };

struct DispatcherOptions {
  std::string bind = "tcp://*:7627";  ///< ZeroMQ endpoint to bind; port "*" picks a free one
  SchedulerConfig scheduler;
  std::chrono::milliseconds grace{2000};  ///< wait this long for a worker before going local
  std::int64_t max_message_bytes = wire::kMaxValueBytes;  ///< larger frames cut a peer off
  int interrupt_fd = -1;  ///< readable when the producer is asked to stop (a signalfd), or -1
  /// Called on the I/O thread on an interrupt that finds no job running, and on a second
  /// interrupt: the command line ends the process there (the library never does).
  std::function<void()> on_idle_interrupt;
  std::function<void()> on_second_interrupt;
  /// CurveZMQ: the producer's own key pair and the workers' public keys it lets in. Without
  /// keys, every peer that reaches the port is let in (loopback or a trusted network).
  std::optional<Keys> keys;
  Progress progress = Progress::plain;
  /// Ring the doorbells of this machine's workers waiting for our port once it is bound.
  bool ring_doorbells = true;
};

enum class JobEnd { done, failed, no_workers, timed_out, interrupted, broken };

struct JobOutcome {
  JobEnd end = JobEnd::done;
  Partials partials;
  std::vector<std::size_t> missing;  ///< slices without a partial value
  std::optional<SliceError::Details> failure;
  std::string error;  ///< when broken: what stopped the dispatcher
  double seconds = 0;
  Clock::time_point started;  ///< when the I/O thread started the job
  JobStats stats;  ///< as the I/O thread saw the job (slices only when request.stats was set)
};

class Dispatcher final : private Outbox {
 public:
  /// Binds and starts the I/O thread. Throws pymar::Error when the endpoint cannot be bound.
  explicit Dispatcher(DispatcherOptions options);
  ~Dispatcher() override;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  /// The bound endpoint, with the port actually chosen ("tcp://0.0.0.0:7627").
  const std::string& endpoint() const { return endpoint_; }
  std::uint16_t port() const { return port_; }

  /// Runs a job on the workers until it is done, fails, times out, finds no worker for the grace
  /// period, or the producer is interrupted. `request` must stay valid until it returns.
  JobOutcome run(const JobRequest& request);

  /// Set by the first interrupt, for good: whoever computes slices beside the dispatcher stops.
  bool interrupted() const { return interrupted_.load(); }

  /// A job the caller of `map` computes itself (a small job), for as long as it lives: it takes
  /// its number from the same sequence as the workers' jobs; while it runs, an interrupt stops
  /// it (map throws Interrupted) instead of ending an idle producer at once; done() counts it in
  /// the observation's jobs (started and done), jobs_here and slices.
  class JobHere {
   public:
    explicit JobHere(Dispatcher& dispatcher)
        : dispatcher_(dispatcher), number_(dispatcher.next_job_.fetch_add(1)) {
      dispatcher_.jobs_here_running_.fetch_add(1);
    }
    ~JobHere() { dispatcher_.jobs_here_running_.fetch_sub(1); }
    JobHere(const JobHere&) = delete;
    JobHere& operator=(const JobHere&) = delete;
    std::uint64_t number() const { return number_; }
    void done(std::size_t slices) const {
      dispatcher_.slices_here_.fetch_add(slices, std::memory_order_relaxed);
      dispatcher_.jobs_here_.fetch_add(1, std::memory_order_relaxed);
    }

   private:
    Dispatcher& dispatcher_;
    std::uint64_t number_;
  };

  /// The latest snapshot the I/O thread published (never null; an empty one, sequence 0, until
  /// the first is made). Thread-safe and cheap. The first call starts publishing; each call asks
  /// for a fresh snapshot, which the I/O thread makes within Observation::kPublishInterval.
  std::shared_ptr<const Observation> observe() const;
  /// As observe(), but waits (at most `timeout`) for a snapshot made after this call: what an
  /// HTTP endpoint serves is then never older than the request that asked for it.
  std::shared_ptr<const Observation> observe_fresh(std::chrono::milliseconds timeout) const;

 private:
  void loop();
  bool step();                // one turn of the loop; false to stop
  void await_cancel_reads();  // at the end, for workers to read their CANCEL
  void bind_router();
  void receive(Clock::time_point now);
  void handle(zmq::message_t& identity, std::vector<zmq::message_t>& frames, Clock::time_point now);
  bool sent_with_own_key(const std::string& identity, const zmq::message_t& header);
  void answer_status(const std::string& asker, Clock::time_point now);
  void take_commands(Clock::time_point now);
  bool awaiting_bells(Clock::time_point now) const;
  void on_interrupt(Clock::time_point now);
  void report_progress(Clock::time_point now);
  void check_job(Clock::time_point now);
  void deliver(Clock::time_point now);
  void wake() const;
  /// Makes a new Observation for observe(): cheap enough for a few times a second.
  void publish(Clock::time_point now);
  void count_refused_peers(Clock::time_point now);
  /// -vv: one line per message, at most LineRate's a second (peers send as much as they like).
  void trace_message(std::string_view direction, const std::string& peer, std::string_view type,
                     std::size_t bytes);
  static void release_payload(void* data, void* hint);

  // Outbox
  void send(const std::string& worker, const wire::Message& message) override;
  std::size_t send_assign(const std::string& worker, const wire::Assign& assign,
                          const JobRequest& job) override;

  DispatcherOptions options_;
  zmq::context_t context_;
  std::optional<KeyGate> gate_;  // with keys: bound before the router, as ZeroMQ requires
  zmq::socket_t router_;         // closed (null) only while being bound again
  std::string endpoint_;
  std::uint16_t port_ = 0;
  UniqueFd wake_fd_ = make_eventfd();  // wakes the I/O thread: a job, a stop, a payload released
  Scheduler scheduler_;
  std::thread thread_;

  // Shared with the calling thread.
  std::mutex run_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable finished_;
  const JobRequest* submitted_ = nullptr;
  std::optional<JobOutcome> outcome_;
  bool stopping_ = false;
  std::optional<std::string> broken_;  // why the I/O thread stopped, if it did
  std::atomic<bool> interrupted_{false};

  // I/O thread only.
  const JobRequest* current_ = nullptr;
  wire::JobId current_id_;
  std::atomic<std::uint64_t> next_job_{1};  // also numbers the jobs computed here
  Clock::time_point job_started_;
  std::optional<Clock::time_point> job_deadline_;
  Clock::time_point next_progress_;         // of a long job
  Clock::time_point awake_ = Clock::now();  // the time the last turn acted on
  std::optional<JobOutcome> finishing_;     // waiting for zero-copy payloads to be released
  Clock::time_point drain_deadline_;
  std::string header_;  // reused encoding buffer
  std::vector<zmq::message_t> frames_;
  std::vector<zmq::message_t> payloads_;                // of the ASSIGN being sent
  std::optional<SliceError::Details> payload_failure_;  // a slice too large to send
  std::vector<std::string_view> views_;                 // of the frames being handled
  const Clock::time_point started_ = Clock::now();
  static constexpr unsigned kStatusAnswersPerSecond = 50;
  Clock::time_point status_window_;
  unsigned status_answers_ = 0;
  LogBudgets garbage_logs_;        // malformed messages by kind, over the dispatcher's life
  std::size_t garbage_count_ = 0;  // malformed messages during the current job
  std::size_t bells_rung_ = 0;     // doorbells rung when the port was bound
  Clock::time_point bells_until_;  // until then, a new job waits for the workers that heard them

  // Statistics over the producer's life and of the current job (I/O thread only).
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  std::uint64_t job_bytes_in_ = 0;  // at the start of the current job
  std::uint64_t job_bytes_out_ = 0;
  std::uint64_t jobs_started_ = 0;
  std::uint64_t jobs_done_ = 0;
  std::uint64_t jobs_failed_ = 0;
  std::size_t gate_refused_ = 0;
  LineRate trace_rate_;     // refusals of the key gate already recorded as faults
  bool observing_ = false;  // someone called observe(): publish at job start and end
  std::uint64_t published_ = 0;
  Clock::time_point next_publish_;
  std::shared_ptr<const JobStats> last_job_;  // bounded, as Observation::last

  // Snapshots for other threads (observe()).
  mutable std::mutex observation_mutex_;
  mutable std::condition_variable observation_published_;
  std::shared_ptr<const Observation> observation_ = std::make_shared<const Observation>();
  mutable std::atomic<bool> observation_wanted_{false};  // observe() called since last publish

  // Jobs the caller of `map` computes itself, as small (written by that thread).
  std::atomic<std::uint64_t> jobs_here_{0};
  std::atomic<std::uint64_t> slices_here_{0};
  std::atomic<int> jobs_here_running_{0};

  // Payloads sent zero-copy from the job's memory that ZeroMQ still holds.
  std::atomic<std::size_t> payloads_in_flight_{0};
};

}  // namespace pymar::detail
