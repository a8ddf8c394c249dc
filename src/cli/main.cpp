// pymar::main: the command line on top, wiring the roles together. A task binary runs as the
// producer (the default) or as a worker pool; nothing here knows about slices.
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include "cli/status.hpp"
#include "common/build_id.hpp"
#include "common/crash_record.hpp"
#include "common/endpoint_record.hpp"
#include "common/exit_at_once.hpp"
#include "common/keys.hpp"
#include "common/log.hpp"
#include "common/registry.hpp"
#include "common/unique_fd.hpp"
#include "observe/endpoints.hpp"
#include "pool/supervisor.hpp"
#include "producer/runtime.hpp"
#include "pymar/error.hpp"
#include "pymar/main.hpp"
#include "pymar/version.hpp"
#include "worker/worker.hpp"

namespace pymar::detail {
namespace {

constexpr unsigned kDefaultPort = 7627;

struct Settings {
  bool produce = false;
  bool worker = false;
  bool list = false;
  bool status = false;       // ask a running producer what it does
  bool json = false;         // ... and print the answer as JSON
  bool pool_status = false;  // ... of this user's worker pools on this machine (--pool)
  std::vector<long> pool;    // ... of the one whose supervisor has this pid
  bool local = false;
  std::string queue;
  std::optional<unsigned> workers;
  std::vector<std::string> producers;
  std::vector<std::string> sources;
  double grace = 2.0;
  double heartbeat = 1.0;
  double liveness = 5.0;
  unsigned max_attempts = 3;
  unsigned retries = 0;
  unsigned credit = 2;
  bool no_speculation = false;
  bool progress = false;     // the live progress line even when stderr is not a terminal
  bool no_progress = false;  // no progress line or progress logs at all
  int verbose = 0;           // -v: 1, -vv: 2
  bool quiet = false;
  std::string stats;         // producer: write each job's statistics here as JSON
  std::string keygen;        // make a key pair in this folder
  std::string key_name;      // ... named this
  std::string secret_key;    // this process's secret certificate
  std::string allow;         // producer: workers' public certificates (file or folder)
  std::string producer_key;  // worker: the producer's certificate
  bool insecure = false;     // no keys on an address other than loopback
  std::string metrics;       // producer: serve Prometheus metrics on [ADDR:]PORT
  std::string dashboard;     // producer: serve the dashboard on [ADDR:]PORT
  Arguments job_arguments;   // after --
};

struct Address {
  std::string host;
  unsigned port = kDefaultPort;
};

/// Splits HOST[:PORT] (either part may be empty). Throws CLI::ValidationError.
Address parse_queue(const std::string& text, const std::string& default_host) {
  Address a{default_host, kDefaultPort};
  if (text.empty()) return a;
  const auto colon = text.rfind(':');
  const std::string host = text.substr(0, colon);
  if (!host.empty()) a.host = host;
  if (colon != std::string::npos) {
    const std::string port = text.substr(colon + 1);
    try {
      std::size_t used = 0;
      const unsigned long value = std::stoul(port, &used);
      if (used != port.size() || value > 65535) throw std::invalid_argument(port);
      a.port = static_cast<unsigned>(value);
    } catch (const std::exception&) {
      throw CLI::ValidationError("--queue", "port '" + port + "' is not a number from 0 to 65535");
    }
  }
  return a;
}

/// Addresses only this machine can reach. Anything else, `*` included, may be reached from a
/// network.
bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "lo" || host == "::1" || host == "[::1]") return true;
  in_addr address{};
  return inet_pton(AF_INET, host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

/// Closed by default: a producer or worker that would use a network other than loopback needs
/// keys, or an explicit --insecure (then a warning at every start). Returns an exit status, or 0.
int check_exposure(const Settings& s, const Address& address, bool keys, const char* verb) {
  if (keys || is_loopback(address.host)) return 0;
  if (!s.insecure) {
    fmt::print(stderr,
               "{0}: error: {1} {2}:{3} needs keys: make them with '{0} --keygen DIR', then give "
               "--secret-key and {4} (README: \"Running on many machines\"); or add --insecure "
               "on a network where every host is trusted\n",
               task_name(), verb, address.host, address.port,
               s.worker ? "--producer-key" : "--allow");
    return 2;
  }
  spdlog::warn("--insecure: {} {}:{} without keys; any peer that reaches it can {}", verb,
               address.host, address.port,
               s.worker
                   ? "act as the producer and choose what files and databases these workers open"
                   : "join, and the results it returns are trusted");
  return 0;
}

/// Reads the keys the flags name, or none. Throws pymar::Error saying what is wrong.
std::optional<Keys> load_keys(const Settings& s) {
  if (s.secret_key.empty()) return std::nullopt;
  Keys keys;
  keys.own = read_certificate(s.secret_key, true);
  if (s.worker || s.status) {
    keys.producer = read_certificate(s.producer_key, false).public_key;
  } else {
    keys.allowed = read_allowed_keys(s.allow);
  }
  return keys;
}

/// --metrics or --dashboard's address. HTTP has no keys: beyond loopback only with --insecure.
/// Throws CLI::ValidationError.
std::optional<HttpAddress> http_flag(const Settings& s, const std::string& text, const char* flag,
                                     bool warn = true) {
  if (text.empty()) return std::nullopt;
  if (const std::string unavailable = http_unavailable(); !unavailable.empty()) {
    throw CLI::ValidationError(flag, unavailable);
  }
  HttpAddress address;
  try {
    address = parse_http_address(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
  if (!is_loopback(address.host)) {
    if (!s.insecure) {
      throw CLI::ValidationError(
          flag, fmt::format("{} is beyond loopback, and HTTP has no keys: anyone who reaches it "
                            "reads the job's progress, hosts and pids; add --insecure to serve "
                            "it there anyway (or reach it through an SSH tunnel)",
                            text));
    }
    if (warn)
      spdlog::warn(
          "--insecure: {} on {}:{} without any authentication; anyone who reaches it reads "
          "the job's progress, worker hosts and pids",
          flag, address.host, address.port);
  }
  return address;
}

int ask_status(const Settings& s) {
  if (s.pool_status) {
    std::optional<pid_t> pid;
    // A bare --pool reads as 0 (CLI11 fills in the default): every pool.
    if (!s.pool.empty() && s.pool.front() > 0) pid = static_cast<pid_t>(s.pool.front());
    return query_pools(pid, s.json);
  }
  StatusRequest request;
  const Address address = parse_queue(s.queue, "127.0.0.1");
  request.endpoint = fmt::format("tcp://{}:{}", address.host, address.port);
  request.json = s.json;
  try {
    request.keys = load_keys(s);
  } catch (const Error& e) {
    fmt::print(stderr, "{}: error: {}\n", task_name(), e.what());
    return 2;
  }
  return query_status(request);
}

int make_keys(const Settings& s) {
  try {
    const std::string name = s.key_name.empty() ? host_name() : s.key_name;
    const KeyPair keys = make_key_pair();
    const auto [public_path, secret_path] = write_key_pair(s.keygen, name, keys);
    fmt::print(
        "public key {}\n  {}  give it to the peers that let this one in (a producer's --allow "
        "folder, or a worker's --producer-key)\n  {}  the secret key: keep it here "
        "(--secret-key)\n",
        keys.public_key, public_path, secret_path);
    return 0;
  } catch (const Error& e) {
    fmt::print(stderr, "{}: error: {}\n", task_name(), e.what());
    return 1;
  }
}

/// PYMAR_NO_DOORBELL=1 turns doorbells off (workers retry every 10 to 100 ms, producers ring no
/// bell): for measuring what they bring, not for use.
bool doorbells_enabled() {
  const char* off = std::getenv("PYMAR_NO_DOORBELL");
  return off == nullptr || *off == '\0' || std::string_view(off) == "0";
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

int list_registry() {
  fmt::print("producers:\n");
  for (const std::string& name : producer_names()) fmt::print("  {}\n", name);
  fmt::print("sources:\n");
  for (const std::string& name : source_names()) fmt::print("  {}\n", name);
  return 0;
}

int usage_error(const std::string& message) {
  fmt::print(stderr, "{}: error: {} (see --help)\n", task_name(), message);
  return 2;
}

int check_names(const std::vector<std::string>& wanted, const std::vector<std::string>& known,
                const char* what) {
  for (const std::string& name : wanted) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return usage_error(
          fmt::format("unknown {} '{}' (this binary has: {})", what, name, fmt::join(known, ", ")));
    }
  }
  return 0;
}

/// -1 with --quiet (which wins), else the number of -v.
int log_verbosity(const Settings& s) {
  return s.quiet ? -1 : s.verbose;
}

// --- worker pool -----------------------------------------------------------------------------

/// What a worker tells the producer about the process it replaces, from what its pool saw.
wire::Predecessor predecessor_of(const ProcessEnd& end) {
  wire::Predecessor p;
  p.pid = end.pid;
  p.signal = end.signal;
  p.exit_code = end.exit_code;
  p.in_slice = end.in_slice;
  p.job = {end.session, end.seq};
  p.slice = end.slice;
  return p;
}

/// `task --worker`; or, with `endpoint_fd`, the pool of `--produce -w N`, forked before its
/// producer binds: it starts its workers at once, and they and it read the producer's endpoint
/// from that pipe (common/endpoint_record.hpp) when it comes.
int run_worker_pool(const Settings& s, int endpoint_fd = -1) {
  init_logging("pool", log_verbosity(s));
  if (int status = check_names(s.producers, producer_names(), "producer")) return status;
  if (int status = check_names(s.sources, source_names(), "data source")) return status;
  const Address address = parse_queue(s.queue, "127.0.0.1");
  std::optional<Keys> keys;
  try {
    keys = load_keys(s);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  if (int status = check_exposure(s, address, keys.has_value(), "serving the producer at"))
    return status;
  WorkerOptions worker;
  worker.keys = std::move(keys);
  // Without an endpoint yet (the pool of --produce -w N), the workers read it when it comes.
  worker.endpoint =
      endpoint_fd < 0 ? fmt::format("tcp://{}:{}", address.host, address.port) : std::string();
  worker.endpoint_fd = endpoint_fd;
  worker.heartbeat = to_ms(s.heartbeat);
  worker.liveness = to_ms(s.liveness);
  worker.credit = s.credit;
  worker.only_producers = s.producers;
  worker.only_sources = s.sources;
  worker.supervised = true;
  worker.doorbell = doorbells_enabled();
  const unsigned processes = s.workers.value_or(std::max(1u, std::thread::hardware_concurrency()));
  auto announce = [&] {
    spdlog::info("{} worker process(es) of {} (build {}) serving the producer at {}{}", processes,
                 task_name(), build_fingerprint(), worker.endpoint,
                 worker.keys ? fmt::format(" with key {}", worker.keys->own.public_key) : "");
  };
  PoolOptions pool;
  pool.processes = processes;
  pool.producer = worker.endpoint;
  if (endpoint_fd < 0) {
    announce();
  } else {
    pool.await_producer = [&]() -> std::optional<std::string> {
      std::optional<std::string> endpoint = read_endpoint_record(endpoint_fd);
      ::close(endpoint_fd);
      if (!endpoint) return std::nullopt;
      // Workers started from now on (restarts) are given it.
      worker.endpoint = *endpoint;
      worker.endpoint_fd = -1;
      announce();
      return endpoint;
    };
  }
  pool.run_worker = [&](const WorkerSlot& slot) {
    // Return freed slices to the system at once: glibc would otherwise keep the largest one
    // around (its mmap threshold grows with each large free), doubling a worker's footprint.
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    init_logging("worker", log_verbosity(s));
    WorkerOptions options = worker;
    if (slot.predecessor) options.predecessor = predecessor_of(*slot.predecessor);
    options.crash_record = slot.crash_record;
    options.stop_fd = slot.stop_fd;
    return run_worker(options);
  };
  return run_pool(pool);
}

// --- producer --------------------------------------------------------------------------------

/// The worker pool of `--produce -w N`. It is forked at the producer's start, while the process
/// still has one thread, and runs the same code as `task --worker` from there: no exec, so no
/// second start-up of the task (loading its libraries again took longer than a small job's
/// compute). Its workers start at once too, while the producer starts, and wait for the
/// endpoint the producer binds.
class EmbeddedPool {
 public:
  /// `host`: where its workers find the producer (loopback when it listens on every interface).
  EmbeddedPool(const Settings& s, unsigned processes, std::string host)
      : host_(std::move(host)), readers_(processes + 1) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0)
      throw Error(fmt::format("cannot start the worker pool: {}", std::strerror(errno)));
    UniqueFd read_end(ends[0]);
    endpoint_fd_.reset(ends[1]);
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0)
      throw Error(fmt::format("cannot start the worker pool: {}", std::strerror(errno)));
    if (pid_ == 0) {
      endpoint_fd_.reset();
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // and its workers die with it
      if (getppid() != parent) exit_at_once(0);
      const int status = serve(s, processes, host_, read_end.release());
      std::fflush(nullptr);
      // Not back through the caller's main: it already runs in the producer.
      exit_at_once(status);
    }
  }

  /// Tells the pool and its workers the port the producer listens on.
  void start(std::uint16_t port) {
    if (!write_endpoint_records(endpoint_fd_.get(), fmt::format("tcp://{}:{}", host_, port),
                                readers_)) {
      spdlog::warn("could not tell the worker pool the producer's endpoint: {}",
                   std::strerror(errno));
    }
    endpoint_fd_.reset();
  }

  /// Asks the pool to stop, without waiting: the producer closes its own side meanwhile.
  void stop() {
    endpoint_fd_.reset();  // a pool still waiting for an endpoint ends, and its workers
    if (!stopped_) kill(pid_, SIGTERM);
    stopped_ = true;
  }

  ~EmbeddedPool() {
    stop();
    int status = 0;
    waitpid(pid_, &status, 0);
  }

  EmbeddedPool(const EmbeddedPool&) = delete;
  EmbeddedPool& operator=(const EmbeddedPool&) = delete;

 private:
  /// In the forked process: serves as `task --worker -q HOST -w N` would, with the producer's
  /// options, the endpoint read from `endpoint_fd`.
  static int serve(const Settings& s, unsigned processes, const std::string& host,
                   int endpoint_fd) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    Settings pool;
    pool.worker = true;
    pool.queue = host;  // for the exposure check: the endpoint itself comes through the pipe
    pool.workers = processes;
    pool.heartbeat = s.heartbeat;
    pool.liveness = s.liveness;
    pool.credit = s.credit;
    pool.verbose = s.verbose;
    pool.quiet = s.verbose == 0;
    pool.insecure = s.insecure;
    // The producer lets its own key in: its embedded pool needs no key of its own.
    pool.secret_key = s.secret_key;
    if (!s.secret_key.empty()) pool.producer_key = s.secret_key;
    return run_worker_pool(pool, endpoint_fd);
  }

  pid_t pid_ = -1;
  std::string host_;
  std::size_t readers_;   // the pool and each of its workers read one endpoint record
  UniqueFd endpoint_fd_;  // write end of the pipe they read it from
  bool stopped_ = false;
};

int run_job_safely(const std::function<int(const Arguments&)>& job, const Arguments& arguments) {
  try {
    return job(arguments);
  } catch (const Interrupted&) {
    return kExitInterrupted;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("the job threw {}: {}", type_name(typeid(e)), e.what());
    return 1;
  }
}

int run_producer(const Settings& s, const std::function<int(const Arguments&)>& job) {
  init_logging("producer", log_verbosity(s));
  // Forked before this process starts any thread (the statistics writer, the dispatcher's).
  std::optional<EmbeddedPool> pool;
  if (!s.local && s.workers.value_or(0) > 0) {
    const Address address = parse_queue(s.queue, "127.0.0.1");
    const bool any = address.host == "*" || address.host == "0.0.0.0";
    try {
      pool.emplace(s, *s.workers, any ? "127.0.0.1" : address.host);
    } catch (const Error& e) {
      spdlog::error("{}", e.what());
      return 1;
    }
  }
  write_stats_to(s.stats.empty() ? std::nullopt : std::optional<std::string>(s.stats));
  // Every job's statistics are in the file before the producer exits, however it ends.
  struct StatsWritten {
    ~StatsWritten() { write_stats_to(std::nullopt); }
  } stats_written;
  if (s.local) {
    const Runtime local(false);  // says so once here, not for every job
    spdlog::info("--local: computing on this machine's {} cores",
                 std::thread::hardware_concurrency());
    return run_job_safely(job, s.job_arguments);
  }

  // Signals are read by the dispatcher's thread, so every thread must block them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  const UniqueFd stop_fd(signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!stop_fd) {
    // Without the signalfd nobody would read them: let them end the process as usual.
    spdlog::warn("signalfd: {}; Ctrl-C will end the producer without telling its workers",
                 std::strerror(errno));
    pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
  }

  const Address address = parse_queue(s.queue, "127.0.0.1");
  DispatcherOptions options;
  try {
    options.keys = load_keys(s);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  if (int status = check_exposure(s, address, options.keys.has_value(), "listening on"))
    return status;
  options.bind = fmt::format("tcp://{}:{}", address.host,
                             address.port == 0 ? std::string("*") : std::to_string(address.port));
  options.grace = to_ms(s.grace);
  options.interrupt_fd = stop_fd.get();
  // Nothing to stop, or asked twice: end at once, with the status the README gives for Ctrl-C.
  options.on_idle_interrupt = [] { exit_at_once(kExitInterrupted); };
  options.on_second_interrupt = [] { exit_at_once(kExitInterrupted); };
  options.scheduler.heartbeat = to_ms(s.heartbeat);
  if (s.no_progress) {
    options.progress = Progress::off;
  } else if (s.progress || (isatty(STDERR_FILENO) && !s.quiet)) {
    options.progress = Progress::live;
  }
  options.scheduler.liveness = to_ms(s.liveness);
  options.scheduler.max_attempts = s.max_attempts;
  options.scheduler.error_retries = s.retries;
  options.scheduler.speculate = !s.no_speculation;
  options.scheduler.build = build_fingerprint();
  options.ring_doorbells = doorbells_enabled();

  int status = 0;
  {
    // `map` in the job runs on this runtime until it ends with this scope, its port closed.
    std::optional<Runtime> runtime;
    try {
      runtime.emplace(options);
    } catch (const Error& e) {
      spdlog::error("{}", e.what());
      return 1;
    }
    Dispatcher* dispatcher = runtime->dispatcher();
    spdlog::info("listening on {} (build {}){}", dispatcher->endpoint(), build_fingerprint(),
                 options.keys
                     ? fmt::format(", with key {} and {} allowed worker key(s)",
                                   options.keys->own.public_key, options.keys->allowed.size())
                     : "");
    if (pool) pool->start(dispatcher->port());
    std::optional<ObservationEndpoints> watched;  // before the job, stopped before the dispatcher
    if (!s.metrics.empty() || !s.dashboard.empty()) {
      try {
        watched.emplace(
            http_flag(s, s.metrics, "--metrics"), http_flag(s, s.dashboard, "--dashboard"),
            [&d = *dispatcher] { return d.observe_fresh(std::chrono::milliseconds(500)); });
      } catch (const Error& e) {
        spdlog::error("{}", e.what());
        return 1;
      }
    }
    status = run_job_safely(job, s.job_arguments);
    // The pool stops while the runtime closes; the pool's destructor waits for it.
    if (pool) pool->stop();
  }
  return status;
}

}  // namespace

int run_main(int argc, char** argv, std::function<int(const Arguments&)> job,
             bool takes_arguments) {
  const std::vector<std::string> errors = registration_errors();
  if (!errors.empty()) {
    for (const std::string& e : errors) fmt::print(stderr, "{}: error: {}\n", task_name(), e);
    return 1;
  }

  Settings s;
  CLI::App app(fmt::format(
      "{0}: a Pymar task. Run it as the producer (the default), which runs the job and spreads "
      "its slices over workers, or as a pool of worker processes serving a producer.",
      task_name()));
  app.name(task_name());
  app.footer(fmt::format(
      "Examples:\n"
      "  {0} --produce -w 4           run the job here with 4 worker processes of its own\n"
      "  {0} --worker -q HOST -w 8    serve the producer on HOST with 8 worker processes\n"
      "  {0} --produce                run the job on the workers that serve this machine\n"
      "  {0} --local                  run the job on this machine's cores, no network\n"
      "  {0} --keygen keys --key-name producer   make a key pair (keys/producer.key, "
      "keys/producer.key_secret)\n"
      "  {0} --status -q HOST         show what the producer on HOST is doing (--json for "
      "scripts)\n"
      "With no worker within --grace seconds the producer computes locally, with a warning.\n"
      "The producer listens on loopback unless -q names another address, which needs keys\n"
      "(--secret-key and --allow; workers: --secret-key and --producer-key) or --insecure.\n"
      "Exit status: 0 done, 1 the job failed, 2 usage error, 3 refused by the producer (keys),\n"
      "130 interrupted.\n",
      task_name()));
  app.set_version_flag("--version",
                       fmt::format("{} (pymar {}, protocol {}, build {})", task_name(), version(),
                                   protocol_version(), build_fingerprint()));
  auto* produce = app.add_flag("--produce", s.produce, "run the job (the default)");
  auto* worker = app.add_flag("--worker", s.worker, "serve as a pool of worker processes");
  auto* list = app.add_flag("--list", s.list, "print the registered producers and sources");
  produce->excludes(worker)->excludes(list);
  worker->excludes(list);
  auto* status = app.add_flag("--status", s.status,
                              "ask the producer at -q who is connected, what runs and how far it "
                              "is (with keys: --secret-key and --producer-key, as a worker)");
  status->excludes(produce)->excludes(worker)->excludes(list);
  app.add_flag("--json", s.json, "with --status: print the answer as JSON")->needs(status);
  auto* pool_status =
      app.add_option("--pool", s.pool,
                     "with --status: ask this user's worker pool whose supervisor is PID on this "
                     "machine (without PID: every pool of this user here) what its workers do")
          ->expected(0, 1)
          ->needs(status);
  app.add_option("-q,--queue", s.queue,
                 fmt::format("producer address HOST[:PORT]; the producer listens on it (default "
                             "127.0.0.1:{0}, * for every interface, port 0 picks a free one), "
                             "workers connect to it (default 127.0.0.1:{0})",
                             kDefaultPort))
      ->envname("PYMAR_QUEUE")
      ->type_name("HOST[:PORT]");
  app.add_option("-w,--workers", s.workers,
                 "worker processes: of the pool (default: one per core), or started by the "
                 "producer for its run (default: none)")
      ->check(CLI::Range(1u, 4096u))
      ->type_name("N");
  app.add_option("-p,--producer", s.producers, "worker: serve only this producer (repeatable)")
      ->type_name("NAME");
  app.add_option("-s,--source", s.sources, "worker: serve only this data source (repeatable)")
      ->type_name("NAME");
  app.add_flag("--local", s.local, "producer: compute on this machine only, no network")
      ->excludes(worker);
  app.add_option("--grace", s.grace,
                 "producer: seconds to wait for a worker before computing locally")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0))
      ->type_name("SECONDS");
  app.add_option("--heartbeat", s.heartbeat, "seconds between heartbeats when otherwise silent")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 3600.0))
      ->type_name("SECONDS");
  app.add_option("--liveness", s.liveness,
                 "seconds of silence after which a peer is given up on (at least 2 heartbeats)")
      ->capture_default_str()
      ->check(CLI::Range(0.02, 86400.0))
      ->type_name("SECONDS");
  app.add_option("--max-attempts", s.max_attempts,
                 "producer: a slice whose worker dies this many times fails the job")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u))
      ->type_name("N");
  app.add_option("--retries", s.retries,
                 "producer: times to retry a slice whose user code threw before failing the job")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u))
      ->type_name("N");
  app.add_option("--credit", s.credit, "worker: batches of slices queued per worker process")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u))
      ->type_name("N");
  app.add_flag("--no-speculation", s.no_speculation,
               "producer: never run a slice a second time on an idle worker (a copy of a late "
               "slice, or of one a faster worker would end sooner)");
  if (takes_arguments) {
    app.add_option("arguments", s.job_arguments, "the job's own arguments, after --")
        ->type_name("ARGS");
  }
  auto* keygen = app.add_option("--keygen", s.keygen,
                                "make a CurveZMQ key pair in DIR (NAME.key and NAME.key_secret)")
                     ->type_name("DIR");
  keygen->excludes(produce)->excludes(worker)->excludes(list)->excludes(status);
  app.add_option("--key-name", s.key_name,
                 "with --keygen: the key pair's name (default: host name)")
      ->type_name("NAME")
      ->needs(keygen);
  app.add_option("--secret-key", s.secret_key,
                 "this process's secret key file (NAME.key_secret): use CurveZMQ keys")
      ->envname("PYMAR_SECRET_KEY")
      ->type_name("FILE");
  app.add_option("--allow", s.allow,
                 "producer: let in only workers whose public key file (NAME.key) is this file or "
                 "in this folder")
      ->envname("PYMAR_ALLOW")
      ->type_name("PATH");
  app.add_option("--producer-key", s.producer_key,
                 "worker: the producer's public key file; talk to no other")
      ->envname("PYMAR_PRODUCER_KEY")
      ->type_name("FILE");
  app.add_flag("--insecure", s.insecure,
               "use an address other than loopback without keys (a network where every host is "
               "trusted)")
      ->envname("PYMAR_INSECURE");
  auto* progress = app.add_flag(
      "--progress", s.progress,
      "producer: show a live progress line, even when stderr is not a terminal (the default on "
      "a terminal; elsewhere a progress log line every 5 s)");
  app.add_flag("--no-progress", s.no_progress, "producer: no progress line or progress logs")
      ->excludes(progress);
  for (auto [flag, target, what] :
       {std::tuple{"--metrics", &s.metrics, "Prometheus metrics on http://ADDR:PORT/metrics"},
        std::tuple{"--dashboard", &s.dashboard, "a live dashboard page on http://ADDR:PORT/"}}) {
    app.add_option(flag, *target,
                   fmt::format("producer: serve {} (ADDR: 127.0.0.1, beyond loopback only with "
                               "--insecure; port 0 picks a free one, logged)",
                               what))
        ->type_name("[ADDR:]PORT")
        ->excludes(worker)
        ->excludes(status);
  }
  app.add_flag("-v,--verbose", s.verbose,
               "log every slice, worker and batch (to stderr); -vv: every message too");
  app.add_flag("--quiet", s.quiet, "log only warnings and errors");
  app.add_option("--stats", s.stats,
                 "producer: write each job's statistics to FILE as JSON when it ends "
                 "(doc/stats.schema.json)")
      ->type_name("FILE")
      ->envname("PYMAR_STATS");

  try {
    app.parse(argc, argv);
    s.pool_status = pool_status->count() > 0;
    if (s.liveness < 2 * s.heartbeat) {
      throw CLI::ValidationError("--liveness", "must be at least twice --heartbeat");
    }
    if (!s.worker && (!s.producers.empty() || !s.sources.empty())) {
      throw CLI::ValidationError("-p/-s", "only apply with --worker");
    }
    parse_queue(s.queue, "");
    if (s.local && !(s.metrics.empty() && s.dashboard.empty())) {
      throw CLI::ValidationError("--metrics/--dashboard", "watch workers; --local has none");
    }
    http_flag(s, s.metrics, "--metrics", false);  // a usage error now; warnings at the start
    http_flag(s, s.dashboard, "--dashboard", false);
    // The other role's key option is ignored: one shell may export PYMAR_ALLOW and
    // PYMAR_PRODUCER_KEY for both roles.
    const std::string& peers = s.worker || s.status ? s.producer_key : s.allow;
    if (s.secret_key.empty() != peers.empty() && s.keygen.empty() && !s.list && !s.local) {
      throw CLI::ValidationError(
          s.worker || s.status ? "--secret-key/--producer-key" : "--secret-key/--allow",
          "keys need both: this process's secret key and its peers' public keys");
    }
  } catch (const CLI::CallForHelp&) {
    fmt::print("{}", app.help());
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    fmt::print("{}", app.help());
    return 0;
  } catch (const CLI::CallForVersion& e) {
    fmt::print("{}\n", e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }

  if (s.list) return list_registry();
  if (s.status) return ask_status(s);
  if (!s.keygen.empty()) return make_keys(s);
  if (s.worker) return run_worker_pool(s);
  return run_producer(s, job);
}

}  // namespace pymar::detail
