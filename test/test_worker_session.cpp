// The worker's session as a state machine: connection events, the producer's messages and the
// passing of time in; messages, reconnections, batches to compute, cancellations and abandons
// out. No socket, no thread: the worker's shell (src/worker/worker.cpp) does the I/O.
#include <doctest/doctest.h>

#include <string>
#include <variant>
#include <vector>

#include "common/crash_record.hpp"
#include "worker/session.hpp"

using namespace pymar::detail;
using namespace pymar::wire;
using namespace std::chrono_literals;

namespace {

struct Abandon {
  std::optional<JobId> job;
  std::optional<std::uint64_t> keep_session;
};

class RecordingActions : public WorkerActions {
 public:
  bool send(const Message& message) override {
    sent.push_back(message);
    return connection_open;
  }
  void reconnect(bool fresh) override { (fresh ? fresh_sockets : retries) += 1; }
  void compute(Assign&& assign) override { computed.push_back(std::move(assign)); }
  void cancel(const JobId& job) override { cancelled.push_back(job); }
  void drop_queued(std::optional<std::uint64_t> keep_session) override {
    drops.push_back(keep_session);
  }
  void abandon(std::optional<JobId> job, std::optional<std::uint64_t> keep_session,
               std::string_view) override {
    abandons.push_back({job, keep_session});
  }

  template <class T>
  std::vector<T> taken() {
    std::vector<T> out;
    std::vector<Message> rest;
    for (Message& m : sent) {
      if (std::holds_alternative<T>(m)) {
        out.push_back(std::get<T>(m));
      } else {
        rest.push_back(std::move(m));
      }
    }
    sent = std::move(rest);
    return out;
  }

  bool connection_open = true;
  std::vector<Message> sent;
  int retries = 0;
  int fresh_sockets = 0;
  std::vector<Assign> computed;
  std::vector<JobId> cancelled;
  std::vector<std::optional<std::uint64_t>> drops;
  std::vector<Abandon> abandons;
};

WorkerSessionConfig config(bool keys = false) {
  WorkerSessionConfig c;
  c.endpoint = "tcp://127.0.0.1:7627";
  c.heartbeat = 100ms;
  c.liveness = 500ms;
  c.credit = 3;
  c.producers = {"P"};
  c.sources = {"S"};
  c.build = "build-A";
  c.task = "test";
  c.host = "host";
  c.pid = 42;
  if (keys) c.own_key = "WORKERKEY";
  return c;
}

Assign assign(JobId job, std::uint64_t batch) {
  Assign a;
  a.job = job;
  a.batch = batch;
  a.producer = "P";
  a.source = "S";
  a.slices = {SliceRange{0, 0, 10}};
  return a;
}

const Clock::time_point t0 = Clock::time_point() + 1000s;

/// A session whose connection has just been made and greeted.
struct Linked {
  explicit Linked(WorkerSessionConfig c = config()) : session(std::move(c), actions) {
    session.on_new_socket(t0);
    session.on_link_up(t0);
  }
  RecordingActions actions;
  WorkerSession session;
};

}  // namespace

TEST_CASE("a new connection is greeted with READY: build, names, credit and predecessor") {
  WorkerSessionConfig c = config();
  c.predecessor = Predecessor{41, 9, 0, true, JobId{7, 1}, 3};
  RecordingActions actions;
  WorkerSession session(c, actions);
  session.on_new_socket(t0);
  CHECK(actions.sent.empty());  // nothing before the handshake
  session.on_link_up(t0);
  auto ready = actions.taken<Ready>();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].build == "build-A");
  CHECK(ready[0].pid == 42);
  CHECK(ready[0].credit == 3);
  CHECK(ready[0].producers == std::vector<std::string>{"P"});
  CHECK(ready[0].sources == std::vector<std::string>{"S"});
  REQUIRE(ready[0].predecessor.has_value());
  CHECK(ready[0].predecessor->pid == 41);
  CHECK(session.linked());
  CHECK(actions.drops.size() == 1);  // what was queued for an old connection is dropped

  // The predecessor is told until a producer answers, then never again.
  session.on_message(Heartbeat{5}, t0 + 1ms);
  CHECK(session.talking());
  session.on_message(Who{}, t0 + 2ms);
  ready = actions.taken<Ready>();
  REQUIRE(ready.size() == 1);
  CHECK_FALSE(ready[0].predecessor.has_value());
}

TEST_CASE("a READY that finds no connection yet is sent again shortly") {
  RecordingActions actions;
  actions.connection_open = false;
  WorkerSession session(config(), actions);
  session.on_new_socket(t0);
  session.on_link_up(t0);
  CHECK(actions.taken<Ready>().size() == 1);
  CHECK(session.next_deadline() <= t0 + 1ms);
  actions.connection_open = true;
  session.on_time(t0 + 1ms);
  CHECK(actions.taken<Ready>().size() == 1);
  // Sent: the next thing due is a heartbeat.
  CHECK(session.next_deadline() == t0 + 1ms + 100ms);
}

TEST_CASE("the worker heartbeats when otherwise silent, and only then") {
  Linked w;
  w.actions.sent.clear();
  CHECK(w.session.next_deadline() == t0 + 100ms);
  w.session.on_time(t0 + 50ms);
  CHECK(w.actions.sent.empty());
  w.session.on_message(Heartbeat{5}, t0 + 90ms);  // the producer's: keeps it alive
  w.session.on_time(t0 + 100ms);
  CHECK(w.actions.taken<Heartbeat>().size() == 1);
  // Results sent count as a sign of life: no heartbeat right after them.
  w.session.on_results_sent(t0 + 150ms);
  w.session.on_time(t0 + 200ms);
  CHECK(w.actions.taken<Heartbeat>().empty());
  w.session.on_time(t0 + 250ms);
  CHECK(w.actions.taken<Heartbeat>().size() == 1);
}

TEST_CASE("a producer silent for the liveness limit is given up on: new socket, work dropped") {
  Linked w;
  w.session.on_message(Heartbeat{5}, t0 + 100ms);
  w.actions.drops.clear();
  w.actions.abandons.clear();
  w.session.on_time(t0 + 599ms);  // heartbeats out, nothing in: still within the limit
  CHECK(w.actions.fresh_sockets == 0);
  CHECK(w.session.next_deadline() <= t0 + 600ms);
  w.session.on_time(t0 + 600ms);
  CHECK(w.actions.fresh_sockets == 1);
  CHECK(w.actions.drops.size() == 1);
  REQUIRE(w.actions.abandons.size() == 1);
  CHECK_FALSE(w.actions.abandons[0].job.has_value());  // whatever it computes
  CHECK_FALSE(w.session.linked());
  CHECK_FALSE(w.session.talking());

  SUBCASE("a stop of our own (SIGSTOP, a starved CPU) is not the producer's silence") {
    Linked v;
    v.session.on_message(Heartbeat{5}, t0 + 100ms);
    v.session.forgive_silence(t0 + 900ms);
    v.session.on_time(t0 + 900ms);
    CHECK(v.actions.fresh_sockets == 0);
  }
}

TEST_CASE("a producer that went away: its work is given up on once, after the liveness limit") {
  Linked w;
  w.session.on_message(Heartbeat{5}, t0);
  w.session.on_link_down(t0 + 10ms);
  CHECK_FALSE(w.session.linked());
  w.actions.drops.clear();
  w.actions.abandons.clear();
  w.session.on_time(t0 + 500ms);
  CHECK(w.actions.abandons.empty());
  w.session.on_time(t0 + 510ms);
  CHECK(w.actions.drops.size() == 1);
  CHECK(w.actions.abandons.size() == 1);
  CHECK(w.session.next_deadline() == Clock::time_point::max());  // an event must come now
  w.session.on_time(t0 + 2s);
  CHECK(w.actions.abandons.size() == 1);
  CHECK(w.actions.fresh_sockets == 0);  // libzmq is retrying the address already
}

TEST_CASE("batches go to the compute thread; a new producer run drops the old run's work") {
  Linked w;
  w.session.on_message(assign(JobId{5, 1}, 0), t0);
  REQUIRE(w.actions.computed.size() == 1);
  CHECK(w.actions.computed[0].job == JobId{5, 1});
  CHECK(w.session.producer_session() == 5);
  w.actions.drops.clear();
  w.actions.abandons.clear();
  w.session.on_message(Heartbeat{5}, t0 + 1ms);
  CHECK(w.actions.drops.empty());
  CHECK(w.actions.abandons.empty());

  w.session.on_message(Heartbeat{9}, t0 + 2ms);  // another producer run took over the address
  CHECK(w.session.producer_session() == 9);
  REQUIRE(w.actions.drops.size() == 1);
  CHECK(w.actions.drops[0] == std::optional<std::uint64_t>(9));  // keeps only the new run's
  REQUIRE(w.actions.abandons.size() == 1);
  CHECK(w.actions.abandons[0].keep_session == std::optional<std::uint64_t>(9));
}

TEST_CASE("a cancelled job is dropped and abandoned, that job only") {
  Linked w;
  w.session.on_message(assign(JobId{5, 1}, 0), t0);
  w.actions.abandons.clear();
  w.actions.sent.clear();
  w.session.on_message(Cancel{JobId{5, 1}}, t0 + 1ms);
  CHECK(w.actions.cancelled == std::vector<JobId>{JobId{5, 1}});
  // Confirmed at once: an ending producer waits for it before closing the connection.
  REQUIRE(w.actions.sent.size() == 1);
  REQUIRE(std::holds_alternative<Cancelled>(w.actions.sent[0]));
  CHECK(std::get<Cancelled>(w.actions.sent[0]).job == JobId{5, 1});
  REQUIRE(w.actions.abandons.size() == 1);
  CHECK(w.actions.abandons[0].job == std::optional<JobId>(JobId{5, 1}));
}

TEST_CASE("a producer refusing this worker's key ends it with the refused status") {
  RecordingActions actions;
  WorkerSession session(config(true), actions);
  session.on_new_socket(t0);
  session.on_handshake_failed(HandshakeFailure::other, t0);  // a squatter: keep trying
  CHECK_FALSE(session.end().has_value());
  CHECK(session.next_deadline() <= t0 + 100ms);
  session.on_time(t0 + 100ms);
  CHECK(actions.retries == 1);
  session.on_handshake_failed(HandshakeFailure::mechanism_mismatch, t0 + 150ms);
  CHECK_FALSE(session.end().has_value());  // with keys, a peer without them is not ours
  session.on_handshake_failed(HandshakeFailure::refused, t0 + 200ms);
  REQUIRE(session.end().has_value());
  CHECK(session.end()->status == kExitRefused);
  CHECK(session.end()->why.find("WORKERKEY") != std::string::npos);
}

TEST_CASE("without keys, a producer that wants them ends the worker: a mismatch, or three fails") {
  SUBCASE("a mechanism mismatch says it at once") {
    RecordingActions actions;
    WorkerSession session(config(), actions);
    session.on_new_socket(t0);
    session.on_handshake_failed(HandshakeFailure::mechanism_mismatch, t0);
    REQUIRE(session.end().has_value());
    CHECK(session.end()->status == kExitRefused);
    CHECK(session.end()->why.find("requires keys") != std::string::npos);
  }
  SUBCASE("failures without detail: three in a row") {
    RecordingActions actions;
    WorkerSession session(config(), actions);
    session.on_new_socket(t0);
    session.on_handshake_failed(HandshakeFailure::other, t0);
    session.on_handshake_failed(HandshakeFailure::other, t0 + 100ms);
    CHECK_FALSE(session.end().has_value());
    session.on_handshake_failed(HandshakeFailure::other, t0 + 200ms);
    CHECK(session.end().has_value());
  }
  SUBCASE("a handshake that succeeds in between starts the count again") {
    RecordingActions actions;
    WorkerSession session(config(), actions);
    session.on_new_socket(t0);
    session.on_handshake_failed(HandshakeFailure::other, t0);
    session.on_handshake_failed(HandshakeFailure::other, t0 + 100ms);
    session.on_link_up(t0 + 150ms);
    session.on_link_down(t0 + 160ms);
    session.on_handshake_failed(HandshakeFailure::other, t0 + 200ms);
    CHECK_FALSE(session.end().has_value());
  }
}

TEST_CASE("a REFUSE quiets the worker for six liveness periods, then it offers itself again") {
  Linked w;
  w.actions.sent.clear();
  w.actions.drops.clear();
  w.session.on_message(Refuse{"another build"}, t0);
  CHECK(w.actions.drops.size() == 1);
  CHECK(w.session.next_deadline() == t0 + 3s);
  w.session.on_time(t0 + 2s);
  CHECK(w.actions.sent.empty());  // no heartbeats meanwhile
  w.session.on_time(t0 + 3s);
  CHECK(w.actions.taken<Ready>().size() == 1);
  CHECK_FALSE(w.session.end().has_value());
}

TEST_CASE("a doorbell makes a waiting worker retry at once, no more often than every 10 ms") {
  RecordingActions actions;
  WorkerSession session(config(), actions);
  session.on_new_socket(t0);
  session.on_bell(t0);
  CHECK(actions.retries == 1);
  session.on_bell(t0 + 1ms);  // too soon: kept for later
  CHECK(actions.retries == 1);
  CHECK(session.next_deadline() == t0 + 10ms);
  session.on_time(t0 + 10ms);
  CHECK(actions.retries == 2);

  SUBCASE("a bell heard while linked is answered when that link goes") {
    session.on_link_up(t0 + 20ms);
    session.on_bell(t0 + 30ms);
    CHECK(actions.retries == 2);
    session.on_link_down(t0 + 40ms);
    CHECK(actions.retries == 3);
  }
}

TEST_CASE("malformed messages and messages producers do not send change nothing") {
  Linked w;
  w.actions.sent.clear();
  w.session.on_malformed(ProtocolError("garbage", ProtocolError::Kind::not_a_message));
  w.session.on_message(Bye{"?"}, t0 + 1ms);
  CHECK(w.actions.sent.empty());
  CHECK(w.actions.computed.empty());
  CHECK_FALSE(w.session.end().has_value());
}

TEST_CASE("a slice is abandoned only when it has run well past the usual length") {
  CHECK(worth_abandoning(1ms, 0ns));  // nothing to compare with
  CHECK_FALSE(worth_abandoning(15ms, 5ms));
  CHECK(worth_abandoning(20ms, 5ms));
  CHECK_FALSE(worth_abandoning(1s, 1s));
  CHECK(worth_abandoning(3s, 1s));
}
