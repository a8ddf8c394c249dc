#include "producer/key_gate.hpp"

#include <array>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "common/keys.hpp"
#include "common/printable.hpp"

namespace pymar::detail {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

// Requests answered per turn of the I/O loop, so that a burst of handshakes cannot starve it.
constexpr int kAnswerBurst = 64;

}  // namespace

KeyGate::KeyGate(zmq::context_t& context, std::set<std::string> allowed)
    : socket_(context, zmq::socket_type::rep), allowed_(std::move(allowed)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind(kZapEndpoint);
}

void KeyGate::answer() {
  std::vector<zmq::message_t> request;
  for (int i = 0; i < kAnswerBurst; ++i) {
    request.clear();
    if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) {
      return;
    }
    // RFC 27: version, request id, domain, address, routing id, mechanism, credentials...
    // The request comes from ZeroMQ itself, not from the peer; still, check its shape.
    std::string status = "500";
    std::string text = "malformed ZAP request";
    std::string user;
    if (request.size() >= 7 && request[0].to_string_view() == "1.0" &&
        request[5].to_string_view() == "CURVE" && request[6].size() == 32) {
      std::array<char, kZ85KeyChars + 1> key{};
      zmq_z85_encode(key.data(), request[6].data<std::uint8_t>(), 32);
      if (allowed_.contains(key.data())) {
        status = "200";
        text = "OK";
        user = key.data();
      } else {
        status = "400";
        text = "this worker's key is not among the producer's allowed keys";
        ++refused_;
        LogBudget& budget = refusal_logs_[key.data()];
        if (budget.spend()) {
          spdlog::warn(
              "refused a peer at {} whose public key {} is not allowed ({} time(s) so far): to "
              "let it in, add its NAME.key file to the folder given with --allow",
              printable(request[3].to_string_view()), key.data(), budget.count());
        }
      }
    }
    const auto more = zmq::send_flags::sndmore;
    socket_.send(zmq::str_buffer("1.0"), more);
    socket_.send(request.size() > 1 ? std::move(request[1]) : zmq::message_t(), more);
    socket_.send(zmq::buffer(status), more);
    socket_.send(zmq::buffer(text), more);
    socket_.send(zmq::buffer(user), more);
    socket_.send(zmq::message_t(), zmq::send_flags::none);
  }
}

}  // namespace pymar::detail
