// Attacks on a producer, as a peer on the network would make them, so that tests (and anyone
// trying them by hand) run the same attack against a real producer process:
//
//   hostile_peer endless HOST PORT MIB
//       Speaks ZMTP 3.0 with the NULL mechanism, then sends frames flagged "more" and never ends
//       the message: a producer without keys keeps such a message whole in memory. Sends at most
//       MIB MiB, prints "sent N bytes; the producer hung up" or "...; the producer took it all"
//       and, in the second case, holds the connection open until SIGTERM or SIGINT.
//
//   hostile_peer forge HOST:PORT BUILD PRODUCER SOURCE VALUE [SECRET_KEY_FILE PRODUCER_KEY_FILE]
//       Registers as a worker of build BUILD (a refusal message names it) serving PRODUCER over
//       SOURCE, and answers every slice it is given at once with the well-typed partial value
//       VALUE (an integer), computing nothing. With key
//       files it uses CurveZMQ. Prints one line per batch it is given and runs until SIGTERM or
//       SIGINT, then prints "forged N slices".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <pymar/codec.hpp>

#include "wire/protocol.hpp"

namespace {

namespace wire = pymar::wire;

int usage() {
  std::fprintf(stderr,
               "usage: hostile_peer endless HOST PORT MIB\n"
               "       hostile_peer forge HOST:PORT BUILD PRODUCER SOURCE VALUE "
               "[SECRET_KEY_FILE PRODUCER_KEY_FILE]\n");
  return 2;
}

/// Blocks SIGTERM and SIGINT so that the peer can wait for them or poll for them. Their default
/// action is restored first: a signal ignored by inheritance would be discarded, not kept pending.
sigset_t block_stop_signals() {
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

bool stop_requested(const sigset_t& stop) {
  const timespec now{0, 0};
  return sigtimedwait(&stop, nullptr, &now) > 0;
}

int endless(const char* host, int port, long mib) {
  const sigset_t stop = block_stop_signals();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  if (fd < 0 || inet_pton(AF_INET, host, &address.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    std::perror("hostile_peer: connect");
    return 2;
  }
  // The ZMTP 3.0 greeting with the NULL mechanism, then a READY command naming a DEALER.
  std::array<char, 64> greeting{};
  greeting[0] = '\xff';
  greeting[9] = '\x7f';
  greeting[10] = 3;
  std::memcpy(&greeting[12], "NULL", 4);
  const std::string ready_body(
      "\x05READY\x0bSocket-Type\x00\x00\x00\x06"
      "DEALER",
      28);
  std::string handshake(greeting.begin(), greeting.end());
  handshake += '\x04';  // a short command
  handshake += static_cast<char>(ready_body.size());
  handshake += ready_body;
  // Data frames are taken only once the producer has said READY too: wait for its greeting and
  // its READY (a producer with keys hangs up here instead).
  const timeval ten_seconds{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &ten_seconds, sizeof ten_seconds);
  auto read_exactly = [fd](std::size_t size) {
    std::string bytes(size, '\0');
    for (std::size_t got = 0; got < size;) {
      const ssize_t n = recv(fd, bytes.data() + got, size - got, 0);
      if (n <= 0) return false;
      got += static_cast<std::size_t>(n);
    }
    return true;
  };
  std::string command_head(2, '\0');
  bool hung_up = send(fd, handshake.data(), handshake.size(), MSG_NOSIGNAL) !=
                     static_cast<ssize_t>(handshake.size()) ||
                 !read_exactly(64) || recv(fd, command_head.data(), 2, MSG_WAITALL) != 2 ||
                 command_head[0] != '\x04' ||
                 !read_exactly(static_cast<unsigned char>(command_head[1]));
  std::string frame(2 + 255, 'x');
  frame[0] = '\x01';  // a short frame flagged "more"
  frame[1] = '\xff';

  const std::size_t limit = static_cast<std::size_t>(mib) << 20;
  std::size_t sent = 0;
  while (!hung_up && sent < limit) {
    const ssize_t n = send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      hung_up = true;
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  std::printf("sent %zu bytes; the producer %s\n", sent, hung_up ? "hung up" : "took it all");
  std::fflush(stdout);
  if (!hung_up) {
    int signal = 0;
    sigwait(&stop, &signal);  // the message stays unfinished until the connection closes
  }
  close(fd);
  return 0;
}

/// The Z85 value of `field` ("public-key", "secret-key") in a certificate file, or "".
std::string key_in(const std::string& path, const std::string& field) {
  std::ifstream in(path);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  const auto at = text.find(field + " = \"");
  return at == std::string::npos ? "" : text.substr(at + field.size() + 4, 40);
}

int forge(const std::string& address, const std::string& build, const std::string& producer,
          const std::string& source, std::int64_t value, const std::string& secret_key_file,
          const std::string& producer_key_file) {
  const sigset_t stop = block_stop_signals();
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  if (!secret_key_file.empty()) {
    const std::string server = key_in(producer_key_file, "public-key");
    const std::string own_public = key_in(secret_key_file, "public-key");
    const std::string own_secret = key_in(secret_key_file, "secret-key");
    if (server.size() != 40 || own_public.size() != 40 || own_secret.size() != 40) {
      std::fprintf(stderr, "hostile_peer: cannot read the key files\n");
      return 2;
    }
    socket.set(zmq::sockopt::curve_serverkey, server);
    socket.set(zmq::sockopt::curve_publickey, own_public);
    socket.set(zmq::sockopt::curve_secretkey, own_secret);
  }
  socket.connect("tcp://" + address);

  wire::Ready ready;
  ready.build = build;
  ready.task = "hostile_peer";
  ready.host = "forger";
  ready.pid = getpid();
  ready.credit = 4;
  ready.producers = {producer};
  ready.sources = {source};
  // Never blocks: with no producer to talk to, a message is dropped rather than queued.
  auto send = [&](const wire::Message& message, const std::vector<std::string>& payloads = {}) {
    const std::string header = wire::encode(message);
    std::vector<zmq::const_buffer> frames{zmq::buffer(header)};
    for (const std::string& payload : payloads) frames.push_back(zmq::buffer(payload));
    (void)zmq::send_multipart(socket, frames, zmq::send_flags::dontwait);
  };
  send(ready);

  const std::string partial = pymar::encode(value);
  std::uint64_t forged = 0;
  auto last_heartbeat = std::chrono::steady_clock::now();
  while (!stop_requested(stop)) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    if (std::chrono::steady_clock::now() - last_heartbeat > std::chrono::milliseconds(300)) {
      send(wire::Heartbeat{0});
      last_heartbeat = std::chrono::steady_clock::now();
    }
    if (!(item.revents & ZMQ_POLLIN)) continue;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(socket, std::back_inserter(frames))) continue;
    wire::Message message;
    try {
      message = wire::decode(frames[0].to_string_view(), frames.size() - 1);
    } catch (const wire::ProtocolError&) {
      continue;
    }
    if (std::holds_alternative<wire::Who>(message)) {
      send(ready);
    } else if (const auto* assign = std::get_if<wire::Assign>(&message)) {
      wire::Result result{assign->job, assign->batch, {}};
      std::vector<std::string> payloads;
      for (const wire::SliceRange& slice : assign->slices) {
        result.outcomes.push_back({slice.index, true, 1000, partial.size(), "", ""});
        payloads.push_back(partial);
      }
      forged += assign->slices.size();
      std::printf("given %zu slice(s) of %s from %s; answered %lld each\n", assign->slices.size(),
                  assign->producer.c_str(), assign->source.c_str(), static_cast<long long>(value));
      std::fflush(stdout);
      send(result, payloads);
    }
  }
  std::printf("forged %llu slices\n", static_cast<unsigned long long>(forged));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 4 && args[0] == "endless") {
    return endless(args[1].c_str(), std::stoi(args[2]), std::stol(args[3]));
  }
  if ((args.size() == 6 || args.size() == 8) && args[0] == "forge") {
    return forge(args[1], args[2], args[3], args[4], std::stoll(args[5]),
                 args.size() == 8 ? args[6] : "", args.size() == 8 ? args[7] : "");
  }
  return usage();
}
