#include "support/process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace pymar::test {

Process::Process(std::vector<std::string> argv,
                 std::vector<std::pair<std::string, std::string>> env) {
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
  {
    std::lock_guard lock(mutex_);
    if (!status_) ::kill(-pid_, SIGKILL);
  }
  waiter_.join();
  ::kill(-pid_, SIGKILL);  // whatever is left of the group (workers of a pool)
  reader_.join();
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
  changed_.wait_for(lock, timeout, [&] { return status_.has_value(); });
  // Then everything it wrote: its pipes close when it and whatever it started have exited.
  if (status_) changed_.wait_for(lock, 10s, [&] { return pipes_closed_; });
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
  changed_.wait_for(lock, timeout, [&] { return search() || (status_ && pipes_closed_); });
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
  return std::string(PYMAR_BUILD_ROOT) + "/" + relative;
}

std::optional<std::string> line_after(const std::string& text, const std::string& prefix) {
  std::optional<std::string> found;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(prefix)) found = line.substr(prefix.size());
  }
  return found;
}

pid_t pid_of_log_line(const std::string& line) {
  const auto open = line.find('[');
  const auto close = line.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return -1;
  return static_cast<pid_t>(std::stol(line.substr(open + 1, close - open - 1)));
}

}  // namespace pymar::test
