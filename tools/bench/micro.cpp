// In-process pieces of the framework with Google Benchmark: where a slice's time goes when the
// sockets are taken away. Links the library's internals (src/).
//
//   wire/*        encoding and decoding ASSIGN and RESULT headers, per message
//   scheduler/*   the producer's scheduler over a whole job of trivial slices, with a recording
//                 outbox: its CPU cost per slice; "+wire" adds encoding and decoding both ways
//   kernel/*      the integration kernel a worker runs (ranges, registry, encode) against the
//                 plain loop over the same 2,250,000 points (one slice of the example)
//   cluster/*     `map` from this process over 2 forked worker processes (dispatcher, ZeroMQ over
//                 TCP loopback): latency of 4 trivial slices, throughput of many, and with one
//                 slice per batch the messages per second one producer sustains
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <deque>
#include <memory>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <pymar/pymar.hpp>

#include "workloads.hpp"

#include "common/build_id.hpp"
#include "producer/dispatcher.hpp"
#include "producer/runtime.hpp"
#include "producer/scheduler.hpp"
#include "wire/protocol.hpp"
#include "worker/worker.hpp"

namespace {

using bench::a;
using bench::dx;
constexpr std::size_t kSlicePoints = 2'250'000;  // 9,000,000 points in 4 slices

}  // namespace

REGISTER_DATASOURCE(Points);
REGISTER_PRODUCER(Integral);
REGISTER_DATASOURCE(Indices);
REGISTER_PRODUCER(Trivial);

namespace {

using namespace pymar;
using namespace pymar::detail;

wire::Assign assign_of(std::size_t slices) {
  wire::Assign m{
      {0x1234'5678'9abc'def0, 7}, 42, "Trivial", "Indices", encode(Indices::Params{1000}),
      PayloadKind::none,          {}};
  for (std::size_t i = 0; i < slices; ++i) m.slices.push_back({i + 500'000, i + 500'000, 1});
  return m;
}

wire::Result result_of(std::size_t slices) {
  wire::Result m{{0x1234'5678'9abc'def0, 7}, 42, {}};
  for (std::size_t i = 0; i < slices; ++i)
    m.outcomes.push_back({i + 500'000, true, 850, 1, "", ""});
  return m;
}

void encode_assign(benchmark::State& state) {
  const wire::Assign m = assign_of(static_cast<std::size_t>(state.range(0)));
  std::string out;
  for (auto _ : state) {
    out.clear();
    wire::encode(m, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["bytes"] = static_cast<double>(out.size());
}
BENCHMARK(encode_assign)->Name("wire/encode_assign")->Arg(1)->Arg(1024);

void decode_assign(benchmark::State& state) {
  const std::string header = wire::encode(assign_of(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(wire::decode(header, 0));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(decode_assign)->Name("wire/decode_assign")->Arg(1)->Arg(1024);

void encode_result(benchmark::State& state) {
  const wire::Result m = result_of(static_cast<std::size_t>(state.range(0)));
  std::string out;
  for (auto _ : state) {
    out.clear();
    wire::encode(m, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["bytes"] = static_cast<double>(out.size());
}
BENCHMARK(encode_result)->Name("wire/encode_result")->Arg(1)->Arg(1024);

void decode_result(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::string header = wire::encode(result_of(n));
  for (auto _ : state) benchmark::DoNotOptimize(wire::decode(header, n));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(decode_result)->Name("wire/decode_result")->Arg(1)->Arg(1024);

// --- the scheduler over a whole job ------------------------------------------------------------

class QueueOutbox : public Outbox {
 public:
  void send(const std::string&, const wire::Message&) override { ++other; }
  std::size_t send_assign(const std::string& worker, const wire::Assign& assign,
                          const JobRequest&) override {
    assigns.emplace_back(worker, assign);
    return 0;  // bytes: nothing travels here
  }
  std::deque<std::pair<std::string, wire::Assign>> assigns;
  std::size_t other = 0;
};

wire::Ready ready_worker() {
  wire::Ready r;
  r.build = "bench";
  r.task = "bench_micro";
  r.host = "localhost";
  r.pid = 1;
  r.credit = 2;
  r.producers = {"Trivial"};
  r.sources = {"Indices"};
  return r;
}

// Runs one job of `slices` trivial slices over 2 workers that answer every batch at once (850 ns
// of compute per slice), FIFO. With `wire`, every ASSIGN and RESULT is encoded and decoded, as
// between a real producer and worker; with `recorded`, each slice is recorded and the job's
// statistics taken, as for map_with_stats, --stats and the observers.
/// How a job's slices are recorded: not at all, every slice's record (map_with_stats), or runs
/// of alike slices (the --stats file alone).
enum class Recorded { none, records, runs };

void scheduler_job(benchmark::State& state, bool wire, Recorded recorded) {
  const auto slices = static_cast<std::size_t>(state.range(0));
  SchedulerConfig config;
  config.max_batch = static_cast<std::size_t>(state.range(1));
  config.build = "bench";
  config.session = 1;
  config.speculate = false;
  QueueOutbox outbox;
  Scheduler scheduler(config, outbox);
  const Clock::time_point now = Clock::now();
  scheduler.on_ready("w1", ready_worker(), now);
  scheduler.on_ready("w2", ready_worker(), now);
  JobRequest request;
  request.producer = "Trivial";
  request.source = "Indices";
  request.params = encode(Indices::Params{slices});
  request.length = slices;
  request.parts = slices;
  request.check_partial = [](std::string_view bytes) { (void)decode<std::uint64_t>(bytes); };
  pymar::JobStats wanted;
  std::vector<SliceRun> runs;
  if (recorded != Recorded::none) request.stats = &wanted;
  if (recorded == Recorded::runs) request.slice_runs = &runs;
  const std::string value = encode(std::uint64_t{7});
  std::vector<std::string_view> values;
  std::string header;
  std::uint64_t seq = 0;
  std::size_t messages = 0;
  for (auto _ : state) {
    scheduler.start_job(request, {1, ++seq}, std::chrono::seconds(1), now,
                        recorded != Recorded::none);
    while (scheduler.state() == JobState::running && !outbox.assigns.empty()) {
      auto [worker, assign] = std::move(outbox.assigns.front());
      outbox.assigns.pop_front();
      if (wire) {
        header.clear();
        wire::encode(assign, header);
        assign = std::get<wire::Assign>(wire::decode(header, 0));
      }
      wire::Result result{assign.job, assign.batch, {}};
      values.clear();
      for (const wire::SliceRange& s : assign.slices) {
        result.outcomes.push_back({s.index, true, 850, value.size(), "", ""});
        values.push_back(value);
      }
      if (wire) {
        header.clear();
        wire::encode(result, header);
        result = std::get<wire::Result>(wire::decode(header, values.size()));
      }
      scheduler.on_result(worker, result, values, now);
      messages += 2;
    }
    if (scheduler.state() != JobState::done) state.SkipWithError("the job did not finish");
    benchmark::DoNotOptimize(scheduler.take_partials());
    if (recorded != Recorded::none) benchmark::DoNotOptimize(scheduler.take_stats(now));
    scheduler.finish_job();
    outbox.assigns.clear();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["messages/job"] =
      static_cast<double>(messages) / static_cast<double>(state.iterations());
}
BENCHMARK_CAPTURE(scheduler_job, alone, false, Recorded::none)
    ->Name("scheduler/job")
    ->ArgNames({"slices", "max_batch"})
    ->Args({100'000, 1024})
    ->Args({10'000, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(scheduler_job, with_wire, true, Recorded::none)
    ->Name("scheduler/job+wire")
    ->ArgNames({"slices", "max_batch"})
    ->Args({100'000, 1024})
    ->Args({10'000, 1024})
    ->Args({10'000, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(scheduler_job, with_wire_recorded, true, Recorded::records)
    ->Name("scheduler/job+wire+slices recorded")
    ->ArgNames({"slices", "max_batch"})
    ->Args({10'000, 1024})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(scheduler_job, with_wire_runs, true, Recorded::runs)
    ->Name("scheduler/job+wire+slice runs recorded")
    ->ArgNames({"slices", "max_batch"})
    ->Args({10'000, 1024})
    ->Unit(benchmark::kMillisecond);

// --- the integration kernel against the plain loop ------------------------------------------

void kernel_pymar(benchmark::State& state) {
  SliceInput input{kSlicePoints, kSlicePoints, {}, {}};  // the second slice
  std::string out;
  for (auto _ : state) {
    out.clear();
    KernelFor<Integral, Points>::run(input, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kSlicePoints));
}
BENCHMARK(kernel_pymar)->Name("kernel/integration_slice_pymar")->Unit(benchmark::kMillisecond);

void kernel_loop(benchmark::State& state) {
  volatile std::size_t first = kSlicePoints;
  for (auto _ : state) {
    const std::size_t begin = first;
    double sum = 0;
    for (std::size_t i = begin; i < begin + kSlicePoints; ++i) {
      sum += std::exp(a + double(i) * dx) * dx;
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kSlicePoints));
}
BENCHMARK(kernel_loop)->Name("kernel/integration_slice_loop")->Unit(benchmark::kMillisecond);

// --- map over worker processes --------------------------------------------------------------

/// A dispatcher in this process and worker processes forked from it (running the library's
/// worker loop, not a task's command line), with the largest batch configurable. Processes, not
/// threads: workers in one process share a routing id (see doc/performance.md).
class Cluster {
 public:
  Cluster(unsigned workers, std::size_t max_batch) {
    const std::uint16_t port = free_port();
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    for (unsigned i = 0; i < workers; ++i) {
      const pid_t pid = fork();
      if (pid == 0) {
        WorkerOptions worker;
        worker.endpoint = "tcp://127.0.0.1:" + std::to_string(port);
        worker.stop_fd = stop_fd_;
        std::_Exit(run_worker(worker));
      }
      children_.push_back(pid);
    }
    DispatcherOptions options;
    options.bind = "tcp://127.0.0.1:" + std::to_string(port);
    options.grace = std::chrono::seconds(30);
    options.scheduler.build = build_fingerprint();
    options.scheduler.max_batch = max_batch;
    runtime_ = std::make_unique<Runtime>(options);  // map runs on it while it lives
  }

  ~Cluster() {
    const std::uint64_t stop = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &stop, sizeof stop);  // stays readable
    for (pid_t pid : children_) waitpid(pid, nullptr, 0);
    runtime_.reset();
    ::close(stop_fd_);
  }

  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

 private:
  static std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
    ::close(fd);
    return ntohs(address.sin_port);
  }

  std::unique_ptr<Runtime> runtime_;
  int stop_fd_ = -1;
  std::vector<pid_t> children_;
};

// state.range(0) trivial slices per job over state.range(2) worker processes; state.range(1) the
// largest batch (1: every slice is an ASSIGN and a RESULT of its own, so items/s is messages/s).
void cluster_map(benchmark::State& state) {
  const auto slices = static_cast<std::uint64_t>(state.range(0));
  Cluster cluster(static_cast<unsigned>(state.range(2)), static_cast<std::size_t>(state.range(1)));
  const std::uint64_t expected = slices * (slices - 1) / 2;
  for (int i = 0; i < 3; ++i) (void)Trivial().map(factory<Indices>({slices}));  // workers join
  for (auto _ : state) {
    if (Trivial().map(factory<Indices>({slices})) != expected) state.SkipWithError("wrong answer");
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(cluster_map)
    ->Name("cluster/map_trivial")
    ->ArgNames({"slices", "max_batch", "workers"})
    ->Args({4, 1024, 2})
    ->Args({100'000, 1024, 2})
    ->Args({20'000, 1, 2})
    ->Args({20'000, 1, 8})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // the dispatcher logs every job at info
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
