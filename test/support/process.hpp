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

/// How a test starts a process.
enum class Start {
  kChecked,      ///< everything the sanitizers report, leaks included, fails the test
  kNoLeakCheck,  ///< for a process the test means to end abruptly: say why at the call
};

/// A child process in a process group of its own, with stdout and stderr captured. Destroying
/// it stops what is still running of the group with SIGTERM (so that every process ends as it
/// would in use, and LeakSanitizer runs in each), waits for all of it, then kills what is left.
///
/// In a sanitizer build, every process of the group (a pool's workers included) writes its
/// AddressSanitizer, LeakSanitizer and UBSan reports into a folder of this Process, and the
/// destructor fails the running test with each report found there or in the group's stderr.
/// ASAN_OPTIONS and UBSAN_OPTIONS given in `env` are added to those of the test's own
/// environment rather than replacing them.
class Process {
 public:
  explicit Process(std::vector<std::string> argv,
                   std::vector<std::pair<std::string, std::string>> env = {},
                   Start start = Start::kChecked);
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
  void stop_group();
  void check_sanitizer_reports();

  pid_t pid_ = -1;
  std::string argv0_;
  std::string report_dir_;  // empty when the tests are not built with a sanitizer
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_;
  std::string err_;
  bool pipes_closed_ = false;
  std::optional<int> status_;
  std::thread reader_;
  std::thread waiter_;
};

/// `timeout` stretched by PYMAR_TEST_TIME_SCALE (a number, 1 when unset), for builds such as the
/// sanitizers' that run everything several times slower. Only upper bounds are stretched.
std::chrono::milliseconds scaled(std::chrono::milliseconds timeout);

/// A TCP port on 127.0.0.1 that was free a moment ago.
unsigned free_port();

/// A path in the temporary directory, with nothing there: a marker named by a port must not be
/// one an earlier run left with the same port (a once-only slowdown would not happen).
std::string fresh_temp_path(const std::string& name);

/// Path of a binary of this build, relative to the build root ("examples/integration").
std::string binary(const std::string& relative);
/// A file of the source tree, by its path from the project's root.
std::string source_file(const std::string& relative);

/// The last line of `text` that starts with `prefix`, without the prefix.
std::optional<std::string> line_after(const std::string& text, const std::string& prefix);

/// The pid in a log line prefix such as "12:00:00.000 worker[1234] debug: ...".
pid_t pid_of_log_line(const std::string& line);

/// The slice numbers of a -v line's list ("0-3, 7" gives 0, 1, 2, 3, 7); throws if it is not one.
std::vector<long> slices_of_list(const std::string& list);

}  // namespace pymar::test
