#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/version.hpp>

#include "wire/protocol.hpp"

using namespace pymar::wire;

namespace {

template <class T>
T round_trip(const T& message, std::size_t payload_frames = 0) {
  const Message decoded = decode(encode(message), payload_frames);
  REQUIRE(std::holds_alternative<T>(decoded));
  return std::get<T>(decoded);
}

// A header as a peer of this version would write it, with arbitrary fields.
template <class... Fields>
std::string header(Fields... fields) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(sizeof...(fields));
  (p.pack(fields), ...);
  return std::string(buffer.data(), buffer.size());
}

// A table as doc/protocol.md describes it: rows of unsigned 64-bit cells, little-endian, end to
// end, packed as a msgpack bin (a vector of char packs as one).
std::vector<char> table(const std::vector<std::vector<std::uint64_t>>& rows) {
  std::vector<char> bytes;
  for (const auto& row : rows) {
    for (std::uint64_t cell : row) {
      for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(cell >> (8 * i)));
    }
  }
  return bytes;
}

// An ASSIGN of this version with the given slice table (no payloads).
std::string assign_with(const std::vector<char>& slices) {
  return header(pymar::protocol_version(), 2, 1, 1, 1, "P", "S", std::vector<char>{}, 0, slices);
}

// A RESULT of this version with the given outcome table and errors.
std::string result_with(const std::vector<char>& outcomes,
                        const std::vector<std::vector<std::string>>& errors) {
  return header(pymar::protocol_version(), 3, 1, 1, 1, outcomes, errors);
}

}  // namespace

TEST_CASE("READY carries the worker's build, identity, credit, names and predecessor") {
  Ready r;
  r.build = "abc/0.1.0";
  r.task = "integration";
  r.host = "node7";
  r.pid = 4242;
  r.credit = 2;
  r.producers = {"Integral"};
  r.sources = {"Points", "memory<double>"};
  Ready back = round_trip(r);
  CHECK(back.build == r.build);
  CHECK(back.task == r.task);
  CHECK(back.host == r.host);
  CHECK(back.pid == 4242);
  CHECK(back.credit == 2);
  CHECK(back.producers == r.producers);
  CHECK(back.sources == r.sources);
  CHECK_FALSE(back.predecessor.has_value());

  r.predecessor = Predecessor{4241, 11, 0, true, JobId{99, 3}, 7};
  back = round_trip(r);
  REQUIRE(back.predecessor.has_value());
  CHECK(back.predecessor->pid == 4241);
  CHECK(back.predecessor->signal == 11);
  CHECK(back.predecessor->in_slice);
  CHECK(back.predecessor->job == JobId{99, 3});
  CHECK(back.predecessor->slice == 7);
}

TEST_CASE("ASSIGN carries the job, the names, the parameters and its slices") {
  Assign a;
  a.job = {0xfeedULL, 12};
  a.batch = 77;
  a.producer = "SquaredSum";
  a.source = "memory<long>";
  a.params = std::string("\x00\x01\xff", 3);
  a.payload = pymar::detail::PayloadKind::raw;
  a.slices = {{0, 0, 5}, {3, 15, 5}};
  const Assign back = round_trip(a, 2);
  CHECK(back.job == a.job);
  CHECK(back.batch == 77);
  CHECK(back.producer == a.producer);
  CHECK(back.source == a.source);
  CHECK(back.params == a.params);
  CHECK(back.payload == pymar::detail::PayloadKind::raw);
  REQUIRE(back.slices.size() == 2);
  CHECK(back.slices[1].index == 3);
  CHECK(back.slices[1].offset == 15);
  CHECK(back.slices[1].limit == 5);
}

TEST_CASE("ASSIGN must be followed by exactly one payload frame per slice when it has payloads") {
  Assign a;
  a.payload = pymar::detail::PayloadKind::raw;
  a.slices = {{0, 0, 5}, {1, 5, 5}};
  CHECK_THROWS_AS(decode(encode(a), 1), ProtocolError);
  CHECK_THROWS_AS(decode(encode(a), 3), ProtocolError);
  a.payload = pymar::detail::PayloadKind::none;
  CHECK_THROWS_AS(decode(encode(a), 2), ProtocolError);
  CHECK_NOTHROW(decode(encode(a), 0));
}

TEST_CASE("a batch's slices travel as a little-endian table, which is checked row by row") {
  // Written by hand as the protocol says: decoded to the same slices.
  const Message m = decode(assign_with(table({{0, 0, 5}, {7, 0x0102030405060708, 9}})), 0);
  REQUIRE(std::holds_alternative<Assign>(m));
  const Assign& a = std::get<Assign>(m);
  REQUIRE(a.slices.size() == 2);
  CHECK(a.slices[1].index == 7);
  CHECK(a.slices[1].offset == 0x0102030405060708);
  CHECK(a.slices[1].limit == 9);
  // And the encoder writes that table: its bytes are in the header as they are here.
  const std::vector<char> expected = table({{7, 0x0102030405060708, 9}});
  Assign one;
  one.slices = {{7, 0x0102030405060708, 9}};
  CHECK(encode(one).find(std::string(expected.begin(), expected.end())) != std::string::npos);

  std::vector<char> partial = table({{0, 0, 5}, {1, 5, 5}});
  partial.pop_back();
  CHECK_THROWS_AS(decode(assign_with(partial), 0), ProtocolError);  // a partial row
  CHECK_THROWS_AS(decode(assign_with({}), 0), ProtocolError);       // no slice
  // Offset + limit overflows.
  CHECK_THROWS_AS(decode(assign_with(table({{0, ~0ULL, 2}})), 0), ProtocolError);
  CHECK_THROWS_AS(decode(header(pymar::protocol_version(), 2, 1, 1, 1, "P", "S",
                                std::vector<char>{}, 0, std::vector<int>{0, 0, 5}),
                         0),
                  ProtocolError);  // an array, not a table
  const std::vector<std::vector<std::uint64_t>> most(kMaxSlicesPerBatch, {0, 0, 1});
  CHECK_NOTHROW(decode(assign_with(table(most)), 0));
  auto too_many = most;
  too_many.push_back({0, 0, 1});
  CHECK_THROWS_AS(decode(assign_with(table(too_many)), 0), ProtocolError);
}

TEST_CASE("a batch's outcomes travel as a table, a failed one's error beside it, in order") {
  const Message m =
      decode(result_with(table({{4, 100, 3}, {5, 20, 0}, {6, 30, 1}, {7, 40, 0}}),
                         {{"std::domain_error", "first"}, {"std::range_error", "second"}}),
             1);
  REQUIRE(std::holds_alternative<Result>(m));
  const Result& r = std::get<Result>(m);
  REQUIRE(r.outcomes.size() == 4);
  CHECK(r.outcomes[0].ok);
  CHECK(r.outcomes[0].value_bytes == 3);
  CHECK(r.outcomes[0].compute_ns == 100);
  CHECK_FALSE(r.outcomes[1].ok);
  CHECK(r.outcomes[1].slice == 5);
  CHECK(r.outcomes[1].error_message == "first");
  CHECK(r.outcomes[2].ok);
  CHECK(r.outcomes[2].slice == 6);
  CHECK(r.outcomes[3].error_type == "std::range_error");
  CHECK(r.outcomes[3].error_message == "second");
  // Each failed outcome has its error, and each error its failed outcome.
  CHECK_THROWS_AS(decode(result_with(table({{4, 1, 0}, {5, 1, 0}}), {{"E", "m"}}), 0),
                  ProtocolError);
  CHECK_THROWS_AS(decode(result_with(table({{4, 1, 2}}), {{"E", "m"}}), 1), ProtocolError);
  CHECK_THROWS_AS(decode(result_with(table({{4, 1, 0}}), {{"E"}}), 0), ProtocolError);
  CHECK_NOTHROW(decode(result_with(table({{4, 1, 0}}), {{"E", "m"}}), 0));
  // An outcome table with a partial row, or none at all.
  std::vector<char> partial = table({{4, 1, 2}, {5, 1, 2}});
  partial.resize(partial.size() - 3);
  CHECK_THROWS_AS(decode(result_with(partial, {}), 1), ProtocolError);
  CHECK_THROWS_AS(decode(result_with({}, {}), 0), ProtocolError);
}

TEST_CASE("RESULT carries outcomes, errors with type and message, and the size of each value") {
  Result r;
  r.job = {1, 2};
  r.batch = 3;
  r.outcomes = {{4, true, 1000, 9, "", ""}, {5, false, 20, 0, "std::domain_error", "bad element"}};
  const Result back = round_trip(r, 1);
  REQUIRE(back.outcomes.size() == 2);
  CHECK(back.outcomes[0].ok);
  CHECK(back.outcomes[0].compute_ns == 1000);
  CHECK(back.outcomes[0].value_bytes == 9);
  CHECK_FALSE(back.outcomes[1].ok);
  CHECK(back.outcomes[1].error_type == "std::domain_error");
  CHECK(back.outcomes[1].error_message == "bad element");
  // One value: in one frame, no more, no fewer.
  CHECK_THROWS_AS(decode(encode(r), 0), ProtocolError);
  CHECK_THROWS_AS(decode(encode(r), 2), ProtocolError);
  // A value has one byte at least, and no more than a frame may hold.
  r.outcomes[0].value_bytes = 0;
  CHECK_THROWS_AS(decode(encode(r), 1), ProtocolError);
  r.outcomes[0].value_bytes = kMaxValueBytes + 1;
  CHECK_THROWS_AS(decode(encode(r), 1), ProtocolError);
}

TEST_CASE("a RESULT's values are cut from its frames by the sizes it gives, none across frames") {
  Result r;
  r.outcomes = {{0, true, 1, 2, "", ""},
                {1, false, 1, 0, "E", "m"},
                {2, true, 1, 3, "", ""},
                {3, true, 1, 1, "", ""}};
  using Frames = std::vector<std::string_view>;
  auto values = [&](const Frames& frames) { return result_values(r, frames); };
  CHECK(values({"aabbbc"}) == Frames{"aa", "bbb", "c"});
  CHECK(values({"aa", "bbbc"}) == Frames{"aa", "bbb", "c"});
  CHECK(values({"aa", "bbb", "c"}) == Frames{"aa", "bbb", "c"});
  // A value across two frames, frames too short or too long, an empty frame: refused.
  for (const Frames& bad : {Frames{"aab", "bbc"}, Frames{"aabbb"}, Frames{"aabbbcd"},
                            Frames{"aa", "bbbc", "d"}, Frames{"aa", "", "bbbc"}, Frames{}}) {
    CAPTURE(bad.size());
    CHECK_THROWS_AS(values(bad), ProtocolError);
  }
  Result failed;
  failed.outcomes = {{0, false, 1, 0, "E", "m"}};
  CHECK(result_values(failed, {}).empty());
}

TEST_CASE("long error messages are cut on the sender's side") {
  Result r;
  r.outcomes = {{0, false, 0, 0, "E", std::string(100000, 'x')}};
  const Result back = round_trip(r);
  CHECK(back.outcomes[0].error_message.size() == kMaxErrorMessageBytes);
}

TEST_CASE("the small messages round-trip") {
  CHECK(round_trip(Heartbeat{0x1234}).session == 0x1234);
  CHECK(round_trip(Bye{"stopping"}).reason == "stopping");
  CHECK(round_trip(Cancel{{5, 6}}).job == JobId{5, 6});
  CHECK(round_trip(Cancelled{{7, 8}}).job == JobId{7, 8});
  CHECK(round_trip(Refuse{"other build"}).reason == "other build");
  CHECK_NOTHROW(round_trip(Who{}));
}

TEST_CASE("STATUS carries the producer, its job and its workers, with the list capped") {
  CHECK_NOTHROW(round_trip(StatusQuery{}));
  Status s;
  s.task = "integration";
  s.build = "abc/0.1.0";
  s.host = "node1";
  s.pid = 42;
  s.uptime_ms = 1234;
  s.job = JobStatus{3, "DoubleSum<16>", "Scripted", 16, 9, 1, 567};
  s.workers_total = 2;
  s.workers = {{"node2", 7, 2, 1, 5, 10}, {std::string(1000, 'h'), 8, 2, 0, 4, 20}};
  Status back = round_trip(s);
  CHECK(back.task == "integration");
  CHECK(back.pid == 42);
  REQUIRE(back.job);
  CHECK(back.job->producer == "DoubleSum<16>");
  CHECK(back.job->slices_done == 9);
  CHECK(back.job->elapsed_ms == 567);
  REQUIRE(back.workers.size() == 2);
  CHECK(back.workers[0].slices_done == 5);
  CHECK(back.workers[1].host.size() == kMaxStatusHostBytes);  // cut by the sender

  s.job.reset();
  s.workers.assign(kMaxStatusWorkers + 10, {"n", 1, 1, 0, 0, 0});
  s.workers_total = s.workers.size();
  back = round_trip(s);
  CHECK_FALSE(back.job);
  CHECK(back.workers.size() == kMaxStatusWorkers);
  CHECK(back.workers_total == kMaxStatusWorkers + 10);
  CHECK(encode(s).size() < kMaxHeaderBytes / 4);
}

TEST_CASE("POOL STATUS carries the pool and each worker process, with the list capped") {
  PoolStatus s;
  s.task = "integration";
  s.build = "abc/0.1.0";
  s.host = "node1";
  s.pid = 42;
  s.uptime_ms = 1234;
  s.producer = "tcp://10.0.0.1:7627";
  s.workers_total = 2;
  PoolWorkerStatus busy;
  busy.slot = 0;
  busy.pid = 43;
  busy.state = PoolWorkerStatus::State::computing;
  busy.connected = true;
  busy.job = 3;
  busy.slice = 7;
  PoolWorkerStatus waiting;
  waiting.slot = 1;
  waiting.state = PoolWorkerStatus::State::restarting;
  waiting.restarts = 2;
  waiting.crashes = 1;
  waiting.last_end = std::string(1000, 'k');
  s.workers = {busy, waiting};
  PoolStatus back = round_trip(s);
  CHECK(back.producer == "tcp://10.0.0.1:7627");
  REQUIRE(back.workers.size() == 2);
  CHECK(back.workers[0].state == PoolWorkerStatus::State::computing);
  CHECK(back.workers[0].connected);
  CHECK(back.workers[0].job == 3);
  CHECK(back.workers[0].slice == 7);
  CHECK(back.workers[1].pid == 0);
  CHECK_FALSE(back.workers[1].job);
  CHECK(back.workers[1].restarts == 2);
  CHECK(back.workers[1].crashes == 1);
  CHECK(back.workers[1].last_end.size() == kMaxPoolEndBytes);  // cut by the sender

  s.workers.assign(kMaxStatusWorkers + 10, waiting);
  s.workers_total = s.workers.size();
  back = round_trip(s);
  CHECK(back.workers.size() == kMaxStatusWorkers);
  CHECK(back.workers_total == kMaxStatusWorkers + 10);
  // One datagram on the pool's local socket, well under its default buffer.
  CHECK(encode(s).size() < 200 * 1024);
}

TEST_CASE("another protocol version is recognised as such") {
  const std::string future = header(pymar::protocol_version() + 1, 4, 0);
  try {
    decode(future, 0);
    FAIL("decoded a message of another version");
  } catch (const ProtocolError& e) {
    REQUIRE(e.foreign_version().has_value());
    CHECK(*e.foreign_version() == pymar::protocol_version() + 1);
  }
}

TEST_CASE("valid msgpack of the wrong shape is rejected, field by field") {
  const unsigned v = pymar::protocol_version();
  CHECK_THROWS_AS(decode(header(v), 0), ProtocolError);           // no type
  CHECK_THROWS_AS(decode(header(v, 99), 0), ProtocolError);       // unknown type
  CHECK_THROWS_AS(decode(header(v, 4), 0), ProtocolError);        // HEARTBEAT, no field
  CHECK_THROWS_AS(decode(header(v, 4, "x"), 0), ProtocolError);   // wrong field type
  CHECK_THROWS_AS(decode(header(v, 4, 1, 2), 0), ProtocolError);  // extra field
  CHECK_THROWS_AS(decode(header(v, 4, -1), 0), ProtocolError);    // negative session
  CHECK_THROWS_AS(decode(header(v, 6, 1), 0), ProtocolError);     // CANCEL, short
  CHECK_THROWS_AS(decode(header("1", 4, 0), 0), ProtocolError);   // version as text
  CHECK_THROWS_AS(decode(pymar::encode(std::map<int, int>{{1, 2}}), 0), ProtocolError);
  CHECK_THROWS_AS(decode(header(v, 8), 1), ProtocolError);  // WHO with payload
}

TEST_CASE("a READY with no credit is rejected") {
  Ready r;
  r.credit = 0;
  CHECK_THROWS_AS(decode(encode(r), 0), ProtocolError);
}

TEST_CASE("random and truncated bytes never crash the decoder") {
  std::mt19937_64 random(12345);
  Assign a;
  a.producer = "P";
  a.source = "S";
  a.slices = {{0, 0, 10}, {1, 10, 10}};
  const std::string valid = encode(a);
  std::size_t rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      bytes.resize(random() % 64);
      for (char& c : bytes) c = static_cast<char>(random());
    } else {
      bytes = valid.substr(0, random() % valid.size());  // truncated
      if (!bytes.empty() && i % 4 == 1)
        bytes[random() % bytes.size()] ^= static_cast<char>(1 + random() % 255);
    }
    try {
      decode(bytes, random() % 3);
    } catch (const ProtocolError&) {
      ++rejected;
    }
  }
  CHECK(rejected > 19000);
}

TEST_CASE("a message type beyond 255 is unknown, not taken for the type it wraps around to") {
  // 257 and 258 wrap around to READY (1) and ASSIGN (2) when narrowed to 8 bits.
  const std::string ready =
      header(pymar::protocol_version(), 257u, "build", "task", "host", 4242, 2u,
             std::vector<std::string>{}, std::vector<std::string>{}, msgpack::type::nil_t());
  CHECK_THROWS_WITH_AS(decode(ready, 0), doctest::Contains("unknown message type 257"),
                       ProtocolError);
  const std::string heartbeat = header(pymar::protocol_version(), 256u + 4u, std::uint64_t{7});
  CHECK_THROWS_WITH_AS(decode(heartbeat, 0), doctest::Contains("unknown message type 260"),
                       ProtocolError);
  CHECK_THROWS_AS(decode(header(pymar::protocol_version(), std::uint64_t{1} << 40), 0),
                  ProtocolError);
  // The same fields under their own type still decode.
  CHECK(std::holds_alternative<Ready>(
      decode(header(pymar::protocol_version(), 1u, "build", "task", "host", 4242, 2u,
                    std::vector<std::string>{}, std::vector<std::string>{}, msgpack::type::nil_t()),
             0)));
}

TEST_CASE("a batch of many failed slices with long messages still fits one header") {
  Result r;
  for (std::uint64_t i = 0; i < kMaxSlicesPerBatch / 64; ++i) {
    r.outcomes.push_back({i, false, 1, 0, std::string(1000, 't'), std::string(10000, 'm')});
  }
  const std::string header = encode(r);
  CHECK(header.size() <= kMaxHeaderBytes);
  const Result back = std::get<Result>(decode(header, 0));
  CHECK(back.outcomes.size() == r.outcomes.size());
  CHECK_FALSE(back.outcomes[0].error_message.empty());
}
