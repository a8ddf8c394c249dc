// The wire: message types, their encoding, and the one place where bytes from a peer are decoded
// and checked. It knows nothing of who sends a message or why. See doc/protocol.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "pymar/detail/payload_kind.hpp"

namespace pymar::wire {

/// Job ids are unique across producer runs: a random session per producer process and a counter.
struct JobId {
  std::uint64_t session = 0;
  std::uint64_t seq = 0;
  bool operator==(const JobId&) const = default;
};

/// Why the process before this one in a pool slot ended, reported in the next READY so that the
/// producer re-queues at once and counts a crash against the slice that was running.
struct Predecessor {
  std::int64_t pid = 0;
  std::int32_t signal = 0;     ///< the signal that killed it, 0 if it exited
  std::int32_t exit_code = 0;  ///< its exit status, when it exited
  bool in_slice = false;       ///< whether it was computing a slice when it ended
  JobId job;                   ///< that slice's job
  std::uint64_t slice = 0;     ///< that slice's index
};

/// Worker -> producer: I can take work. Sent on connect and whenever asked (WHO).
struct Ready {
  std::string build;  ///< build fingerprint of the task binary
  std::string task;   ///< task binary name, for messages
  std::string host;
  std::int64_t pid = 0;
  std::uint32_t credit = 0;            ///< batches this worker accepts in flight
  std::vector<std::string> producers;  ///< names this worker serves
  std::vector<std::string> sources;
  std::optional<Predecessor> predecessor;
};

struct SliceRange {
  std::uint64_t index = 0;
  std::uint64_t offset = 0;
  std::uint64_t limit = 0;
};

/// Producer -> worker: compute these slices. Followed by one payload frame per slice when
/// `payload` is not none.
struct Assign {
  JobId job;
  std::uint64_t batch = 0;
  std::string producer;
  std::string source;
  std::string params;
  detail::PayloadKind payload = detail::PayloadKind::none;
  std::vector<SliceRange> slices;
};

struct Outcome {
  std::uint64_t slice = 0;
  bool ok = false;
  std::uint64_t compute_ns = 0;   ///< time spent in the kernel
  std::uint64_t value_bytes = 0;  ///< when ok: the size of its encoded partial value
  std::string error_type;         ///< when !ok: demangled exception type
  std::string error_message;      ///< when !ok: what()
};

/// Worker -> producer: the outcomes of one batch, in its order. Followed by the encoded partial
/// values of the outcomes that are ok, in the same order, laid end to end in as few frames as
/// kMaxValueBytes allows (none across two frames): a frame per value would cost each a trip
/// through both ZeroMQ queues, which for cheap slices is most of what a slice costs.
struct Result {
  JobId job;
  std::uint64_t batch = 0;
  std::vector<Outcome> outcomes;
};

/// Both ways, while there is nothing else to say. The producer sends its session id.
struct Heartbeat {
  std::uint64_t session = 0;
};

/// Worker -> producer: I am going away; re-queue my slices now.
struct Bye {
  std::string reason;
};

/// Producer -> worker: drop what you hold of this job.
struct Cancel {
  JobId job;
};

/// Worker -> producer: I have read your CANCEL. A producer about to end waits a moment for these:
/// a worker's connection can drop a message it has not yet read when the producer closes it.
struct Cancelled {
  JobId job;
};

/// Producer -> worker: you cannot serve me (another build, another protocol version).
struct Refuse {
  std::string reason;
};

/// Producer -> worker: I do not know you; send READY.
struct Who {};

/// Anyone -> producer: what are you doing? Answered with STATUS; with keys, only from an allowed
/// key, like any message.
struct StatusQuery {};

/// One worker as the producer sees it, in a STATUS.
struct WorkerStatus {
  std::string host;
  std::int64_t pid = 0;
  std::uint32_t credit = 0;
  std::uint64_t batches_in_flight = 0;
  std::uint64_t slices_done = 0;  ///< partial values it delivered that counted, over all jobs
  std::uint64_t silent_ms = 0;    ///< since the producer last heard from it
};

/// The job a producer is running, in a STATUS.
struct JobStatus {
  std::uint64_t seq = 0;
  std::string producer;
  std::string source;
  std::uint64_t slices_total = 0;
  std::uint64_t slices_done = 0;
  std::uint64_t reruns = 0;
  std::uint64_t elapsed_ms = 0;
};

/// Producer -> asker: who is connected, what runs and how far it is.
struct Status {
  std::string task;
  std::string build;
  std::string host;
  std::int64_t pid = 0;
  std::uint64_t uptime_ms = 0;
  std::optional<JobStatus> job;
  std::uint64_t workers_total = 0;    ///< may exceed workers.size(): the list is capped
  std::vector<WorkerStatus> workers;  ///< at most kMaxStatusWorkers
};

/// One worker process of a pool, as its supervisor sees it, in a POOL STATUS.
struct PoolWorkerStatus {
  enum class State : std::uint8_t { idle = 0, computing = 1, restarting = 2 };
  std::uint32_t slot = 0;
  std::int64_t pid = 0;  ///< 0 while the slot waits to restart
  State state = State::idle;
  bool connected = false;      ///< a producer answered it on its current link
  std::uint64_t restarts = 0;  ///< processes started in this slot after the first
  std::uint64_t crashes = 0;   ///< of the processes that ended, those killed or failing
  /// While computing: the job (its number in the producer's run) and the slice.
  std::optional<std::uint64_t> job;
  std::optional<std::uint64_t> slice;
  std::string last_end;  ///< how the previous process in the slot ended ("" for none)
};

/// Pool supervisor -> asker on the pool's local socket: its worker processes.
struct PoolStatus {
  std::string task;
  std::string build;
  std::string host;
  std::int64_t pid = 0;
  std::uint64_t uptime_ms = 0;
  std::string producer;                   ///< the endpoint its workers serve
  std::uint64_t workers_total = 0;        ///< may exceed workers.size(): the list is capped
  std::vector<PoolWorkerStatus> workers;  ///< at most kMaxStatusWorkers
};

const char* to_string(PoolWorkerStatus::State state);

using Message = std::variant<Ready, Assign, Result, Heartbeat, Bye, Cancel, Refuse, Who,
                             StatusQuery, Status, Cancelled, PoolStatus>;

/// A message that could not be decoded, and which kind of problem it had (for logs that report
/// each kind without letting a flood of one kind through).
class ProtocolError : public std::runtime_error {
 public:
  enum class Kind {
    oversized,        ///< over a size limit
    not_a_message,    ///< not msgpack, or not a header
    foreign_version,  ///< another protocol version; see foreign_version()
    wrong_shape,      ///< valid msgpack, but fields of the wrong type, number or value
    wrong_frames,     ///< payload frames other than the header announces
  };

  ProtocolError(const std::string& what, Kind kind, std::optional<std::uint64_t> version = {})
      : std::runtime_error(what), kind_(kind), version_(version) {}
  Kind kind() const noexcept { return kind_; }
  const char* kind_name() const noexcept;
  std::optional<std::uint64_t> foreign_version() const noexcept { return version_; }

 private:
  Kind kind_;
  std::optional<std::uint64_t> version_;
};

/// Bounds on what a peer may send.
inline constexpr std::size_t kMaxHeaderBytes = 1 << 20;
inline constexpr std::size_t kMaxSlicesPerBatch = 1 << 14;
inline constexpr std::size_t kMaxNames = 4096;
inline constexpr std::size_t kMaxTextBytes = 64 << 10;
inline constexpr std::size_t kMaxErrorMessageBytes = 4 << 10;  // longer messages are cut on send
/// A partial value (one RESULT frame) larger than this cuts the worker off at the producer: the
/// worker reports it as an error instead of sending it.
inline constexpr std::size_t kMaxValueBytes = std::size_t{256} << 20;
/// A slice's payload larger than this is refused by the producer, which fails the job with a
/// clear error (a worker would drop the connection).
inline constexpr std::size_t kMaxPayloadBytes = std::size_t{1} << 32;
/// Workers listed in a STATUS (the rest are counted), and the longest host name shown for each:
/// a STATUS stays well under kMaxHeaderBytes.
inline constexpr std::size_t kMaxStatusWorkers = 1024;
inline constexpr std::size_t kMaxStatusHostBytes = 255;
/// The longest "how the previous process ended" in a POOL STATUS: a POOL STATUS of
/// kMaxStatusWorkers fits one datagram of the pool's local socket.
inline constexpr std::size_t kMaxPoolEndBytes = 64;
/// Encoded source parameters larger than this do not fit a header.
inline constexpr std::size_t kMaxParamsBytes = kMaxHeaderBytes / 2;

/// The header frame of `message`, encoded.
std::string encode(const Message& message);
void encode(const Message& message, std::string& out);

/// Decodes a header frame followed by `payload_frames` more frames, checking that their number is
/// what the header announces. Throws ProtocolError on anything malformed.
Message decode(std::string_view header, std::size_t payload_frames);

/// The partial values of `result`'s successful outcomes, in order, cut from the frames that
/// followed its header. Throws ProtocolError (wrong_frames) unless the frames hold exactly those
/// values, end to end, with none across two frames.
std::vector<std::string_view> result_values(const Result& result,
                                            std::span<const std::string_view> frames);

/// The name of a message type, for logs.
const char* type_name(const Message& message);

}  // namespace pymar::wire
