#include "producer/inbound.hpp"

#include <variant>

#include <fmt/format.h>

#include "common/printable.hpp"

namespace pymar::detail {

Inbound read_inbound(std::span<const std::string_view> frames) {
  Inbound in;
  if (frames.empty()) {
    in.problem = in.problem_kind = "no frames";
    return in;
  }
  in.identity = frames[0];
  if (frames.size() < 2) {
    in.problem = in.problem_kind = "no header frame";
    return in;
  }
  const std::span<const std::string_view> payload = frames.subspan(2);
  try {
    in.message = wire::decode(frames[1], payload.size());
    if (const auto* result = std::get_if<wire::Result>(&*in.message)) {
      in.values = wire::result_values(*result, payload);
    }
  } catch (const wire::ProtocolError& e) {
    in.message.reset();  // a RESULT whose values do not fit its frames decoded before the check
    in.problem = e.what();
    in.problem_kind = e.kind_name();
    in.foreign_version = e.foreign_version();
    return in;
  }
  if (!sent_by_workers(*in.message)) {
    in.problem =
        fmt::format("a {} message, which workers do not send", wire::type_name(*in.message));
    in.problem_kind = "a message workers do not send";
    in.message.reset();
    return in;
  }
  sanitize(*in.message);
  return in;
}

bool sent_by_workers(const wire::Message& message) {
  return std::holds_alternative<wire::Ready>(message) ||
         std::holds_alternative<wire::Result>(message) ||
         std::holds_alternative<wire::Heartbeat>(message) ||
         std::holds_alternative<wire::Bye>(message) ||
         std::holds_alternative<wire::Cancelled>(message) ||
         std::holds_alternative<wire::StatusQuery>(message);
}

void sanitize(wire::Message& message) {
  if (auto* ready = std::get_if<wire::Ready>(&message)) {
    ready->build = printable(ready->build);
    ready->task = printable(ready->task);
    ready->host = printable(ready->host);
  } else if (auto* result = std::get_if<wire::Result>(&message)) {
    for (wire::Outcome& o : result->outcomes) {
      if (o.ok) continue;
      o.error_type = printable(o.error_type);
      o.error_message = printable(o.error_message, wire::kMaxErrorMessageBytes);
    }
  } else if (auto* bye = std::get_if<wire::Bye>(&message)) {
    bye->reason = printable(bye->reason);
  }
}

}  // namespace pymar::detail
