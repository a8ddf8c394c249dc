#include "wire/protocol.hpp"

#include <algorithm>
#include <array>
#include <iterator>

#include <fmt/format.h>

#include "pymar/codec.hpp"
#include "pymar/version.hpp"

namespace pymar::wire {
namespace {

enum class Type : std::uint8_t {
  ready = 1,
  assign = 2,
  result = 3,
  heartbeat = 4,
  bye = 5,
  cancel = 6,
  refuse = 7,
  who = 8,
  status_query = 9,
  status = 10,
  cancelled = 11,
  pool_status = 12,
};

// Message layouts, declared once: the encoder writes and the decoder expects exactly these field
// counts (after the version and the type), so that the two cannot drift apart.
struct Layout {
  Type type;
  const char* name;      // for errors and logs
  std::uint32_t fields;  // after the version and the type
};
constexpr Layout kReady{Type::ready, "READY", 8};
constexpr Layout kAssign{Type::assign, "ASSIGN", 8};
constexpr Layout kResult{Type::result, "RESULT", 5};
constexpr Layout kHeartbeat{Type::heartbeat, "HEARTBEAT", 1};
constexpr Layout kBye{Type::bye, "BYE", 1};
constexpr Layout kCancel{Type::cancel, "CANCEL", 2};
constexpr Layout kRefuse{Type::refuse, "REFUSE", 1};
constexpr Layout kWho{Type::who, "WHO", 0};
constexpr Layout kStatusQuery{Type::status_query, "STATUS?", 0};
constexpr Layout kStatus{Type::status, "STATUS", 8};
constexpr Layout kCancelled{Type::cancelled, "CANCELLED", 2};
constexpr Layout kPoolStatus{Type::pool_status, "POOL STATUS", 8};

// The arrays nested in messages.
constexpr std::uint32_t kPredecessorFields = 7;   // READY's predecessor
constexpr std::uint32_t kErrorFields = 2;         // one of RESULT's errors
constexpr std::uint32_t kJobStatusFields = 7;     // STATUS's job
constexpr std::uint32_t kWorkerStatusFields = 6;  // one of STATUS's workers
constexpr std::uint32_t kPoolWorkerFields = 9;    // one of POOL STATUS's workers

using Packer = msgpack::packer<detail::StringSink>;

// A batch's slices (ASSIGN) and outcomes (RESULT) travel as tables: rows of unsigned 64-bit
// numbers, little-endian, end to end in one msgpack bin. As arrays of small arrays they cost a
// decoded object per number, which for cheap slices was most of what a slice cost on the wire.
constexpr std::size_t kSliceColumns = 3;    // ASSIGN: slice, offset, limit
constexpr std::size_t kOutcomeColumns = 3;  // RESULT: slice, compute_ns, value_bytes (0: failed)
constexpr std::size_t kCellBytes = 8;
static_assert(kMaxSlicesPerBatch * kSliceColumns * kCellBytes <= kMaxHeaderBytes / 2,
              "a full batch's table leaves half a header for the rest");

void put_cell(char* out, std::uint64_t value) {
  for (std::size_t i = 0; i < kCellBytes; ++i) out[i] = static_cast<char>(value >> (8 * i));
}

std::uint64_t get_cell(const char* in) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < kCellBytes; ++i) {
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return value;
}

/// A table's rows as received, each read as its cells (see pack_table).
template <std::size_t Columns>
struct TableRows {
  std::string_view bytes;

  std::size_t size() const { return bytes.size() / (Columns * kCellBytes); }

  std::array<std::uint64_t, Columns> operator[](std::size_t i) const {
    std::array<std::uint64_t, Columns> cells{};
    for (std::size_t c = 0; c < Columns; ++c) {
      cells[c] = get_cell(bytes.data() + (i * Columns + c) * kCellBytes);
    }
    return cells;
  }
};

/// Appends a table of `rows` rows to `out` (the packer's string) as one bin; `row(i, cells)`
/// writes row i's cells.
template <std::size_t Columns, class WriteRow>
void pack_table(Packer& p, std::string& out, std::size_t rows, WriteRow&& row) {
  const std::size_t bytes = rows * Columns * kCellBytes;
  p.pack_bin(static_cast<std::uint32_t>(bytes));
  const std::size_t at = out.size();
  out.resize(at + bytes);
  for (std::size_t i = 0; i < rows; ++i) {
    std::array<std::uint64_t, Columns> cells{};
    row(i, cells);
    for (std::size_t c = 0; c < Columns; ++c) {
      put_cell(out.data() + at + (i * Columns + c) * kCellBytes, cells[c]);
    }
  }
}

void pack_text(Packer& p, std::string_view text, std::size_t max = kMaxTextBytes) {
  p.pack(text.substr(0, max));
}

void pack_names(Packer& p, const std::vector<std::string>& names) {
  const std::size_t count = std::min(names.size(), kMaxNames);
  p.pack_array(static_cast<std::uint32_t>(count));
  for (std::size_t i = 0; i < count; ++i) pack_text(p, names[i]);
}

struct Encoder {
  Packer& p;
  std::string& out;  // what p writes to

  void header(const Layout& layout) {
    p.pack_array(2 + layout.fields);
    p.pack(protocol_version());
    p.pack(static_cast<std::uint8_t>(layout.type));
  }

  void operator()(const Ready& m) {
    header(kReady);
    pack_text(p, m.build);
    pack_text(p, m.task);
    pack_text(p, m.host);
    p.pack(m.pid);
    p.pack(m.credit);
    pack_names(p, m.producers);
    pack_names(p, m.sources);
    if (!m.predecessor) {
      p.pack_nil();
    } else {
      const Predecessor& d = *m.predecessor;
      p.pack_array(kPredecessorFields);
      p.pack(d.pid);
      p.pack(d.signal);
      p.pack(d.exit_code);
      p.pack(d.in_slice);
      p.pack(d.job.session);
      p.pack(d.job.seq);
      p.pack(d.slice);
    }
  }

  void operator()(const Assign& m) {
    header(kAssign);
    p.pack(m.job.session);
    p.pack(m.job.seq);
    p.pack(m.batch);
    pack_text(p, m.producer);
    pack_text(p, m.source);
    p.pack_bin(static_cast<std::uint32_t>(m.params.size()));
    p.pack_bin_body(m.params.data(), static_cast<std::uint32_t>(m.params.size()));
    p.pack(static_cast<std::uint8_t>(m.payload));
    pack_table<kSliceColumns>(p, out, m.slices.size(), [&](std::size_t i, auto& cells) {
      cells = {m.slices[i].index, m.slices[i].offset, m.slices[i].limit};
    });
  }

  void operator()(const Result& m) {
    // Error texts share what a header may hold, so that a batch of many failed slices with long
    // messages still fits and reaches the producer.
    std::size_t failed = 0;
    for (const Outcome& o : m.outcomes) failed += o.ok ? 0 : 1;
    const std::size_t text_cap = std::min(
        kMaxErrorMessageBytes, kMaxHeaderBytes / 2 / (2 * std::max<std::size_t>(failed, 1)));
    header(kResult);
    p.pack(m.job.session);
    p.pack(m.job.seq);
    p.pack(m.batch);
    pack_table<kOutcomeColumns>(p, out, m.outcomes.size(), [&](std::size_t i, auto& cells) {
      const Outcome& o = m.outcomes[i];
      cells = {o.slice, o.compute_ns, o.ok ? o.value_bytes : 0};
    });
    p.pack_array(static_cast<std::uint32_t>(failed));
    for (const Outcome& o : m.outcomes) {
      if (o.ok) continue;
      p.pack_array(kErrorFields);
      pack_text(p, o.error_type, text_cap);
      pack_text(p, o.error_message, text_cap);
    }
  }

  void operator()(const Heartbeat& m) {
    header(kHeartbeat);
    p.pack(m.session);
  }

  void operator()(const Bye& m) {
    header(kBye);
    pack_text(p, m.reason);
  }

  void operator()(const Cancel& m) {
    header(kCancel);
    p.pack(m.job.session);
    p.pack(m.job.seq);
  }

  void operator()(const Cancelled& m) {
    header(kCancelled);
    p.pack(m.job.session);
    p.pack(m.job.seq);
  }

  void operator()(const Refuse& m) {
    header(kRefuse);
    pack_text(p, m.reason);
  }

  void operator()(const Who&) { header(kWho); }

  void operator()(const StatusQuery&) { header(kStatusQuery); }

  void operator()(const Status& m) {
    header(kStatus);
    pack_text(p, m.task);
    pack_text(p, m.build);
    pack_text(p, m.host);
    p.pack(m.pid);
    p.pack(m.uptime_ms);
    if (!m.job) {
      p.pack_nil();
    } else {
      const JobStatus& j = *m.job;
      p.pack_array(kJobStatusFields);
      p.pack(j.seq);
      pack_text(p, j.producer);
      pack_text(p, j.source);
      p.pack(j.slices_total);
      p.pack(j.slices_done);
      p.pack(j.reruns);
      p.pack(j.elapsed_ms);
    }
    p.pack(m.workers_total);
    const std::size_t count = std::min(m.workers.size(), kMaxStatusWorkers);
    p.pack_array(static_cast<std::uint32_t>(count));
    for (std::size_t i = 0; i < count; ++i) {
      const WorkerStatus& w = m.workers[i];
      p.pack_array(kWorkerStatusFields);
      pack_text(p, w.host, kMaxStatusHostBytes);
      p.pack(w.pid);
      p.pack(w.credit);
      p.pack(w.batches_in_flight);
      p.pack(w.slices_done);
      p.pack(w.silent_ms);
    }
  }

  void operator()(const PoolStatus& m) {
    header(kPoolStatus);
    pack_text(p, m.task);
    pack_text(p, m.build);
    pack_text(p, m.host);
    p.pack(m.pid);
    p.pack(m.uptime_ms);
    pack_text(p, m.producer);
    p.pack(m.workers_total);
    const std::size_t count = std::min(m.workers.size(), kMaxStatusWorkers);
    p.pack_array(static_cast<std::uint32_t>(count));
    for (std::size_t i = 0; i < count; ++i) {
      const PoolWorkerStatus& w = m.workers[i];
      p.pack_array(kPoolWorkerFields);
      p.pack(w.slot);
      p.pack(w.pid);
      p.pack(static_cast<std::uint32_t>(w.state));
      p.pack(w.connected);
      p.pack(w.restarts);
      p.pack(w.crashes);
      if (w.job) {
        p.pack(*w.job);
      } else {
        p.pack_nil();
      }
      if (w.slice) {
        p.pack(*w.slice);
      } else {
        p.pack_nil();
      }
      pack_text(p, w.last_end, kMaxPoolEndBytes);
    }
  }
};

// Reads the fields of one msgpack array in order, checking each one's type.
class Fields {
 public:
  Fields(const msgpack::object& array, const char* what, std::size_t min_size, std::size_t max_size)
      : what_(what) {
    if (array.type != msgpack::type::ARRAY) fail("expected an array");
    items_ = array.via.array.ptr;
    size_ = array.via.array.size;
    if (size_ < min_size || size_ > max_size) {
      fail(fmt::format("expected {} to {} fields, got {}", min_size, max_size, size_));
    }
  }

  std::size_t size() const { return size_; }
  bool done() const { return next_ == size_; }

  const msgpack::object& next() {
    if (next_ >= size_) fail("missing field");
    return items_[next_++];
  }

  std::uint64_t u64() {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::POSITIVE_INTEGER) fail("expected an unsigned integer");
    return o.via.u64;
  }

  std::int64_t i64() {
    const msgpack::object& o = next();
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<std::uint64_t>(INT64_MAX)) fail("integer out of range");
      return static_cast<std::int64_t>(o.via.u64);
    }
    if (o.type != msgpack::type::NEGATIVE_INTEGER) fail("expected an integer");
    return o.via.i64;
  }

  std::uint32_t u32() {
    const std::uint64_t v = u64();
    if (v > UINT32_MAX) fail("integer out of range");
    return static_cast<std::uint32_t>(v);
  }

  std::int32_t i32() {
    const std::int64_t v = i64();
    if (v < INT32_MIN || v > INT32_MAX) fail("integer out of range");
    return static_cast<std::int32_t>(v);
  }

  bool boolean() {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::BOOLEAN) fail("expected a boolean");
    return o.via.boolean;
  }

  std::string text() {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::STR) fail("expected a string");
    return std::string(o.via.str.ptr, o.via.str.size);
  }

  std::string binary() {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::BIN) fail("expected binary data");
    return std::string(o.via.bin.ptr, o.via.bin.size);
  }

  /// The next field as a table of `Columns` cells a row, with `min_rows` to `max_rows` rows. Its
  /// bytes stay in the header (see pack_table).
  template <std::size_t Columns>
  TableRows<Columns> table(std::size_t min_rows, std::size_t max_rows) {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::BIN) fail("expected a table (binary data)");
    const std::size_t row_bytes = Columns * kCellBytes;
    if (o.via.bin.size % row_bytes != 0) fail("a table with a partial row");
    const std::size_t rows = o.via.bin.size / row_bytes;
    if (rows < min_rows || rows > max_rows) {
      fail(fmt::format("expected {} to {} rows, got {}", min_rows, max_rows, rows));
    }
    return {std::string_view(o.via.bin.ptr, o.via.bin.size)};
  }

  std::vector<std::string> names() {
    Fields list(next(), what_, 0, kMaxNames);
    std::vector<std::string> out;
    out.reserve(list.size());
    while (!list.done()) out.push_back(list.text());
    return out;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw ProtocolError(fmt::format("{}: field {}: {}", what_, next_, why),
                        ProtocolError::Kind::wrong_shape);
  }

 private:
  const char* what_;
  const msgpack::object* items_ = nullptr;
  std::size_t size_ = 0;
  std::size_t next_ = 0;
};

JobId job_id(Fields& f) {
  JobId id;
  id.session = f.u64();
  id.seq = f.u64();
  return id;
}

Ready decode_ready(Fields& f) {
  Ready m;
  m.build = f.text();
  m.task = f.text();
  m.host = f.text();
  m.pid = f.i64();
  m.credit = f.u32();
  m.producers = f.names();
  m.sources = f.names();
  const msgpack::object& pred = f.next();
  if (pred.type != msgpack::type::NIL) {
    Fields d(pred, "READY predecessor", kPredecessorFields, kPredecessorFields);
    Predecessor p;
    p.pid = d.i64();
    p.signal = d.i32();
    p.exit_code = d.i32();
    p.in_slice = d.boolean();
    p.job = job_id(d);
    p.slice = d.u64();
    m.predecessor = p;
  }
  if (m.credit == 0) f.fail("credit must be at least 1");
  return m;
}

Assign decode_assign(Fields& f, std::size_t payload_frames) {
  Assign m;
  m.job = job_id(f);
  m.batch = f.u64();
  m.producer = f.text();
  m.source = f.text();
  m.params = f.binary();
  const std::uint64_t kind = f.u64();
  if (kind > static_cast<std::uint64_t>(detail::PayloadKind::msgpack))
    f.fail("unknown payload kind");
  m.payload = static_cast<detail::PayloadKind>(kind);
  const auto slices = f.table<kSliceColumns>(1, kMaxSlicesPerBatch);
  m.slices.resize(slices.size());
  for (std::size_t i = 0; i < slices.size(); ++i) {
    const auto [index, offset, limit] = slices[i];
    m.slices[i] = {index, offset, limit};
    if (offset + limit < offset) {
      throw ProtocolError(fmt::format("ASSIGN: slice {}: offset + limit overflows", i),
                          ProtocolError::Kind::wrong_shape);
    }
  }
  const std::size_t expected = m.payload == detail::PayloadKind::none ? 0 : m.slices.size();
  if (payload_frames != expected) {
    throw ProtocolError(
        fmt::format("ASSIGN: expected {} payload frames, got {}", expected, payload_frames),
        ProtocolError::Kind::wrong_frames);
  }
  return m;
}

Result decode_result(Fields& f, std::size_t payload_frames) {
  Result m;
  m.job = job_id(f);
  m.batch = f.u64();
  const auto outcomes = f.table<kOutcomeColumns>(1, kMaxSlicesPerBatch);
  Fields errors(f.next(), "RESULT errors", 0, kMaxSlicesPerBatch);
  m.outcomes.resize(outcomes.size());
  std::size_t ok_count = 0;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    Outcome& out = m.outcomes[i];
    const auto [slice, compute_ns, value_bytes] = outcomes[i];
    out.slice = slice;
    out.compute_ns = compute_ns;
    out.value_bytes = value_bytes;
    // msgpack encodes any value in one byte at least: a size of 0 says the slice failed.
    out.ok = out.value_bytes != 0;
    if (out.ok) {
      if (out.value_bytes > kMaxValueBytes) {
        throw ProtocolError(fmt::format("RESULT: a value of {} bytes", out.value_bytes),
                            ProtocolError::Kind::wrong_shape);
      }
      ++ok_count;
    } else {
      if (errors.done()) errors.fail("fewer errors than failed outcomes");
      Fields error(errors.next(), "RESULT error", kErrorFields, kErrorFields);
      out.error_type = error.text();
      out.error_message = error.text();
    }
  }
  if (!errors.done()) errors.fail("more errors than failed outcomes");
  // Values share frames: at least one frame when there are values, and none empty.
  if ((ok_count == 0) != (payload_frames == 0) || payload_frames > ok_count) {
    throw ProtocolError(fmt::format("RESULT: {} value(s) in {} frame(s)", ok_count, payload_frames),
                        ProtocolError::Kind::wrong_frames);
  }
  return m;
}

Status decode_status(Fields& f) {
  Status m;
  m.task = f.text();
  m.build = f.text();
  m.host = f.text();
  m.pid = f.i64();
  m.uptime_ms = f.u64();
  const msgpack::object& job = f.next();
  if (job.type != msgpack::type::NIL) {
    Fields j(job, "STATUS job", kJobStatusFields, kJobStatusFields);
    JobStatus s;
    s.seq = j.u64();
    s.producer = j.text();
    s.source = j.text();
    s.slices_total = j.u64();
    s.slices_done = j.u64();
    s.reruns = j.u64();
    s.elapsed_ms = j.u64();
    m.job = std::move(s);
  }
  m.workers_total = f.u64();
  Fields workers(f.next(), "STATUS workers", 0, kMaxStatusWorkers);
  m.workers.reserve(workers.size());
  while (!workers.done()) {
    Fields w(workers.next(), "STATUS worker", kWorkerStatusFields, kWorkerStatusFields);
    WorkerStatus s;
    s.host = w.text();
    s.pid = w.i64();
    s.credit = w.u32();
    s.batches_in_flight = w.u64();
    s.slices_done = w.u64();
    s.silent_ms = w.u64();
    m.workers.push_back(std::move(s));
  }
  if (m.workers_total < m.workers.size()) f.fail("fewer workers in all than listed");
  return m;
}

std::optional<std::uint64_t> optional_u64(Fields& f) {
  const msgpack::object& o = f.next();
  if (o.type == msgpack::type::NIL) return std::nullopt;
  if (o.type != msgpack::type::POSITIVE_INTEGER) f.fail("expected an unsigned integer or nil");
  return o.via.u64;
}

PoolStatus decode_pool_status(Fields& f) {
  PoolStatus m;
  m.task = f.text();
  m.build = f.text();
  m.host = f.text();
  m.pid = f.i64();
  m.uptime_ms = f.u64();
  m.producer = f.text();
  m.workers_total = f.u64();
  Fields workers(f.next(), "POOL STATUS workers", 0, kMaxStatusWorkers);
  m.workers.reserve(workers.size());
  while (!workers.done()) {
    Fields w(workers.next(), "POOL STATUS worker", kPoolWorkerFields, kPoolWorkerFields);
    PoolWorkerStatus s;
    s.slot = w.u32();
    s.pid = w.i64();
    const std::uint32_t state = w.u32();
    if (state > static_cast<std::uint32_t>(PoolWorkerStatus::State::restarting)) {
      w.fail("unknown worker state");
    }
    s.state = static_cast<PoolWorkerStatus::State>(state);
    s.connected = w.boolean();
    s.restarts = w.u64();
    s.crashes = w.u64();
    s.job = optional_u64(w);
    s.slice = optional_u64(w);
    s.last_end = w.text();
    m.workers.push_back(std::move(s));
  }
  if (m.workers_total < m.workers.size()) f.fail("fewer workers in all than listed");
  return m;
}

}  // namespace

void encode(const Message& message, std::string& out) {
  detail::StringSink sink{out};
  Packer packer(sink);
  std::visit(Encoder{packer, out}, message);
}

std::string encode(const Message& message) {
  std::string out;
  encode(message, out);
  return out;
}

Message decode(std::string_view header, std::size_t payload_frames) {
  if (header.size() > kMaxHeaderBytes) {
    throw ProtocolError(fmt::format("header of {} bytes exceeds the limit", header.size()),
                        ProtocolError::Kind::oversized);
  }
  DecodeLimits limits;
  limits.max_array = kMaxSlicesPerBatch;
  limits.max_map = 0;
  limits.max_str = kMaxTextBytes;
  limits.max_bin = kMaxHeaderBytes;
  limits.max_depth = 4;
  detail::ScratchZone zone;
  msgpack::object root;
  try {
    root = detail::unpack_bounded(zone.get(), header, limits);
  } catch (const DecodeError& e) {
    throw ProtocolError(std::string("header: ") + e.what(), ProtocolError::Kind::not_a_message);
  }
  if (root.type != msgpack::type::ARRAY || root.via.array.size < 2) {
    throw ProtocolError("header: not a message", ProtocolError::Kind::not_a_message);
  }
  const msgpack::object& version = root.via.array.ptr[0];
  if (version.type != msgpack::type::POSITIVE_INTEGER)
    throw ProtocolError("header: no version", ProtocolError::Kind::not_a_message);
  if (version.via.u64 != protocol_version()) {
    throw ProtocolError(fmt::format("protocol version {} (this build speaks {})", version.via.u64,
                                    protocol_version()),
                        ProtocolError::Kind::foreign_version, version.via.u64);
  }
  const msgpack::object& type = root.via.array.ptr[1];
  if (type.type != msgpack::type::POSITIVE_INTEGER)
    throw ProtocolError("header: no type", ProtocolError::Kind::not_a_message);
  if (type.via.u64 > UINT8_MAX) {
    // Converted to Type, 257 would be taken for 1 (READY): Type's underlying type is 8 bits.
    throw ProtocolError(fmt::format("header: unknown message type {}", type.via.u64),
                        ProtocolError::Kind::wrong_shape);
  }

  auto fields = [&](const Layout& layout) {
    Fields f(root, layout.name, 2 + layout.fields, 2 + layout.fields);
    f.u64();  // version, checked above
    f.u64();  // type
    return f;
  };
  auto no_payload = [&](const Layout& layout) {
    if (payload_frames != 0) {
      throw ProtocolError(
          fmt::format("{}: unexpected {} payload frames", layout.name, payload_frames),
          ProtocolError::Kind::wrong_frames);
    }
  };

  switch (static_cast<Type>(type.via.u64)) {
    case Type::ready: {
      no_payload(kReady);
      Fields f = fields(kReady);
      return decode_ready(f);
    }
    case Type::assign: {
      Fields f = fields(kAssign);
      return decode_assign(f, payload_frames);
    }
    case Type::result: {
      Fields f = fields(kResult);
      return decode_result(f, payload_frames);
    }
    case Type::heartbeat: {
      no_payload(kHeartbeat);
      Fields f = fields(kHeartbeat);
      return Heartbeat{f.u64()};
    }
    case Type::bye: {
      no_payload(kBye);
      Fields f = fields(kBye);
      return Bye{f.text()};
    }
    case Type::cancel: {
      no_payload(kCancel);
      Fields f = fields(kCancel);
      return Cancel{job_id(f)};
    }
    case Type::cancelled: {
      no_payload(kCancelled);
      Fields f = fields(kCancelled);
      return Cancelled{job_id(f)};
    }
    case Type::refuse: {
      no_payload(kRefuse);
      Fields f = fields(kRefuse);
      return Refuse{f.text()};
    }
    case Type::who: {
      no_payload(kWho);
      fields(kWho);
      return Who{};
    }
    case Type::status_query: {
      no_payload(kStatusQuery);
      fields(kStatusQuery);
      return StatusQuery{};
    }
    case Type::status: {
      no_payload(kStatus);
      Fields f = fields(kStatus);
      return decode_status(f);
    }
    case Type::pool_status: {
      no_payload(kPoolStatus);
      Fields f = fields(kPoolStatus);
      return decode_pool_status(f);
    }
  }
  throw ProtocolError(fmt::format("header: unknown message type {}", type.via.u64),
                      ProtocolError::Kind::wrong_shape);
}

const char* to_string(PoolWorkerStatus::State state) {
  switch (state) {
    case PoolWorkerStatus::State::idle:
      return "idle";
    case PoolWorkerStatus::State::computing:
      return "computing";
    case PoolWorkerStatus::State::restarting:
      return "restarting";
  }
  return "unknown";
}

const char* ProtocolError::kind_name() const noexcept {
  switch (kind_) {
    case Kind::oversized:
      return "oversized";
    case Kind::not_a_message:
      return "not a message";
    case Kind::foreign_version:
      return "another protocol version";
    case Kind::wrong_shape:
      return "wrong shape";
    case Kind::wrong_frames:
      return "wrong payload frames";
  }
  return "malformed";
}

const char* type_name(const Message& message) {
  // In the order of Message's alternatives.
  static constexpr const Layout* layouts[] = {&kReady,       &kAssign, &kResult,    &kHeartbeat,
                                              &kBye,         &kCancel, &kRefuse,    &kWho,
                                              &kStatusQuery, &kStatus, &kCancelled, &kPoolStatus};
  static_assert(std::size(layouts) == std::variant_size_v<Message>);
  return layouts[message.index()]->name;
}

std::vector<std::string_view> result_values(const Result& result,
                                            std::span<const std::string_view> frames) {
  for (const std::string_view f : frames) {
    if (f.empty())
      throw ProtocolError("RESULT: an empty value frame", ProtocolError::Kind::wrong_frames);
  }
  std::vector<std::string_view> values;
  values.reserve(result.outcomes.size());
  std::size_t frame = 0;
  std::size_t used = 0;  // bytes of frames[frame] taken by earlier values
  for (const Outcome& o : result.outcomes) {
    if (!o.ok) continue;
    if (frame < frames.size() && used == frames[frame].size()) {
      ++frame;
      used = 0;
    }
    if (frame >= frames.size() || frames[frame].size() - used < o.value_bytes) {
      throw ProtocolError(
          fmt::format("RESULT: the value of slice {} ({} bytes) is not whole in its frame", o.slice,
                      o.value_bytes),
          ProtocolError::Kind::wrong_frames);
    }
    values.push_back(frames[frame].substr(used, o.value_bytes));
    used += o.value_bytes;
  }
  if (!frames.empty() && (frame + 1 != frames.size() || used != frames[frame].size())) {
    throw ProtocolError("RESULT: value frames hold more than the values",
                        ProtocolError::Kind::wrong_frames);
  }
  return values;
}

}  // namespace pymar::wire
