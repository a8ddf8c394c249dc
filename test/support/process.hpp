// Process-level test support: start real binaries on real sockets, read what they log, signal
// them, and wait for events with generous upper bounds (never sleep to synchronise).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pymar::test {

using namespace std::chrono_literals;

/// A child process in a process group of its own, with stdout and stderr captured. Destroying
/// it kills the whole group (a pool and its workers included).
class Process {
 public:
  explicit Process(std::vector<std::string> argv,
                   std::vector<std::pair<std::string, std::string>> env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  /// Sends `signal` to the process itself, or to its whole group.
  void signal(int signal);
  void signal_group(int signal);

  /// Waits for the process to exit: its exit status, 128 + signal when killed, or nullopt when
  /// it is still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout = 120s);
  bool running();

  /// Waits until a line of stderr (stdout) matches the ECMAScript regex `pattern`, counting
  /// only lines after the first `skip` matches. Returns the line, or nullopt at the timeout or
  /// when the process exits first.
  std::optional<std::string> wait_for_stderr(const std::string& pattern,
                                             std::chrono::milliseconds timeout = 60s,
                                             std::size_t skip = 0);
  std::optional<std::string> wait_for_stdout(const std::string& pattern,
                                             std::chrono::milliseconds timeout = 60s,
                                             std::size_t skip = 0);

  /// Everything captured so far.
  std::string out();
  std::string err();
  /// Lines of stderr matching `pattern`.
  std::size_t count_stderr(const std::string& pattern);

 private:
  std::optional<std::string> wait_for(const std::string& pattern, bool on_stderr,
                                      std::chrono::milliseconds timeout, std::size_t skip);
  void read_pipes(int out_fd, int err_fd);

  pid_t pid_ = -1;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_;
  std::string err_;
  bool pipes_closed_ = false;
  std::optional<int> status_;
  std::thread reader_;
  std::thread waiter_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago.
unsigned free_port();

/// Path of a binary of this build, relative to the build root ("examples/integration").
std::string binary(const std::string& relative);

/// The last line of `text` that starts with `prefix`, without the prefix.
std::optional<std::string> line_after(const std::string& text, const std::string& prefix);

/// The pid in a log line prefix such as "12:00:00.000 worker[1234] debug: ...".
pid_t pid_of_log_line(const std::string& line);

}  // namespace pymar::test
