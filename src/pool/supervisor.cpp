#include "pool/supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include <fmt/format.h>

#include "common/build_id.hpp"
#include "common/clock.hpp"
#include "common/exit_at_once.hpp"
#include "common/log.hpp"
#include "pool/status_socket.hpp"
#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

constexpr std::chrono::milliseconds kQuickDeath{1000};  // a worker dying sooner is crash-looping
constexpr std::chrono::milliseconds kMaxBackoff{10000};
constexpr std::chrono::milliseconds kStopTimeout{10000};

struct Slot {
  pid_t pid = 0;
  Clock::time_point started;
  std::chrono::milliseconds backoff{0};
  std::optional<Clock::time_point> restart_at;
  std::optional<ProcessEnd> predecessor;
  bool ever_started = false;
  std::uint64_t restarts = 0;  // processes started after the first
  std::uint64_t crashes = 0;   // processes that were killed or failed
  std::string last_end;        // how the last one ended, for the status
};

std::string signal_name(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", signal);
}

class Pool {
 public:
  explicit Pool(const PoolOptions& options)
      : options_(options), slots_(options.processes), producer_(options.producer) {
    const std::size_t bytes = sizeof(CrashRecord) * std::max(1u, options.processes);
    void* shared = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) throw Error(fmt::format("mmap: {}", std::strerror(errno)));
    records_ = static_cast<CrashRecord*>(shared);
    for (unsigned i = 0; i < options.processes; ++i) new (&records_[i]) CrashRecord();
    records_bytes_ = bytes;
  }

  ~Pool() {
    munmap(records_, records_bytes_);
    if (signal_fd_ >= 0) close(signal_fd_);
  }

  int run() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
    sigprocmask(SIG_BLOCK, &signals, nullptr);

    // The signals arrive on a descriptor, so that one poll waits for them and for askers.
    signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) throw Error(fmt::format("signalfd: {}", std::strerror(errno)));
    started_ = Clock::now();
    for (unsigned i = 0; i < slots_.size(); ++i) spawn(i);
    bool stopping = false;
    Clock::time_point stop_deadline{};
    if (options_.await_producer) {
      // The workers start while the producer binds; they wait for its endpoint too.
      if (auto producer = options_.await_producer()) {
        producer_ = std::move(*producer);
      } else {
        // No producer will come: the workers read the same end of file and return; none has
        // computed anything.
        kill_all(SIGTERM);
        while (waitpid(-1, nullptr, 0) > 0) {
        }
        return 0;
      }
    }
    while (true) {
      std::optional<Clock::time_point> wake_at;
      for (const Slot& slot : slots_) {
        if (slot.restart_at && !stopping)
          wake_at = std::min(wake_at.value_or(*slot.restart_at), *slot.restart_at);
      }
      if (stopping) wake_at = stop_deadline;
      timespec timeout{};
      if (wake_at) {
        const auto wait = std::max(Clock::duration::zero(), *wake_at - Clock::now());
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        timeout = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      }
      pollfd waiting[] = {{signal_fd_, POLLIN, 0}, {status_.fd(), POLLIN, 0}};
      (void)ppoll(waiting, 2, wake_at ? &timeout : nullptr, nullptr);
      if (waiting[1].revents & POLLIN) status_.answer([&] { return status(); });
      signalfd_siginfo info{};
      int signal = 0;
      if (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        signal = static_cast<int>(info.ssi_signo);
      }
      if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) {
        if (stopping) {
          spdlog::warn("second {}: killing the workers", signal_name(signal));
          kill_all(SIGKILL);
        } else {
          spdlog::info("{}: stopping {} worker process(es)", signal_name(signal), running());
          stopping = true;
          stop_deadline = Clock::now() + kStopTimeout;
          kill_all(SIGTERM);
        }
      }
      reap(stopping);
      if (refused_ && !stopping) {
        // The producer will refuse every process of this pool alike: stop rather than retry.
        spdlog::error("the producer refused this pool's workers; stopping the pool");
        stopping = true;
        stop_deadline = Clock::now() + kStopTimeout;
        kill_all(SIGTERM);
      }
      const Clock::time_point now = Clock::now();
      if (stopping) {
        if (running() == 0) break;
        if (now >= stop_deadline) {
          spdlog::warn("workers still running {} s after SIGTERM: killing them",
                       kStopTimeout.count() / 1000);
          kill_all(SIGKILL);
          stop_deadline = now + kStopTimeout;
        }
        continue;
      }
      for (unsigned i = 0; i < slots_.size(); ++i) {
        if (slots_[i].restart_at && now >= *slots_[i].restart_at) spawn(i);
      }
    }
    spdlog::info("worker pool stopped");
    return refused_ ? kExitRefused : 0;
  }

 private:
  void spawn(unsigned index) {
    Slot& slot = slots_[index];
    slot.restart_at.reset();
    records_[index].in_slice.store(0);
    records_[index].abandoned.store(0);
    records_[index].connected.store(0);
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      spdlog::error("cannot start a worker process: {}", std::strerror(errno));
      slot.restart_at = Clock::now() + std::chrono::seconds(1);
      return;
    }
    if (pid == 0) {
      // Die with the pool, whichever way it goes.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      status_.close_in_child();
      close(signal_fd_);
      if (getppid() != parent) exit_at_once(0);
      sigset_t stop;
      sigemptyset(&stop);
      sigaddset(&stop, SIGTERM);
      sigaddset(&stop, SIGINT);
      const int stop_fd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
      WorkerSlot worker{index, slot.predecessor, &records_[index], stop_fd};
      int status = 1;
      try {
        status = options_.run_worker(worker);
      } catch (const std::exception& e) {
        spdlog::error("worker failed: {}", e.what());
      }
      std::fflush(nullptr);
      exit_at_once(status);
    }
    if (slot.ever_started) ++slot.restarts;
    slot.ever_started = true;
    slot.pid = pid;
    slot.started = Clock::now();
    spdlog::debug("started worker process {} in slot {}", pid, index);
  }

  void reap(bool stopping) {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      auto slot =
          std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.pid == pid; });
      if (slot == slots_.end()) continue;
      const auto index = static_cast<unsigned>(slot - slots_.begin());
      slot->pid = 0;
      if (stopping) continue;
      ProcessEnd p;
      p.pid = pid;
      if (WIFSIGNALED(status)) p.signal = WTERMSIG(status);
      if (WIFEXITED(status)) p.exit_code = WEXITSTATUS(status);
      const CrashRecord& record = records_[index];
      p.in_slice = record.in_slice.load(std::memory_order_acquire) != 0;
      p.session = record.session.load();
      p.seq = record.seq.load();
      p.slice = record.slice.load();
      const std::string how = p.signal != 0 ? "killed by " + signal_name(p.signal)
                                            : fmt::format("exited with status {}", p.exit_code);
      slot->last_end = how;
      if (p.signal == 0 && p.exit_code == kExitRefused) {
        refused_ = true;  // the worker said why; no restart
        continue;
      }
      // Only the worker itself abandons: user code that exits with the same status crashed.
      const bool abandoned = p.signal == 0 && p.exit_code == kExitAbandoned &&
                             record.abandoned.load(std::memory_order_acquire) != 0;
      if (!abandoned && (p.signal != 0 || p.exit_code != 0)) ++slot->crashes;
      if (abandoned) {
        spdlog::info("worker process {} left a slice nobody needs; restarting it", pid);
        p.in_slice = false;  // not a crash: nothing to count against the slice
      } else if (p.in_slice) {
        spdlog::warn("worker process {} {} while computing slice {} of job {}; restarting it", pid,
                     how, p.slice, p.seq);
      } else {
        spdlog::warn("worker process {} {}; restarting it", pid, how);
      }
      slot->predecessor = p;
      // A process that dies soon after starting, before any slice, is crash-looping (a broken
      // environment): wait longer each time. One killed by a slice is restarted at once, so that
      // its successor reports the crash without delay (the producer bounds retries of a slice),
      // and so is one that left a slice nobody needed.
      const auto lived = Clock::now() - slot->started;
      slot->backoff =
          lived < kQuickDeath && !p.in_slice && !abandoned
              ? std::min(kMaxBackoff, std::max(std::chrono::milliseconds(100), slot->backoff * 2))
              : std::chrono::milliseconds(0);
      if (slot->backoff.count() > 0) {
        spdlog::warn("worker in slot {} died {} ms after starting; next start in {} ms", index,
                     std::chrono::duration_cast<std::chrono::milliseconds>(lived).count(),
                     slot->backoff.count());
      }
      slot->restart_at = Clock::now() + slot->backoff;
    }
  }

  void kill_all(int signal) {
    for (const Slot& slot : slots_) {
      if (slot.pid > 0) kill(slot.pid, signal);
    }
  }

  std::size_t running() const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pid > 0; }));
  }

  /// What `task --status --pool` shows: every slot, as the pool sees it now.
  wire::PoolStatus status() const {
    wire::PoolStatus out;
    out.task = task_name();
    out.build = build_fingerprint();
    out.host = host_name();
    out.pid = getpid();
    out.uptime_ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count());
    out.producer = producer_;
    out.workers_total = slots_.size();
    const std::size_t listed = std::min(slots_.size(), wire::kMaxStatusWorkers);
    for (std::size_t i = 0; i < listed; ++i) {
      const Slot& slot = slots_[i];
      const CrashRecord& record = records_[i];
      wire::PoolWorkerStatus w;
      w.slot = static_cast<std::uint32_t>(i);
      w.pid = slot.pid;
      w.restarts = slot.restarts;
      w.crashes = slot.crashes;
      w.last_end = slot.last_end;
      if (slot.pid == 0) {
        w.state = wire::PoolWorkerStatus::State::restarting;
      } else {
        w.connected = record.connected.load(std::memory_order_relaxed) != 0;
        if (record.in_slice.load(std::memory_order_acquire) != 0) {
          w.state = wire::PoolWorkerStatus::State::computing;
          w.job = record.seq.load();
          w.slice = record.slice.load();
        }
      }
      out.workers.push_back(std::move(w));
    }
    return out;
  }

  const PoolOptions& options_;
  std::vector<Slot> slots_;
  PoolStatusSocket status_;
  int signal_fd_ = -1;
  Clock::time_point started_;
  CrashRecord* records_ = nullptr;
  bool refused_ = false;  // a worker was refused by the producer at the handshake
  std::string producer_;  // what the workers serve (options_.producer, or awaited)
  std::size_t records_bytes_ = 0;
};

}  // namespace

int run_pool(const PoolOptions& options) {
  Pool pool(options);
  return pool.run();
}

}  // namespace pymar::detail
