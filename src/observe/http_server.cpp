#include "observe/http_server.hpp"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "common/log.hpp"
#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

using Clock = std::chrono::steady_clock;

/// "localhost", "127.0.0.1", "[::1]" and friends: names and addresses of this machine only.
bool names_loopback(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr address{};
  const std::string text(host);
  return inet_pton(AF_INET, text.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

/// The host part of a Host header ("127.0.0.1:9100" -> "127.0.0.1", "[::1]:80" -> "[::1]").
std::string_view host_of(std::string_view header) {
  if (!header.empty() && header.front() == '[') return header.substr(0, header.find(']') + 1);
  return header.substr(0, header.find(':'));
}

/// The socket of one connection, as httplib reads and writes it, with our bounds: at most
/// `budget` bytes read, nothing after `deadline`, and nothing once the server stops (`stop_fd`
/// readable). httplib reads a request line by line and would keep every header a client sends,
/// for as long as the client keeps sending: the budget is what bounds it.
class BoundedStream final : public httplib::Stream {
 public:
  BoundedStream(int sock, int stop_fd, std::size_t budget, Clock::time_point deadline)
      : sock_(sock), stop_fd_(stop_fd), budget_(budget), deadline_(deadline) {}

  bool is_readable() const override { return wait_for(POLLIN); }
  bool is_writable() const override { return wait_for(POLLOUT); }

  ssize_t read(char* ptr, std::size_t size) override {
    if (size == 0) return 0;
    if (buffered_begin_ == buffered_end_) {
      const std::size_t room = std::min(sizeof buffer_, budget_);
      if (room == 0 || !wait_for(POLLIN)) return -1;
      const ssize_t n = ::recv(sock_, buffer_, room, MSG_DONTWAIT);
      if (n <= 0) return n == 0 ? 0 : -1;
      budget_ -= static_cast<std::size_t>(n);
      buffered_begin_ = 0;
      buffered_end_ = static_cast<std::size_t>(n);
    }
    const std::size_t n = std::min(size, buffered_end_ - buffered_begin_);
    std::memcpy(ptr, buffer_ + buffered_begin_, n);
    buffered_begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    if (!wait_for(POLLOUT)) return -1;
    return ::send(sock_, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(::getsockname, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  /// Waits until the socket is ready for `events`; false at the deadline or when stopping.
  bool wait_for(short events) const {
    for (;;) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      if (left <= 0) return false;
      pollfd fds[] = {{sock_, events, 0}, {stop_fd_, POLLIN, 0}};
      const int n = ::poll(fds, 2, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || fds[1].revents != 0) return false;
      return (fds[0].revents & (events | POLLHUP | POLLERR)) != 0;
    }
  }

  void address_of(int (*get)(int, sockaddr*, socklen_t*), std::string& ip, int& port) const {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    char text[INET6_ADDRSTRLEN] = "";
    port = 0;
    if (get(sock_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return;
    if (address.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
      inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
      port = ntohs(v4->sin_port);
    } else if (address.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      port = ntohs(v6->sin6_port);
    }
    ip = text;
  }

  int sock_;
  int stop_fd_;
  std::size_t budget_;
  Clock::time_point deadline_;
  char buffer_[4096];
  std::size_t buffered_begin_ = 0;
  std::size_t buffered_end_ = 0;
};

/// httplib's thread pool queues every accepted connection without limit. This one holds at
/// most `pending`; past that the accepting thread waits, so further clients wait in the
/// kernel's listen backlog (and are refused when it is full) instead of in our memory.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(std::size_t threads, std::size_t pending) : pending_(pending) {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { serve(); });
  }
  ~BoundedPool() override { shutdown(); }

  void enqueue(std::function<void()> task) override {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return queue_.size() < pending_ || stopping_; });
    queue_.push_back(std::move(task));  // even when stopping: the task closes its socket
    ready_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void serve() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and nothing left to close
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      room_.notify_one();
      task();
    }
  }

  std::size_t pending_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable room_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

class BoundedServer final : public httplib::Server {
 public:
  BoundedServer(const HttpLimits& limits, int stop_fd) : limits_(limits), stop_fd_(stop_fd) {}

 private:
  // One request per connection, through our bounded stream (as httplib's SSLServer does
  // through its TLS stream).
  bool process_and_close_socket(socket_t sock) override {
    BoundedStream stream(sock, stop_fd_, limits_.request_bytes, Clock::now() + limits_.deadline);
    bool closed = false;
    const bool ok = process_request(stream, true, closed, [](httplib::Request&) {});
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  HttpLimits limits_;
  int stop_fd_;
};

}  // namespace

struct HttpServer::Impl {
  HttpLimits limits;
  int stop_fd = -1;
  std::unique_ptr<BoundedServer> server;
  std::map<std::string, HttpRoute, std::less<>> routes;
  bool loopback_only = false;
  std::uint16_t port = 0;
  std::thread thread;
  std::atomic<bool> listen_returned{false};

  httplib::Server::HandlerResponse answer(const httplib::Request& request,
                                          httplib::Response& response) const {
    response.set_header("Cache-Control", "no-store");
    response.set_header("X-Content-Type-Options", "nosniff");
    const std::string host = request.get_header_value("Host");
    if (loopback_only && !host.empty() && !names_loopback(host_of(host))) {
      // A page elsewhere that rebinds its own name to 127.0.0.1 must not read us. (Browsers
      // always send Host; a request without one comes from a tool on this machine.)
      response.status = 403;
      response.set_content("this server answers only requests addressed to loopback\n",
                           "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (request.method != "GET" && request.method != "HEAD") {
      response.status = 405;
      response.set_header("Allow", "GET, HEAD");
      response.set_content("only GET\n", "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    }
    const auto route = routes.find(request.path);
    if (route == routes.end()) {
      response.status = 404;
      response.set_content("not found\n", "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    }
    response.set_content(route->second.body(), route->second.content_type.c_str());
    return httplib::Server::HandlerResponse::Handled;
  }
};

HttpServer::HttpServer(const std::string& host, unsigned port, std::vector<HttpRoute> routes,
                       HttpLimits limits)
    : impl_(std::make_unique<Impl>()) {
  Impl& self = *impl_;
  self.limits = limits;
  self.loopback_only = names_loopback(host);
  for (HttpRoute& route : routes) self.routes.emplace(route.path, std::move(route));
  self.stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (self.stop_fd < 0) throw Error(fmt::format("eventfd: {}", std::strerror(errno)));
  self.server = std::make_unique<BoundedServer>(limits, self.stop_fd);
  BoundedServer& server = *self.server;
  server.new_task_queue = [limits] { return new BoundedPool(limits.threads, limits.pending); };
  server.set_read_timeout(limits.deadline);
  server.set_write_timeout(limits.deadline);
  server.set_payload_max_length(limits.request_bytes);
  server.set_pre_routing_handler(
      [&self](const httplib::Request& request, httplib::Response& response) {
        return self.answer(request, response);
      });
  // httplib binds "localhost" to whichever address getaddrinfo gives first: say what we mean.
  std::string address = host == "localhost" ? "127.0.0.1" : host;
  if (address.size() > 2 && address.front() == '[') address = address.substr(1, address.size() - 2);
  const int bound =
      port == 0
          ? server.bind_to_any_port(address)
          : (server.bind_to_port(address, static_cast<int>(port)) ? static_cast<int>(port) : -1);
  if (bound <= 0) {
    const int error = errno;
    ::close(self.stop_fd);
    throw Error(fmt::format("cannot listen on {}:{} for HTTP: {}", host, port,
                            error != 0 ? std::strerror(error) : "bind failed"));
  }
  self.port = static_cast<std::uint16_t>(bound);
  self.thread = std::thread([&self] {
    self.server->listen_after_bind();
    self.listen_returned = true;
  });
  // stop() does nothing to a server that is not listening yet: wait until it is (a moment).
  while (!server.is_running() && !self.listen_returned) std::this_thread::yield();
}

HttpServer::~HttpServer() {
  Impl& self = *impl_;
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(self.stop_fd, &one, sizeof one);  // ends open connections
  self.server->stop();
  if (self.thread.joinable()) self.thread.join();
  self.server.reset();
  ::close(self.stop_fd);
}

std::uint16_t HttpServer::port() const {
  return impl_->port;
}

}  // namespace pymar::detail
