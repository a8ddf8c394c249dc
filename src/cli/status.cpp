#include "cli/status.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/build_id.hpp"
#include "common/crash_record.hpp"
#include "common/printable.hpp"
#include "pool/status_socket.hpp"
#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

std::string seconds(std::uint64_t ms) {
  return fmt::format("{:.1f} s", static_cast<double>(ms) / 1000.0);
}

/// A JSON string literal. Text from the producer is printable already; escape what JSON needs.
std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

/// Watches the socket's handshakes, as a worker does: a producer with keys that refuses ours says
/// so during the handshake, and waiting out the timeout would only hide why.
class HandshakeWatch {
 public:
  HandshakeWatch(zmq::context_t& context, zmq::socket_t& socket)
      : monitor_(context, zmq::socket_type::pair) {
    static int serial = 0;
    const std::string address = fmt::format("inproc://status-monitor-{}", ++serial);
    zmq_socket_monitor(socket.handle(), address.c_str(),
                       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    monitor_.connect(address);
  }
  zmq::socket_t& socket() { return monitor_; }

  /// The last failed handshake's event and value, after monitor_ polled readable.
  std::pair<std::uint16_t, std::uint32_t> read() {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(monitor_, std::back_inserter(frames)) || frames[0].size() < 6) {
      return {0, 0};
    }
    std::uint16_t event = 0;
    std::uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), sizeof event);
    std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, sizeof value);
    return {event, value};
  }

 private:
  zmq::socket_t monitor_;
};

}  // namespace

std::string status_text(const wire::Status& s, const std::string& endpoint) {
  std::string out = fmt::format("producer {} (build {}) at {}: pid {} on {}, up {}\n", s.task,
                                s.build, endpoint, s.pid, s.host, seconds(s.uptime_ms));
  if (s.job) {
    const wire::JobStatus& j = *s.job;
    const double percent = j.slices_total == 0 ? 100.0
                                               : 100.0 * static_cast<double>(j.slices_done) /
                                                     static_cast<double>(j.slices_total);
    out += fmt::format("job {}: {} over {}: {} of {} slices done ({:.0f}%), {} re-run, {}\n", j.seq,
                       j.producer, j.source, j.slices_done, j.slices_total, percent, j.reruns,
                       seconds(j.elapsed_ms));
  } else {
    out += "no job running\n";
  }
  out += fmt::format("{} worker(s) connected{}\n", s.workers_total,
                     s.workers.size() < s.workers_total
                         ? fmt::format(", the {} busiest listed", s.workers.size())
                         : "");
  if (!s.workers.empty()) {
    out += fmt::format("  {:<24} {:>8} {:>6} {:>9} {:>11} {:>11}\n", "host", "pid", "credit",
                       "in flight", "slices done", "last heard");
  }
  for (const wire::WorkerStatus& w : s.workers) {
    out += fmt::format("  {:<24} {:>8} {:>6} {:>9} {:>11} {:>8} ago\n", w.host, w.pid, w.credit,
                       w.batches_in_flight, w.slices_done, seconds(w.silent_ms));
  }
  return out;
}

std::string status_json(const wire::Status& s, const std::string& endpoint) {
  std::string out = fmt::format(
      "{{\"endpoint\": {}, \"task\": {}, \"build\": {}, \"host\": {}, \"pid\": {}, "
      "\"uptime_ms\": {}, \"job\": ",
      json_string(endpoint), json_string(s.task), json_string(s.build), json_string(s.host), s.pid,
      s.uptime_ms);
  if (s.job) {
    const wire::JobStatus& j = *s.job;
    out += fmt::format(
        "{{\"seq\": {}, \"producer\": {}, \"source\": {}, \"slices_total\": {}, "
        "\"slices_done\": {}, \"reruns\": {}, \"elapsed_ms\": {}}}",
        j.seq, json_string(j.producer), json_string(j.source), j.slices_total, j.slices_done,
        j.reruns, j.elapsed_ms);
  } else {
    out += "null";
  }
  out += fmt::format(", \"workers_total\": {}, \"workers\": [", s.workers_total);
  for (std::size_t i = 0; i < s.workers.size(); ++i) {
    const wire::WorkerStatus& w = s.workers[i];
    out += fmt::format(
        "{}{{\"host\": {}, \"pid\": {}, \"credit\": {}, \"batches_in_flight\": {}, "
        "\"slices_done\": {}, \"silent_ms\": {}}}",
        i == 0 ? "" : ", ", json_string(w.host), w.pid, w.credit, w.batches_in_flight,
        w.slices_done, w.silent_ms);
  }
  return out + "]}\n";
}

int query_status(const StatusRequest& request) {
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  std::random_device random;
  std::string identity = fmt::format("status/{}/{}/{:08x}", host_name(), getpid(), random());
  if (const auto& keys = request.keys) {
    // With keys the producer reads a message only under a routing id that begins with the key.
    identity = keys->own.public_key + "/" + identity;
    socket.set(zmq::sockopt::curve_serverkey, keys->producer);
    socket.set(zmq::sockopt::curve_publickey, keys->own.public_key);
    socket.set(zmq::sockopt::curve_secretkey, keys->own.secret_key);
  }
  socket.set(zmq::sockopt::routing_id, identity);
  HandshakeWatch watch(context, socket);
  socket.connect(request.endpoint);
  // Queued until the connection is up; sent once.
  const std::string query = wire::encode(wire::StatusQuery{});
  (void)socket.send(zmq::buffer(query), zmq::send_flags::dontwait);

  const auto deadline = std::chrono::steady_clock::now() + request.timeout;
  std::string refusal;
  unsigned failures = 0;  // failed handshakes
  while (std::chrono::steady_clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                               {watch.socket().handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, std::max(left, std::chrono::milliseconds(1)));
    if (items[1].revents & ZMQ_POLLIN) {
      const auto [event, value] = watch.read();
      const bool mismatch = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                            value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
      if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        fmt::print(stderr,
                   "{}: error: the producer at {} refused this key: add its NAME.key file to the "
                   "folder the producer gives with --allow\n",
                   task_name(), request.endpoint);
        return kExitRefused;
      }
      // Without keys little but the mechanism can fail: a mismatch, or the same failure again.
      if (!request.keys && (mismatch || ++failures >= 3)) {
        fmt::print(stderr,
                   "{}: error: the producer at {} requires keys: give --secret-key and "
                   "--producer-key\n",
                   task_name(), request.endpoint);
        return kExitRefused;
      }
      refusal =
          mismatch ? "it does not use keys" : "its key is not the one given with --producer-key";
      continue;  // the real producer may come back to that address before the timeout
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(socket, std::back_inserter(frames))) continue;
    try {
      const wire::Message message = wire::decode(frames[0].to_string_view(), frames.size() - 1);
      if (const auto* status = std::get_if<wire::Status>(&message)) {
        wire::Status shown = *status;
        shown.task = printable(shown.task);
        shown.build = printable(shown.build);
        shown.host = printable(shown.host);
        if (shown.job) {
          shown.job->producer = printable(shown.job->producer);
          shown.job->source = printable(shown.job->source);
        }
        for (auto& w : shown.workers) w.host = printable(w.host);
        const std::string text = request.json ? status_json(shown, request.endpoint)
                                              : status_text(shown, request.endpoint);
        std::fwrite(text.data(), 1, text.size(), stdout);
        return 0;
      }
    } catch (const wire::ProtocolError&) {
      // Not an answer (a producer of another protocol version says so in a REFUSE we cannot
      // read either): keep waiting for one until the timeout.
    }
  }
  fmt::print(
      stderr, "{}: error: no answer from a producer at {} within {:.1f} s{}\n", task_name(),
      request.endpoint, static_cast<double>(request.timeout.count()) / 1000.0,
      refusal.empty()
          ? ": is one running there (a producer listens only while it runs its job)?"
          : fmt::format(": the peer there is not the producer this key expects ({})", refusal));
  return 1;
}

std::string pool_status_text(const wire::PoolStatus& s) {
  std::string out = fmt::format(
      "pool {} of {} (build {}) on {}, up {}: {} worker process(es) serving the "
      "producer at {}\n",
      s.pid, s.task, s.build, s.host, seconds(s.uptime_ms), s.workers_total, s.producer);
  if (!s.workers.empty()) {
    out +=
        fmt::format("  {:>4} {:>8} {:<10} {:<9} {:>8} {:>7} {:>6} {:>6}  {}\n", "slot", "pid",
                    "state", "producer", "restarts", "crashes", "job", "slice", "previous process");
  }
  for (const wire::PoolWorkerStatus& w : s.workers) {
    auto optional = [](const std::optional<std::uint64_t>& v) {
      return v ? fmt::format("{}", *v) : std::string("-");
    };
    out += fmt::format("  {:>4} {:>8} {:<10} {:<9} {:>8} {:>7} {:>6} {:>6}  {}\n", w.slot,
                       w.pid == 0 ? std::string("-") : fmt::format("{}", w.pid),
                       wire::to_string(w.state), w.connected ? "connected" : "waiting", w.restarts,
                       w.crashes, optional(w.job), optional(w.slice),
                       w.last_end.empty() ? "-" : w.last_end);
  }
  if (s.workers.size() < s.workers_total) {
    out += fmt::format("  ... and {} more\n", s.workers_total - s.workers.size());
  }
  return out;
}

std::string pool_status_json(const wire::PoolStatus& s) {
  std::string out = fmt::format(
      "{{\"pid\": {}, \"task\": {}, \"build\": {}, \"host\": {}, \"uptime_ms\": {}, "
      "\"producer\": {}, \"workers_total\": {}, \"workers\": [",
      s.pid, json_string(s.task), json_string(s.build), json_string(s.host), s.uptime_ms,
      json_string(s.producer), s.workers_total);
  auto optional = [](const std::optional<std::uint64_t>& v) {
    return v ? fmt::format("{}", *v) : std::string("null");
  };
  for (std::size_t i = 0; i < s.workers.size(); ++i) {
    const wire::PoolWorkerStatus& w = s.workers[i];
    out += fmt::format(
        "{}{{\"slot\": {}, \"pid\": {}, \"state\": \"{}\", \"connected\": {}, "
        "\"restarts\": {}, \"crashes\": {}, \"job\": {}, \"slice\": {}, \"previous_end\": {}}}",
        i == 0 ? "" : ", ", w.slot, w.pid == 0 ? std::string("null") : fmt::format("{}", w.pid),
        wire::to_string(w.state), w.connected, w.restarts, w.crashes, optional(w.job),
        optional(w.slice), w.last_end.empty() ? std::string("null") : json_string(w.last_end));
  }
  return out + "]}";
}

int query_pools(std::optional<pid_t> pid, bool json) {
  namespace fs = std::filesystem;
  constexpr std::chrono::milliseconds kTimeout{5000};
  fs::path dir;
  try {
    dir = pool_socket_dir(false);
  } catch (const Error& e) {
    if (!pid) {
      // No folder: no pool of this user ever ran here.
      std::error_code missing;
      if (!fs::exists(pool_socket_dir_path(), missing)) {
        fmt::print("{}", json ? "{\"pools\": []}\n" : "no worker pool of this user runs here\n");
        return 0;
      }
    }
    fmt::print(stderr, "{}: error: {}\n", task_name(), e.what());
    return 1;
  }
  auto shown = [&](wire::PoolStatus status) {
    status.task = printable(status.task);
    status.build = printable(status.build);
    status.host = printable(status.host);
    status.producer = printable(status.producer);
    for (auto& w : status.workers) w.last_end = printable(w.last_end);
    return status;
  };
  if (pid) {
    std::string why;
    const fs::path socket = pool_socket_path(dir, *pid);
    const auto status = ask_pool(socket, kTimeout, why);
    if (!status) {
      fmt::print(stderr, "{}: error: no answer from a pool {} at {}: {}\n", task_name(), *pid,
                 socket.string(),
                 fs::exists(socket) ? why : "no such socket (is it a pool of this user?)");
      return 1;
    }
    const std::string text =
        json ? pool_status_json(shown(*status)) + "\n" : pool_status_text(shown(*status));
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::vector<std::pair<long, fs::path>> sockets;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("pool-") || !name.ends_with(".sock")) continue;
    const std::string digits = name.substr(5, name.size() - 10);
    if (digits.empty() ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    sockets.emplace_back(std::stol(digits), entry.path());
  }
  std::sort(sockets.begin(), sockets.end());
  std::string out = json ? "{\"pools\": [" : "";
  std::size_t answered = 0;
  for (const auto& [number, socket] : sockets) {
    std::string why;
    const auto status = ask_pool(socket, kTimeout, why);
    if (!status) {
      fmt::print(stderr, "{}: pool {} does not answer at {}: {}\n", task_name(), number,
                 socket.string(), why);
      continue;
    }
    if (json) {
      out += (answered == 0 ? "" : ", ") + pool_status_json(shown(*status));
    } else {
      out += (answered == 0 ? "" : "\n") + pool_status_text(shown(*status));
    }
    ++answered;
  }
  if (json) {
    out += "]}\n";
  } else if (answered == 0) {
    out = "no worker pool of this user runs here\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace pymar::detail
