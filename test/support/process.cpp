#include "support/process.hpp"
#include "support/roots.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <doctest/doctest.h>

namespace pymar::test {

namespace {

// Set by the build when the tests (and so the binaries they start) are built with sanitizers.
#ifdef PYMAR_TEST_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// How a sanitizer report begins, in a log file or on stderr.
const char* const kReportMarkers[] = {"runtime error:", "ERROR: AddressSanitizer",
                                      "ERROR: LeakSanitizer"};

void add_option(std::string& options, const std::string& option) {
  if (!options.empty()) options += ':';
  options += option;
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// Each line of `text` that starts a sanitizer report, with the lines that follow it.
std::vector<std::string> reports_in(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::vector<std::string> reports;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    bool starts = false;
    for (const char* marker : kReportMarkers) starts |= lines[i].find(marker) != std::string::npos;
    if (!starts) continue;
    std::string report;
    for (std::size_t j = i; j < lines.size() && j < i + 40; ++j) report += lines[j] + '\n';
    reports.push_back(report);
  }
  return reports;
}

}  // namespace

Process::Process(std::vector<std::string> argv,
                 std::vector<std::pair<std::string, std::string>> env, Start start)
    : argv0_(argv.empty() ? std::string() : argv.front()) {
  if (kSanitized) {
    // Every process of the group writes its reports here (as asan.PID, ubsan.PID), whoever
    // started it: the options are inherited by a pool's workers.
    std::string folder =
        (std::filesystem::temp_directory_path() / "pymar-sanitizer-XXXXXX").string();
    if (::mkdtemp(folder.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    report_dir_ = folder;
    std::string asan = environment("ASAN_OPTIONS");
    std::string ubsan = environment("UBSAN_OPTIONS");
    std::vector<std::pair<std::string, std::string>> others;
    for (auto& [key, value] : env) {
      if (key == "ASAN_OPTIONS") {
        add_option(asan, value);
      } else if (key == "UBSAN_OPTIONS") {
        add_option(ubsan, value);
      } else {
        others.emplace_back(key, value);
      }
    }
    if (start == Start::kNoLeakCheck) add_option(asan, "detect_leaks=0");
    add_option(asan, "log_path=" + report_dir_ + "/asan");
    add_option(ubsan, "log_path=" + report_dir_ + "/ubsan");
    others.emplace_back("ASAN_OPTIONS", asan);
    others.emplace_back("UBSAN_OPTIONS", ubsan);
    env = std::move(others);
  }
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    execv(args[0], args.data());
    _exit(127);
  }
  setpgid(pid_, pid_);  // also here, so that signal_group never races the child's own call
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  reader_ = std::thread([this, out = out_pipe[0], err = err_pipe[0]] { read_pipes(out, err); });
  waiter_ = std::thread([this] {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    std::lock_guard lock(mutex_);
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    changed_.notify_all();
  });
}

Process::~Process() {
  stop_group();
  waiter_.join();
  reader_.join();
  if (!report_dir_.empty()) {
    check_sanitizer_reports();
    std::error_code ignored;
    std::filesystem::remove_all(report_dir_, ignored);
  }
}

void Process::stop_group() {
  std::unique_lock lock(mutex_);
  if (!status_) {
    // As a user would stop it, so that it (and each worker it stops) ends the usual way.
    ::kill(pid_, SIGTERM);
    ::kill(pid_, SIGCONT);  // in case a test left it stopped
    if (!changed_.wait_for(lock, scaled(30s), [&] { return status_.has_value(); })) {
      ::kill(-pid_, SIGKILL);
      FAIL_CHECK(argv0_ << " (pid " << pid_ << ") was still running 30 s after SIGTERM");
    }
  }
  // The rest of the group (a pool's workers) dies with its parent; its pipes close when the
  // last of it has exited.
  ::kill(-pid_, SIGCONT);
  if (!changed_.wait_for(lock, scaled(30s), [&] { return pipes_closed_; })) {
    ::kill(-pid_, SIGKILL);
    FAIL_CHECK("processes of the group of " << argv0_ << " (pid " << pid_
                                            << ") were still running 30 s after it ended");
  }
}

void Process::check_sanitizer_reports() {
  std::vector<std::string> reports;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(report_dir_, error)) {
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    if (!text.str().empty())
      reports.push_back(entry.path().filename().string() + ":\n" + text.str());
  }
  // GCC 12's UBSan writes some reports to stderr whatever log_path says.
  for (std::string& report : reports_in(err())) reports.push_back("stderr:\n" + report);
  for (const std::string& report : reports) {
    FAIL_CHECK("a sanitizer reported on a process of the group of " << argv0_ << " (pid " << pid_
                                                                    << ") in " << report);
  }
}

void Process::read_pipes(int out_fd, int err_fd) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open = 2;
  char buffer[65536];
  while (open > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
        continue;
      }
      std::lock_guard lock(mutex_);
      (i == 0 ? out_ : err_).append(buffer, static_cast<std::size_t>(n));
      changed_.notify_all();
    }
  }
  std::lock_guard lock(mutex_);
  pipes_closed_ = true;
  changed_.notify_all();
}

void Process::signal(int signal) {
  std::lock_guard lock(mutex_);
  if (!status_) ::kill(pid_, signal);
}

void Process::signal_group(int signal) {
  std::lock_guard lock(mutex_);
  ::kill(-pid_, signal);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, scaled(timeout), [&] { return status_.has_value(); });
  // Then everything it wrote: its pipes close when it and whatever it started have exited.
  if (status_) changed_.wait_for(lock, scaled(10s), [&] { return pipes_closed_; });
  return status_;
}

bool Process::running() {
  std::lock_guard lock(mutex_);
  return !status_;
}

std::optional<std::string> Process::wait_for(const std::string& pattern, bool on_stderr,
                                             std::chrono::milliseconds timeout, std::size_t skip) {
  const std::regex re(pattern);
  std::optional<std::string> found;
  auto search = [&] {
    const std::string& text = on_stderr ? err_ : out_;
    std::size_t seen = 0;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (std::regex_search(line, re) && seen++ >= skip) {
        found = line;
        return true;
      }
    }
    return false;
  };
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, scaled(timeout), [&] { return search() || (status_ && pipes_closed_); });
  if (!found) search();
  return found;
}

std::optional<std::string> Process::wait_for_stderr(const std::string& pattern,
                                                    std::chrono::milliseconds timeout,
                                                    std::size_t skip) {
  return wait_for(pattern, true, timeout, skip);
}

std::optional<std::string> Process::wait_for_stdout(const std::string& pattern,
                                                    std::chrono::milliseconds timeout,
                                                    std::size_t skip) {
  return wait_for(pattern, false, timeout, skip);
}

std::string Process::out() {
  std::lock_guard lock(mutex_);
  return out_;
}

std::string Process::err() {
  std::lock_guard lock(mutex_);
  return err_;
}

std::size_t Process::count_stderr(const std::string& pattern) {
  const std::regex re(pattern);
  std::lock_guard lock(mutex_);
  std::size_t count = 0;
  std::istringstream lines(err_);
  for (std::string line; std::getline(lines, line);) count += std::regex_search(line, re);
  return count;
}

std::chrono::milliseconds scaled(std::chrono::milliseconds timeout) {
  static const double scale = [] {
    const char* text = std::getenv("PYMAR_TEST_TIME_SCALE");
    const double value = text ? std::strtod(text, nullptr) : 1.0;
    return value > 1.0 ? value : 1.0;
  }();
  return std::chrono::milliseconds(
      static_cast<std::chrono::milliseconds::rep>(static_cast<double>(timeout.count()) * scale));
}

std::string fresh_temp_path(const std::string& name) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove(path);
  return path.string();
}

unsigned free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string binary(const std::string& relative) {
  return std::string(build_root()) + "/" + relative;
}

std::string source_file(const std::string& relative) {
  return std::string(source_root()) + "/" + relative;
}

std::optional<std::string> line_after(const std::string& text, const std::string& prefix) {
  std::optional<std::string> found;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(prefix)) found = line.substr(prefix.size());
  }
  return found;
}

std::vector<long> slices_of_list(const std::string& list) {
  static const std::regex whole(R"(\d+(-\d+)?(, \d+(-\d+)?)*)");
  if (!std::regex_match(list, whole)) throw std::invalid_argument("not a list of slices: " + list);
  std::vector<long> slices;
  std::istringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    const auto dash = item.find('-');
    const long first = std::stol(item.substr(0, dash));
    const long last = dash == std::string::npos ? first : std::stol(item.substr(dash + 1));
    for (long n = first; n <= last; ++n) slices.push_back(n);
  }
  return slices;
}

pid_t pid_of_log_line(const std::string& line) {
  const auto open = line.find('[');
  const auto close = line.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return -1;
  return static_cast<pid_t>(std::stol(line.substr(open + 1, close - open - 1)));
}

}  // namespace pymar::test
