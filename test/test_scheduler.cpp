// The scheduler as a state machine: workers' messages and the passing of time in, messages out.
#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <pymar/codec.hpp>

#include "producer/scheduler.hpp"

using namespace pymar::detail;
using namespace pymar::wire;
using namespace std::chrono_literals;

namespace {

struct Sent {
  std::string worker;
  Message message;
};

class RecordingOutbox : public Outbox {
 public:
  void send(const std::string& worker, const Message& message) override {
    sent.push_back({worker, message});
  }
  std::size_t send_assign(const std::string& worker, const Assign& assign,
                          const JobRequest& request) override {
    sent.push_back({worker, assign});
    std::size_t bytes = assign_bytes;
    if (request.memory.kind == PayloadKind::raw) {
      for (const SliceRange& slice : assign.slices)
        bytes += slice.limit * request.memory.element_size;
    }
    return bytes;
  }

  std::size_t assign_bytes = 100;  // of each ASSIGN with its payloads, as the scheduler is told

  template <class T>
  std::vector<T> taken(const std::string& worker) {
    std::vector<T> out;
    std::vector<Sent> rest;
    for (Sent& s : sent) {
      if (s.worker == worker && std::holds_alternative<T>(s.message)) {
        out.push_back(std::get<T>(s.message));
      } else {
        rest.push_back(std::move(s));
      }
    }
    sent = std::move(rest);
    return out;
  }

  std::vector<Sent> sent;
};

const std::string kBuild = "build-A";

Ready ready(std::uint32_t credit = 1, std::string build = kBuild, std::int64_t pid = 100) {
  Ready r;
  r.build = std::move(build);
  r.task = "test";
  r.host = "host";
  r.pid = pid;
  r.credit = credit;
  r.producers = {"P"};
  r.sources = {"S"};
  return r;
}

JobRequest job(std::size_t length, std::size_t parts) {
  JobRequest request;
  request.producer = "P";
  request.source = "S";
  request.length = length;
  request.parts = parts;
  request.check_partial = [](std::string_view bytes) { (void)pymar::decode<std::int64_t>(bytes); };
  return request;
}

// The partial value a well-behaved worker computes for a slice in these tests.
std::string value_of(std::uint64_t slice) {
  return pymar::encode(std::int64_t(slice) * 10);
}

// Answers an ASSIGN with every slice ok.
void answer(Scheduler& s, const std::string& worker, const Assign& a, Clock::time_point now,
            std::uint64_t compute_ns = 1000) {
  Result r{a.job, a.batch, {}};
  std::vector<std::string> storage;
  for (const SliceRange& slice : a.slices) {
    storage.push_back(value_of(slice.index));
    r.outcomes.push_back({slice.index, true, compute_ns, storage.back().size(), "", ""});
  }
  std::vector<std::string_view> values(storage.begin(), storage.end());
  s.on_result(worker, r, values, now);
}

SchedulerConfig config() {
  SchedulerConfig c;
  c.build = kBuild;
  c.session = 7;
  c.heartbeat = 100ms;
  c.liveness = 500ms;
  c.speculate = false;
  return c;
}

/// Speculation on, and nobody silent long enough to be dropped while a straggler is awaited.
SchedulerConfig speculating_config() {
  SchedulerConfig c = config();
  c.speculate = true;
  c.liveness = 60s;
  return c;
}

std::vector<std::int64_t> decoded(Partials& partials) {
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < partials.size(); ++i) {
    out.push_back(pymar::decode<std::int64_t>(partials[i]));
  }
  return out;
}

const Clock::time_point t0 = Clock::now();

}  // namespace

TEST_CASE("slices are handed to a ready worker within its credit and the job completes") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(2), t0);
  const JobRequest request = job(14, 4);
  s.start_job(request, {7, 1}, 1s, t0);
  auto assigns = out.taken<Assign>("w1");
  // While the cost of a slice is unknown, one batch of one slice at a time.
  REQUIRE(assigns.size() == 1);
  CHECK(assigns[0].slices.size() == 1);
  CHECK(assigns[0].slices[0].offset == 0);
  CHECK(assigns[0].slices[0].limit == 4);
  CHECK(assigns[0].producer == "P");
  CHECK(assigns[0].source == "S");
  answer(s, "w1", assigns[0], t0);  // 1 us per slice: what is left fits one batch
  assigns = out.taken<Assign>("w1");
  REQUIRE(assigns.size() == 1);
  CHECK(assigns[0].slices.size() == 3);
  while (!assigns.empty()) {
    for (const Assign& a : assigns) answer(s, "w1", a, t0);
    assigns = out.taken<Assign>("w1");
  }
  CHECK(s.state() == JobState::done);
  CHECK(s.slices_done() == 4);
  Partials partials = s.take_partials();
  CHECK(decoded(partials) == std::vector<std::int64_t>{0, 10, 20, 30});
}

TEST_CASE("no slice waits queued behind a long one") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(2), t0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 1s, t0);
  auto first = out.taken<Assign>("w1");
  REQUIRE(first.size() == 1);
  answer(s, "w1", first[0], t0, 500'000'000);  // half a second per slice
  CHECK(out.taken<Assign>("w1").size() == 1);
}

TEST_CASE("a job with no elements is done at once") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  const JobRequest request = job(0, 4);
  s.start_job(request, {7, 1}, 1s, t0);
  CHECK(s.state() == JobState::done);
  CHECK(s.take_partials().size() == 0);
}

TEST_CASE("work is spread over workers, a fast worker taking more") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("fast", ready(1), t0);
  s.on_ready("slow", ready(1), t0);
  const JobRequest request = job(16, 16);
  s.start_job(request, {7, 1}, 1s, t0);
  auto slow = out.taken<Assign>("slow");
  REQUIRE(slow.size() == 1);
  std::size_t fast_slices = 0;
  for (auto fast = out.taken<Assign>("fast"); !fast.empty(); fast = out.taken<Assign>("fast")) {
    for (const Assign& a : fast) {
      fast_slices += a.slices.size();
      answer(s, "fast", a, t0);
    }
  }
  answer(s, "slow", slow[0], t0);
  CHECK(s.state() == JobState::done);
  CHECK(fast_slices == 15);
}

TEST_CASE("two workers share what is left of a small job, neither going without") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("a", ready(2), t0);
  s.on_ready("b", ready(2), t0);
  const JobRequest request = job(400, 400);
  s.start_job(request, {7, 1}, 1s, t0);
  auto first_a = out.taken<Assign>("a");
  auto first_b = out.taken<Assign>("b");
  REQUIRE(first_a.size() == 1);
  answer(s, "a", first_a[0], t0, 1000);  // 1 us per slice: the rest is 0.4 ms of work
  answer(s, "b", first_b[0], t0, 1000);
  const auto a = out.taken<Assign>("a");
  const auto b = out.taken<Assign>("b");
  REQUIRE(a.size() == 1);
  REQUIRE(b.size() == 1);
  // Half of what was left, counting the slice "b" still held; then "b" takes the rest, which
  // levels it with "a": both end together, and no slice waits for a third round trip.
  CHECK(a[0].slices.size() == 200);
  CHECK(b[0].slices.size() == 198);
}

TEST_CASE("batches grow when slices are cheap, so that messages stay few") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(2), t0);
  const JobRequest request = job(100000, 100000);
  s.start_job(request, {7, 1}, 1s, t0);
  std::size_t messages = 0;
  for (auto a = out.taken<Assign>("w1"); !a.empty(); a = out.taken<Assign>("w1")) {
    for (const Assign& x : a) {
      ++messages;
      answer(s, "w1", x, t0, 100);  // 100 ns per slice
    }
  }
  CHECK(s.state() == JobState::done);
  CHECK(messages < 1000);
}

TEST_CASE("a result counts once: duplicates, other jobs and unknown batches are dropped") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(1), t0);
  const JobRequest request = job(2, 2);
  s.start_job(request, {7, 1}, 1s, t0);
  auto first = out.taken<Assign>("w1");
  REQUIRE(first.size() == 1);
  answer(s, "w1", first[0], t0);
  answer(s, "w1", first[0], t0);  // the same batch again
  CHECK(s.drops().late == 1);
  Assign forged = first[0];
  forged.batch = 1000;
  answer(s, "w1", forged, t0);  // a batch never sent
  CHECK(s.drops().malformed == 1);
  Assign other_job = first[0];
  other_job.job = {7, 99};
  answer(s, "w1", other_job, t0);
  CHECK(s.drops().stale == 1);
  auto second = out.taken<Assign>("w1");
  REQUIRE(second.size() == 1);
  answer(s, "w1", second[0], t0);
  CHECK(s.state() == JobState::done);
  Partials partials = s.take_partials();
  CHECK(decoded(partials) == std::vector<std::int64_t>{0, 10});
}

TEST_CASE("a silent worker is dropped, its slice re-queued, and its late result dropped") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("stalled", ready(1), t0);
  const JobRequest request = job(1, 1);
  s.start_job(request, {7, 1}, 10s, t0);
  auto held = out.taken<Assign>("stalled");
  REQUIRE(held.size() == 1);
  s.on_ready("healthy", ready(1), t0 + 100ms);
  CHECK(out.taken<Assign>("healthy").empty());  // nothing pending yet
  s.on_heartbeat("healthy", t0 + 400ms);
  s.tick(t0 + 600ms);
  CHECK(s.live_workers() == 1);
  auto rerun = out.taken<Assign>("healthy");
  REQUIRE(rerun.size() == 1);
  CHECK(rerun[0].slices[0].index == 0);
  answer(s, "stalled", held[0], t0 + 700ms);  // it wakes up
  CHECK(s.drops().late == 1);
  CHECK(out.taken<Who>("stalled").size() == 1);  // asked to register again
  CHECK(s.state() == JobState::running);
  answer(s, "healthy", rerun[0], t0 + 800ms);
  CHECK(s.state() == JobState::done);
  CHECK(s.reruns() == 1);
}

TEST_CASE("heartbeats keep a busy worker alive and are sent to quiet ones") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("busy", ready(1), t0);
  const JobRequest request = job(1, 1);
  s.start_job(request, {7, 1}, 10s, t0);
  for (auto t = t0; t < t0 + 3s; t += 200ms) {
    s.on_heartbeat("busy", t);
    s.tick(t + 100ms);
  }
  CHECK(s.live_workers() == 1);
  CHECK(out.taken<Heartbeat>("busy").size() >= 10);
  CHECK(s.state() == JobState::running);
}

TEST_CASE("a worker that says goodbye has its slices re-queued at once") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("leaving", ready(1), t0);
  s.on_ready("staying", ready(1), t0);
  const JobRequest request = job(2, 2);
  s.start_job(request, {7, 1}, 10s, t0);
  auto leaving = out.taken<Assign>("leaving");
  REQUIRE(leaving.size() == 1);
  auto staying = out.taken<Assign>("staying");
  answer(s, "staying", staying[0], t0);
  s.on_bye("leaving", "SIGTERM", t0 + 1ms);
  auto rerun = out.taken<Assign>("staying");
  REQUIRE(rerun.size() == 1);
  CHECK(rerun[0].slices[0].index == leaving[0].slices[0].index);
}

TEST_CASE("a slice that crashes its worker is retried, and fails the job after max attempts") {
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.max_attempts = 2;
  Scheduler s(c, out);
  s.on_ready("w-100", ready(1, kBuild, 100), t0);
  const JobRequest request = job(3, 3);
  s.start_job(request, {7, 1}, 10s, t0);
  auto held = out.taken<Assign>("w-100");
  REQUIRE(held.size() == 1);
  const std::uint64_t slice = held[0].slices[0].index;

  // The pool restarts the process and reports how the previous one ended.
  Ready next = ready(1, kBuild, 101);
  next.predecessor = Predecessor{100, 11, 0, true, {7, 1}, slice};
  s.on_ready("w-101", next, t0 + 10ms);
  CHECK(s.state() == JobState::running);
  CHECK(s.live_workers() == 1);
  auto retry = out.taken<Assign>("w-101");
  REQUIRE(retry.size() == 1);
  CHECK(retry[0].slices[0].index == slice);  // a lost slice goes first

  Ready third = ready(1, kBuild, 102);
  third.predecessor = Predecessor{101, 11, 0, true, {7, 1}, slice};
  s.on_ready("w-102", third, t0 + 20ms);
  REQUIRE(s.state() == JobState::failed);
  const auto& failure = *s.failure();
  CHECK(failure.slice == slice);
  CHECK(failure.pid == 101);
  CHECK(failure.attempts == 2);
  CHECK(failure.exception_type == "signal SIGSEGV");
}

TEST_CASE("an exception in user code fails the job with where and what") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(1), t0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 10s, t0);
  auto a = out.taken<Assign>("w1");
  REQUIRE(a.size() == 1);
  Result r{
      a[0].job, a[0].batch, {{a[0].slices[0].index, false, 5, 0, "std::domain_error", "bad x"}}};
  s.on_result("w1", r, {}, t0);
  REQUIRE(s.state() == JobState::failed);
  CHECK(s.failure()->exception_type == "std::domain_error");
  CHECK(s.failure()->message == "bad x");
  CHECK(s.failure()->host == "host");
  CHECK(s.failure()->pid == 100);
  s.finish_job();
  CHECK(s.state() == JobState::idle);
}

TEST_CASE("with retries, a throwing slice is tried again before the job fails") {
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.error_retries = 1;
  Scheduler s(c, out);
  s.on_ready("w1", ready(1), t0);
  const JobRequest request = job(1, 1);
  s.start_job(request, {7, 1}, 10s, t0);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto a = out.taken<Assign>("w1");
    REQUIRE(a.size() == 1);
    Result r{a[0].job, a[0].batch, {{0, false, 5, 0, "E", "m"}}};
    s.on_result("w1", r, {}, t0);
  }
  CHECK(s.state() == JobState::failed);
  CHECK(s.failure()->attempts == 2);
}

TEST_CASE("a partial value that does not decode is dropped and its slice re-queued") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("liar", ready(1), t0);
  const JobRequest request = job(1, 1);
  s.start_job(request, {7, 1}, 10s, t0);
  auto a = out.taken<Assign>("liar");
  Result r{a[0].job, a[0].batch, {{0, true, 5, 13, "", ""}}};
  const std::string garbage = pymar::encode(std::string("not a number"));
  const std::string_view values[] = {garbage};
  s.on_result("liar", r, values, t0);
  CHECK(s.drops().malformed == 1);
  CHECK(s.state() == JobState::running);
  auto again = out.taken<Assign>("liar");
  REQUIRE(again.size() == 1);
  answer(s, "liar", again[0], t0);
  CHECK(s.state() == JobState::done);
}

TEST_CASE("outcomes that do not match the batch are not trusted") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(1), t0);
  const JobRequest request = job(2, 2);
  s.start_job(request, {7, 1}, 10s, t0);
  auto a = out.taken<Assign>("w1");
  Assign forged = a[0];
  forged.slices[0].index = 1 - a[0].slices[0].index;
  answer(s, "w1", forged, t0);
  CHECK(s.drops().malformed == 1);
  CHECK(s.slices_done() == 0);
}

TEST_CASE("a worker of another build is refused, once logged, and never given work") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("stranger", ready(1, "build-B"), t0);
  CHECK(out.taken<Refuse>("stranger").size() == 1);
  CHECK(s.live_workers() == 0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 1s, t0);
  CHECK(out.taken<Assign>("stranger").empty());
  s.on_heartbeat("stranger", t0);
  CHECK(out.taken<Who>("stranger").empty());
}

TEST_CASE("with no worker able to serve the job for the grace period, the job has no workers") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  Ready other = ready(1);
  other.producers = {"Q"};  // serves another producer only
  s.on_ready("w1", other, t0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 1s, t0);
  CHECK(out.taken<Assign>("w1").empty());
  s.on_heartbeat("w1", t0 + 400ms);
  s.tick(t0 + 500ms);
  CHECK(s.state() == JobState::running);
  s.on_heartbeat("w1", t0 + 900ms);
  s.tick(t0 + 1s);
  CHECK(s.state() == JobState::no_workers);
  CHECK(s.missing_slices().size() == 4);
}

TEST_CASE("a batch is queued ahead on a worker only while batches are light, not megabytes") {
  for (const std::size_t bytes : {std::size_t(100), std::size_t(4) << 20}) {
    CAPTURE(bytes);
    RecordingOutbox out;
    out.assign_bytes = bytes;
    Scheduler s(config(), out);
    s.on_ready("w1", ready(2), t0);
    const JobRequest request = job(1000, 100);
    s.start_job(request, {7, 1}, 10s, t0);
    auto first = out.taken<Assign>("w1");
    REQUIRE(first.size() == 1);
    // 0.1 ms a slice: batches of a few ms, plenty of them left.
    answer(s, "w1", first[0], t0 + 1ms, 100'000);
    const auto next = out.taken<Assign>("w1");
    REQUIRE(!next.empty());
    CHECK(next[0].slices.size() < 50);
    // Light batches fill the worker's credit; heavy ones go one at a time, so that the worker
    // holds one batch's payload, not two.
    CHECK(next.size() == (bytes < (1u << 20) ? 2u : 1u));
  }
}

TEST_CASE("slices of megabytes in the producer's memory go one to a batch, one batch at a time") {
  // Raw memory weighs what it is; encoded elements weigh what the first batches sent did.
  for (const PayloadKind kind : {PayloadKind::raw, PayloadKind::msgpack}) {
    CAPTURE(static_cast<int>(kind));
    RecordingOutbox out;
    Scheduler s(config(), out);
    s.on_ready("w1", ready(4), t0);
    JobRequest request = job(8'000'000, 8);  // 1 million elements of 8 bytes a slice
    request.memory.kind = kind;
    request.memory.element_size = 8;
    if (kind == PayloadKind::msgpack) out.assign_bytes = 8 << 20;  // a slice, encoded
    // The second job starts knowing the slices' cost, and would batch them from the first round.
    for (std::uint64_t run = 1; run <= 2; ++run) {
      CAPTURE(run);
      s.start_job(request, {7, run}, 10s, t0);
      auto assigns = out.taken<Assign>("w1");
      for (int round = 0; round < 8 && !assigns.empty(); ++round) {
        CAPTURE(round);
        // Cheap slices (10 us) would otherwise make one batch of all that is left, queued ahead.
        REQUIRE(assigns.size() == 1);
        CHECK(assigns[0].slices.size() == 1);
        answer(s, "w1", assigns[0], t0 + std::chrono::milliseconds(round + 1), 10'000);
        assigns = out.taken<Assign>("w1");
      }
      CHECK(s.state() == JobState::done);
      (void)s.take_partials();
      s.finish_job();
    }
  }
}

TEST_CASE("a worker joining mid-job takes pending slices") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 10s, t0);
  s.on_ready("late", ready(4), t0 + 50ms);
  auto a = out.taken<Assign>("late");
  REQUIRE(a.size() == 1);
  answer(s, "late", a[0], t0 + 60ms);
  std::size_t slices = 0;
  for (const Assign& x : out.taken<Assign>("late")) slices += x.slices.size();
  CHECK(slices == 3);  // the cost is known now: the rest at once, within its credit
}

TEST_CASE("a straggling slice is copied to an idle worker; the first result counts") {
  RecordingOutbox out;
  Scheduler s(speculating_config(), out);
  s.on_ready("slow", ready(1), t0);
  s.on_ready("fast", ready(1), t0);
  JobRequest request = job(3, 3);
  s.start_job(request, {7, 1}, 10s, t0);
  auto slow = out.taken<Assign>("slow");
  auto fast = out.taken<Assign>("fast");
  REQUIRE(slow.size() == 1);
  REQUIRE(fast.size() == 1);
  answer(s, "fast", fast[0], t0 + 10ms, 10'000'000);  // 10 ms per slice
  fast = out.taken<Assign>("fast");
  REQUIRE(fast.size() == 1);
  answer(s, "fast", fast[0], t0 + 20ms, 10'000'000);
  CHECK(out.taken<Assign>("fast").empty());  // the slow one is not late yet
  s.tick(t0 + 200ms);
  auto copy = out.taken<Assign>("fast");
  REQUIRE(copy.size() == 1);
  CHECK(copy[0].slices[0].index == slow[0].slices[0].index);
  answer(s, "fast", copy[0], t0 + 210ms, 10'000'000);
  CHECK(s.state() == JobState::done);
  answer(s, "slow", slow[0], t0 + 300ms);
  CHECK(s.slices_done() == 3);
  CHECK(s.drops().duplicate == 0);  // the job was over: the copy's twin is no longer counted
}

TEST_CASE("a straggling slice is copied once: a third idle worker gets no second copy") {
  RecordingOutbox out;
  Scheduler s(speculating_config(), out);
  s.on_ready("slow", ready(1), t0);
  s.on_ready("f1", ready(1), t0);
  s.on_ready("f2", ready(1), t0);
  JobRequest request = job(3, 3);
  s.start_job(request, {7, 1}, 10s, t0);
  const auto slow = out.taken<Assign>("slow");
  REQUIRE(slow.size() == 1);
  for (const char* fast : {"f1", "f2"}) {
    const auto batch = out.taken<Assign>(fast);
    REQUIRE(batch.size() == 1);
    answer(s, fast, batch[0], t0 + 10ms, 10'000'000);  // 10 ms per slice
  }
  // Both fast workers are idle while the slow one is late: one of them gets a copy, and the
  // other nothing, at this tick and the next (three workers on one slice would waste one).
  std::size_t copies = 0;
  for (const auto at : {t0 + 200ms, t0 + 400ms}) {
    s.tick(at);
    for (const char* fast : {"f1", "f2"}) {
      for (const Assign& copy : out.taken<Assign>(fast)) {
        ++copies;
        REQUIRE(copy.slices.size() == 1);
        CHECK(copy.slices[0].index == slow[0].slices[0].index);
      }
    }
  }
  CHECK(copies == 1);
}

// A job run to its end in simulated time: each worker computes the slices it is sent one after
// another, each in its own time per slice, and the scheduler ticks at its deadlines.
struct SimulatedJob {
  Clock::duration took{};
  std::size_t slices_sent = 0;                // copies included
  std::map<std::string, std::size_t> copies;  // by worker: slices it got that another had too
};

static SimulatedJob simulate(Scheduler& s, RecordingOutbox& out, const JobRequest& request,
                             const std::vector<std::pair<std::string, Clock::duration>>& workers) {
  struct Queued {
    Assign assign;
    Clock::time_point ends;
  };
  std::map<std::string, std::deque<Queued>> queues;
  std::set<std::uint64_t> seen;
  SimulatedJob sim;
  s.start_job(request, {7, 1}, 10s, t0);
  Clock::time_point now = t0;
  while (s.state() == JobState::running) {
    for (const auto& [name, per_slice] : workers) {
      for (Assign& a : out.taken<Assign>(name)) {
        auto& queue = queues[name];
        const Clock::time_point from = queue.empty() ? now : queue.back().ends;
        for (const SliceRange& r : a.slices) {
          ++sim.slices_sent;
          if (!seen.insert(r.index).second) ++sim.copies[name];
        }
        const auto ends = from + per_slice * static_cast<std::int64_t>(a.slices.size());
        queue.push_back({std::move(a), ends});
      }
    }
    const std::string* next = nullptr;
    for (const auto& [name, per_slice] : workers) {
      const auto& queue = queues[name];
      if (!queue.empty() && (next == nullptr || queue.front().ends < queues[*next].front().ends)) {
        next = &name;
      }
    }
    const Clock::time_point tick_at = s.next_deadline(now);
    if (next == nullptr || tick_at < queues[*next].front().ends) {
      REQUIRE(tick_at < t0 + 60s);
      now = std::max(now, tick_at);
      s.tick(now);
      continue;
    }
    Queued done = std::move(queues[*next].front());
    queues[*next].pop_front();
    now = done.ends;
    const auto per_slice = std::find_if(workers.begin(), workers.end(), [&](const auto& w) {
                             return w.first == *next;
                           })->second;
    answer(s, *next, done.assign, now,
           static_cast<std::uint64_t>(std::chrono::nanoseconds(per_slice).count()));
  }
  sim.took = now - t0;
  return sim;
}

/// For whole simulated jobs: speculation on, and nobody silent long enough to be dropped.
static SchedulerConfig whole_job_config() {
  SchedulerConfig c = speculating_config();
  c.heartbeat = 1s;
  return c;
}

TEST_CASE("the last slice a slower worker took is copied to a faster one that would end it first") {
  RecordingOutbox out;
  Scheduler s(whole_job_config(), out);
  s.on_ready("fast", ready(1), t0);
  s.on_ready("slow", ready(1), t0);  // on a core it shares: a little under half speed
  const JobRequest request = job(8, 8);
  SimulatedJob sim = simulate(s, out, request, {{"fast", 90ms}, {"slow", 200ms}});
  // The slow worker takes its third slice at 400 ms, while the fast one is busy until 450 ms:
  // left there, it ends at 600 ms, the fast worker idle for the last 150. A copy on the fast
  // worker ends at 540 ms, the best whole slices allow.
  CHECK(s.state() == JobState::done);
  CHECK(sim.took <= 545ms);
  CHECK(sim.copies["fast"] == 1);
  CHECK(sim.copies["slow"] == 0);
}

TEST_CASE("a producer whose map_fn has side effects gets no copy for a slower worker either") {
  RecordingOutbox out;
  Scheduler s(whole_job_config(), out);
  s.on_ready("fast", ready(1), t0);
  s.on_ready("slow", ready(1), t0);
  JobRequest request = job(8, 8);
  request.options.speculate = false;
  const SimulatedJob sim = simulate(s, out, request, {{"fast", 90ms}, {"slow", 200ms}});
  CHECK(s.state() == JobState::done);
  CHECK(sim.slices_sent == 8);
  CHECK(sim.took == 600ms);
}

TEST_CASE("workers of about the same speed get no copies at the end of a job") {
  RecordingOutbox out;
  Scheduler s(whole_job_config(), out);
  s.on_ready("a", ready(1), t0);
  s.on_ready("b", ready(1), t0);
  const JobRequest request = job(8, 8);
  // "b" takes the last slice at 360 ms and ends it at 480; "a", idle from 400, would end a
  // copy at 500: no use.
  const SimulatedJob sim = simulate(s, out, request, {{"a", 100ms}, {"b", 120ms}});
  CHECK(s.state() == JobState::done);
  CHECK(sim.slices_sent == 8);
  CHECK(sim.took == 480ms);
}

TEST_CASE("no speculation for a producer whose map_fn has side effects") {
  RecordingOutbox out;
  Scheduler s(speculating_config(), out);
  s.on_ready("slow", ready(1), t0);
  s.on_ready("fast", ready(1), t0);
  JobRequest request = job(2, 2);
  request.options.speculate = false;
  s.start_job(request, {7, 1}, 10s, t0);
  auto fast = out.taken<Assign>("fast");
  answer(s, "fast", fast[0], t0 + 10ms, 10'000'000);
  s.tick(t0 + 500ms);
  CHECK(out.taken<Assign>("fast").empty());
}

TEST_CASE("finishing a job tells the workers holding its slices to drop them") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(1), t0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 10s, t0);
  s.finish_job();
  auto cancels = out.taken<Cancel>("w1");
  REQUIRE(cancels.size() == 1);
  CHECK(cancels[0].job == JobId{7, 1});
  // Until the worker says it read that CANCEL, an ending producer has a reason to wait.
  CHECK(s.cancels_unread() == 1);
  s.on_cancelled("w1", JobId{7, 0});  // another job's: not this one
  CHECK(s.cancels_unread() == 1);
  s.on_cancelled("w2", JobId{7, 1});  // not a worker it knows
  CHECK(s.cancels_unread() == 1);
  s.on_cancelled("w1", JobId{7, 1});
  CHECK(s.cancels_unread() == 0);
}

TEST_CASE("a repeated job starts with the cost measured in the previous one") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(2), t0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 1s, t0);
  for (auto a = out.taken<Assign>("w1"); !a.empty(); a = out.taken<Assign>("w1")) {
    for (const Assign& x : a) answer(s, "w1", x, t0, 1000);
  }
  REQUIRE(s.state() == JobState::done);
  s.finish_job();
  s.start_job(request, {7, 2}, 1s, t0);
  const auto assigns = out.taken<Assign>("w1");  // the whole job in one round trip
  REQUIRE(assigns.size() == 1);
  CHECK(assigns[0].slices.size() == 4);
}

// Runs a first job on workers "a" and "b", each slice taking `compute_ns`, so that the next one
// starts with the cost known; then forgets what was sent.
static void run_first_job(Scheduler& s, RecordingOutbox& out, const JobRequest& request,
                          std::uint64_t compute_ns) {
  s.start_job(request, {7, 1}, 1s, t0);
  for (bool sent = true; sent;) {
    sent = false;
    for (const char* w : {"a", "b"}) {
      for (const Assign& x : out.taken<Assign>(w)) {
        answer(s, w, x, t0, compute_ns);
        sent = true;
      }
    }
  }
  REQUIRE(s.state() == JobState::done);
  s.finish_job();
  out.sent.clear();
}

TEST_CASE("a small job of cheap slices is shared at once by the workers with nothing to do") {
  // 100 ns per slice: the whole job is far less work than a round trip, yet both workers take
  // half at once, rather than the first taking it all while the other waits.
  // 400 ns per slice: a round trip is worth 250 slices; the last idle worker still takes what
  // levels it with the busy one, not half of what is left, whose rest would wait a round trip.
  for (const std::uint64_t slice_ns : {100, 400}) {
    CAPTURE(slice_ns);
    RecordingOutbox out;
    Scheduler s(config(), out);
    s.on_ready("a", ready(2), t0);
    s.on_ready("b", ready(2), t0);
    const JobRequest request = job(1000, 1000);
    run_first_job(s, out, request, slice_ns);  // it measures the cost per slice
    s.start_job(request, {7, 2}, 1s, t0);
    const auto a = out.taken<Assign>("a");
    const auto b = out.taken<Assign>("b");
    REQUIRE(a.size() == 1);
    REQUIRE(b.size() == 1);
    CHECK(a[0].slices.size() == 500);
    CHECK(b[0].slices.size() == 500);
  }
}

TEST_CASE("a tiny job of cheap slices goes to one worker in one round trip") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("a", ready(2), t0);
  s.on_ready("b", ready(2), t0);
  const JobRequest request = job(4, 4);
  run_first_job(s, out, request, 100);  // it measures the cost: 100 ns per slice
  // 0.4 us of work in all: a second worker's round trip would cost far more than it saves.
  s.start_job(request, {7, 2}, 1s, t0);
  const auto a = out.taken<Assign>("a");
  const auto b = out.taken<Assign>("b");
  REQUIRE(a.size() + b.size() == 1);
  CHECK((a.empty() ? b : a)[0].slices.size() == 4);
}

TEST_CASE("a known worker that sends garbage has its slices re-queued and registers again") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w1", ready(1), t0);
  s.on_ready("w2", ready(1), t0);
  const JobRequest request = job(2, 2);
  s.start_job(request, {7, 1}, 10s, t0);
  auto held = out.taken<Assign>("w1");
  REQUIRE(held.size() == 1);
  auto other = out.taken<Assign>("w2");
  answer(s, "w2", other[0], t0);
  s.on_garbage("w1", t0 + 1ms);  // perhaps its result, mangled: waiting for it would hang
  CHECK(out.taken<Who>("w1").size() == 1);
  auto rerun = out.taken<Assign>("w2");
  REQUIRE(rerun.size() == 1);
  CHECK(rerun[0].slices[0].index == held[0].slices[0].index);
}

namespace {

// Captures what the scheduler logs while it lives (it logs through spdlog's default logger).
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "captured", std::make_shared<spdlog::sinks::ostream_sink_st>(text_));
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::vector<std::string> lines_with(const std::string& fragment) const {
    std::vector<std::string> found;
    std::istringstream lines(text_.str());
    for (std::string line; std::getline(lines, line);) {
      if (line.find(fragment) != std::string::npos) found.push_back(line);
    }
    return found;
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace

TEST_CASE("slice indices beyond 2^32 are not taken for the slices they wrap around to") {
  RecordingOutbox out;
  Scheduler s(config(), out);
  s.on_ready("w", ready(1), t0);
  const JobRequest request = job(4, 4);
  s.start_job(request, {7, 1}, 10s, t0);
  auto a = out.taken<Assign>("w");
  REQUIRE(a.size() == 1);
  REQUIRE(a[0].slices.size() == 1);
  const std::uint64_t wrapped = (std::uint64_t{1} << 32) + a[0].slices[0].index;

  // A result claiming slice 2^32 + k for a batch of slice k is not the batch's result.
  Result r{a[0].job, a[0].batch, {{wrapped, true, 5, 1, "", ""}}};
  const std::string value = value_of(0);
  std::vector<std::string_view> values{value};
  s.on_result("w", r, values, t0 + 1ms);
  CHECK(s.drops().malformed == 1);
  CHECK(s.slices_done() == 0);

  // A dead worker's record naming slice 2^32 + k counts no crash against slice k: with
  // max_attempts crashes it would fail the job.
  for (unsigned attempt = 0; attempt < 5; ++attempt) {
    Ready next = ready(1, kBuild, 200 + attempt);
    next.predecessor = Predecessor{100 + attempt, 11, 0, true, {7, 1}, wrapped};
    s.on_ready("w" + std::to_string(attempt), next, t0 + 2ms);
  }
  CHECK(s.state() == JobState::running);
  CHECK_FALSE(s.failure().has_value());

  // And the slices still complete.
  for (int round = 0; round < 10 && s.state() == JobState::running; ++round) {
    for (const Sent& sent : out.sent) {
      if (const auto* assign = std::get_if<Assign>(&sent.message)) {
        answer(s, sent.worker, *assign, t0 + 3ms);
      }
    }
    out.sent.clear();
    s.tick(t0 + 4ms);
  }
  CHECK(s.state() == JobState::done);
}

TEST_CASE("the table of workers is capped in entries and in the bytes of their names") {
  CapturedLog log;
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.max_workers = 3;
  c.max_registered_bytes = 64 << 10;
  Scheduler s(c, out);
  for (int i = 0; i < 100; ++i) s.on_ready("w" + std::to_string(i), ready(1), t0);
  CHECK(s.live_workers() == 3);
  // Refused with a reason, logged a few times for a hundred READYs.
  const auto refused = log.lines_with("did not register worker");
  REQUIRE(refused.size() >= 1);
  CHECK(refused.size() <= 10);
  CHECK(refused[0].find("the most it keeps is 3") != std::string::npos);
  // Once one leaves, another may register.
  s.on_bye("w0", "done", t0);
  s.on_ready("late", ready(1), t0);
  CHECK(s.live_workers() == 3);

  // Names: three READYs of 30 KiB of names each do not fit in 64 KiB.
  Scheduler by_bytes(c, out);
  Ready bulky = ready(1);
  for (int i = 0; i < 300; ++i) bulky.sources.push_back(std::string(100, 'a') + std::to_string(i));
  for (int i = 0; i < 3; ++i) by_bytes.on_ready("b" + std::to_string(i), bulky, t0);
  CHECK(by_bytes.live_workers() == 1);
  // A worker registering again replaces its own entry rather than adding one.
  by_bytes.on_ready("b0", bulky, t0);
  CHECK(by_bytes.live_workers() == 1);
}

TEST_CASE("a lost worker's re-queued slices are logged as a count and the first few") {
  CapturedLog log;
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.max_batch = 1000;
  Scheduler s(c, out);
  s.on_ready("first", ready(1), t0);
  const JobRequest request = job(2000, 2000);
  s.start_job(request, {7, 1}, 10s, t0);
  // Cheap slices: the next batches are large.
  answer(s, "first", out.taken<Assign>("first").at(0), t0 + 1ms, 10);
  auto held = out.taken<Assign>("first");
  REQUIRE_FALSE(held.empty());
  std::size_t in_flight = 0;
  for (const Assign& a : held) in_flight += a.slices.size();
  REQUIRE(in_flight > 20);
  s.on_bye("first", "leaving", t0 + 2ms);
  const auto lost = log.lines_with("lost: it is leaving");
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].find("re-queued slices ") != std::string::npos);
  CHECK(lost[0].find(std::to_string(in_flight) + " in all") != std::string::npos);
  CHECK(lost[0].size() < 300);
}

TEST_CASE("a peer that takes slices and leaves, again and again, causes a few log lines") {
  CapturedLog log;
  RecordingOutbox out;
  Scheduler s(config(), out);
  const JobRequest request = job(10, 10);
  s.start_job(request, {7, 1}, 10s, t0);
  constexpr int kRounds = 1000;
  for (int i = 0; i < kRounds; ++i) {
    s.on_ready("hit and run", ready(1), t0);
    REQUIRE(out.taken<Assign>("hit and run").size() == 1);
    s.on_bye("hit and run", "bye", t0);
  }
  const std::size_t lines = log.lines_with("lost: it is leaving").size();
  CHECK(lines >= 1);
  CHECK(lines <= 32 + 10);  // the first 32, then at each doubling
}

TEST_CASE("no batch holds more slices than a worker accepts, whatever max_batch says") {
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.max_batch = 4 * kMaxSlicesPerBatch;
  c.batch_target = 10s;  // a batch may take long: only the caps bound it
  Scheduler s(c, out);
  s.on_ready("w", ready(1), t0);
  const JobRequest request = job(100 * kMaxSlicesPerBatch, 100 * kMaxSlicesPerBatch);
  s.start_job(request, {7, 1}, 10s, t0);
  // Cheap slices (1 ns each): once their cost and weight are known, batches are as large as the
  // caps allow.
  std::size_t largest = 0;
  std::vector<Assign> sent = out.taken<Assign>("w");
  for (int round = 0; round < 4 && !sent.empty(); ++round) {
    for (const Assign& a : sent) {
      CHECK(a.slices.size() <= kMaxSlicesPerBatch);
      largest = std::max(largest, a.slices.size());
      answer(s, "w", a, t0 + 1ms, 1);
    }
    sent = out.taken<Assign>("w");
  }
  CHECK(largest == kMaxSlicesPerBatch);
}

TEST_CASE("slice records: a live snapshot holds the most recently counted, oldest first") {
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.max_batch = 100;
  Scheduler s(c, out);
  s.on_ready("w1", ready(1), t0);
  s.on_ready("w2", ready(1), t0);
  JobRequest request = job(3000, 3000);
  pymar::JobStats wanted;  // the caller asks for the statistics
  request.stats = &wanted;
  s.start_job(request, {7, 1}, 1s, t0, true);
  // Answer batches, the two workers in turn, until 2,500 slices have counted.
  std::vector<std::uint64_t> counted;  // in the order their results counted
  std::uint64_t step = 0;
  while (counted.size() < 2500) {
    for (const std::string worker : {"w1", "w2"}) {
      for (const Assign& a : out.taken<Assign>(worker)) {
        answer(s, worker, a, t0 + std::chrono::microseconds(++step));
        for (const SliceRange& slice : a.slices) counted.push_back(slice.index);
      }
    }
  }
  const pymar::JobStats live = s.snapshot_stats(t0 + 1s, 1024);
  REQUIRE(live.slices.size() == 1024);
  for (std::size_t i = 0; i < live.slices.size(); ++i) {
    const pymar::SliceStats& record = live.slices[i];
    CAPTURE(i);
    CHECK(record.index == counted[counted.size() - 1024 + i]);
    CHECK(record.attempts == 1);
    CHECK(record.worker >= 0);
    CHECK(record.start_ns >= 0);
    CHECK(record.end_ns > record.start_ns);
    if (i > 0) CHECK(record.end_ns >= live.slices[i - 1].end_ns);
  }
  // Once taken, every slice has its record, in slice order; those not yet counted say so.
  const pymar::JobStats taken = s.take_stats(t0 + 1s);
  REQUIRE(taken.slices.size() == 3000);
  std::size_t with_worker = 0;
  for (std::size_t i = 0; i < taken.slices.size(); ++i) {
    CHECK(taken.slices[i].index == i);
    CHECK(taken.slices[i].length == 1);
    if (taken.slices[i].worker >= 0) ++with_worker;
  }
  CHECK(with_worker == counted.size());
}

// Drives one job of 10,007 elements in 1,000 slices (the first 7 one element longer) over
// three workers, of which one leaves with its first batch, and stops with slices not counted.
static pymar::JobStats job_with_a_rerun(JobRequest& request, std::size_t& reruns) {
  RecordingOutbox out;
  SchedulerConfig c = config();
  c.max_batch = 64;
  Scheduler s(c, out);
  for (const char* worker : {"w1", "w2", "leaving"}) s.on_ready(worker, ready(1), t0);
  s.start_job(request, {7, 1}, 1s, t0, true);
  s.on_bye("leaving", "SIGTERM", t0 + 1ms);
  std::uint64_t step = 0;
  for (std::size_t counted = 0; counted < 800;) {
    for (const std::string worker : {"w1", "w2"}) {
      for (const Assign& a : out.taken<Assign>(worker)) {
        answer(s, worker, a, t0 + std::chrono::microseconds(++step));
        counted += a.slices.size();
      }
    }
  }
  reruns = s.reruns();
  return s.take_stats(t0 + 1s);
}

TEST_CASE("slice records as runs (the --stats file's own) say what the records say") {
  JobRequest with_records = job(10'007, 1000);
  pymar::JobStats wanted;
  with_records.stats = &wanted;
  std::size_t reruns = 0;
  const pymar::JobStats records = job_with_a_rerun(with_records, reruns);
  REQUIRE(records.slices.size() == 1000);
  CHECK(reruns > 0);

  JobRequest with_runs = job(10'007, 1000);
  pymar::JobStats file_only;
  std::vector<SliceRun> runs;
  with_runs.stats = &file_only;
  with_runs.slice_runs = &runs;
  const pymar::JobStats from_runs = job_with_a_rerun(with_runs, reruns);
  CHECK(from_runs.slices.empty());
  // A run per batch, give or take: the re-run slices, the longer first 7 and the uncounted ones
  // each start one.
  CHECK(runs.size() < 40);
  std::size_t next = 0;
  for (const SliceRun& run : runs) {
    REQUIRE(run.count > 0);
    for (std::uint64_t k = 0; k < run.count; ++k, ++next) {
      REQUIRE(next < records.slices.size());
      const pymar::SliceStats& r = records.slices[next];
      CAPTURE(next);
      CHECK(run.index + k == r.index);
      CHECK(run.offset + k * run.length == r.offset);
      CHECK(run.length == r.length);
      CHECK(run.worker == r.worker);
      CHECK(run.attempts == r.attempts);
      CHECK(run.start_ns == r.start_ns);
      CHECK(run.end_ns == r.end_ns);
    }
  }
  CHECK(next == records.slices.size());
  // Neighbours that are alike are one run, never two.
  for (std::size_t i = 1; i < runs.size(); ++i) {
    const SliceRun& a = runs[i - 1];
    const SliceRun& b = runs[i];
    CAPTURE(i);
    CHECK_FALSE((a.length == b.length && a.worker == b.worker && a.attempts == b.attempts &&
                 a.start_ns == b.start_ns && a.end_ns == b.end_ns));
  }
}
