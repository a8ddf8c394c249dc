// What the producer makes of one multipart message from its ROUTER socket, without sockets: who
// sent it, and either the message, checked, or why it is dropped. The dispatcher acts on the
// result; the fuzz target (test/fuzz) drives it with any frames at all.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wire/protocol.hpp"

namespace pymar::detail {

struct Inbound {
  std::string_view identity;             ///< the sender's routing id (the first frame)
  std::optional<wire::Message> message;  ///< decoded, its texts printable; empty when dropped
  /// A RESULT's partial values, one per successful outcome, cut from the frames after the header.
  std::vector<std::string_view> values;
  std::string problem;            ///< when dropped: why
  std::string_view problem_kind;  ///< when dropped: the kind of problem, for rate-limited logs
  std::optional<std::uint64_t> foreign_version;  ///< the sender speaks this other version
};

/// Reads `frames`, [identity, header, payload...] as a ROUTER receives them. Never throws for
/// anything a peer sends: a message that does not decode, or of a type workers never send
/// (ASSIGN, CANCEL...), comes back without `message`, with the reason.
Inbound read_inbound(std::span<const std::string_view> frames);

/// Whether workers (or status askers) send messages of this type: READY, RESULT, HEARTBEAT,
/// BYE, STATUS?.
bool sent_by_workers(const wire::Message& message);

/// Makes the texts a peer controls printable and bounded (see printable()): they reach our logs
/// and the exceptions `map` throws.
void sanitize(wire::Message& message);

}  // namespace pymar::detail
