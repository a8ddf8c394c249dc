// run_job: where `map` enters the library. Runs the job on the workers through the dispatcher,
// and on this machine's cores when there are none, when asked to, or when a timeout says so.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/log.hpp"
#include "common/slicing.hpp"
#include "producer/runtime.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/error.hpp"
#include "pymar/registry.hpp"
#include "wire/protocol.hpp"

namespace pymar::detail {
namespace {

std::atomic<Dispatcher*> g_dispatcher{nullptr};
std::atomic<bool> g_warn_when_local{true};

}  // namespace

void use_dispatcher(Dispatcher* dispatcher, bool warn_when_local) {
  g_dispatcher = dispatcher;
  g_warn_when_local = warn_when_local;
}

std::atomic<bool>& producer_interrupted() {
  static std::atomic<bool> flag{false};
  return flag;
}

void compute_locally(const JobRequest& request, const std::vector<std::size_t>& slices,
                     Partials& partials) {
  if (slices.empty()) return;
  const std::vector<Part> parts = split(request.length, request.parts);
  const std::size_t threads =
      std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), slices.size());
  std::vector<std::string> results(slices.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex failure_mutex;
  std::optional<SliceError::Details> failure;

  auto work = [&] {
    std::string encoded_slice;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t i = next.fetch_add(1);
      if (i >= slices.size()) return;
      if (producer_interrupted().load()) {
        stop = true;
        return;
      }
      const Part part = parts[slices[i]];
      SliceInput input{part.offset, part.limit, request.params, {}};
      if (request.memory.kind == PayloadKind::raw) {
        input.payload = request.memory.raw_slice(part.offset, part.limit);
      } else if (request.memory.kind == PayloadKind::msgpack) {
        encoded_slice.clear();
        request.memory.encode_slice(part.offset, part.limit, encoded_slice);
        input.payload = encoded_slice;
      }
      try {
        request.kernel(input, results[i]);
      } catch (const std::exception& e) {
        std::lock_guard lock(failure_mutex);
        if (!failure) {
          failure = SliceError::Details{slices[i], part.offset,          part.limit, "",
                                        getpid(),  type_name(typeid(e)), e.what(),   1};
        }
        stop = true;
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) {
          failure = SliceError::Details{slices[i],
                                        part.offset,
                                        part.limit,
                                        "",
                                        getpid(),
                                        "unknown exception",
                                        "a non-standard exception",
                                        1};
        }
        stop = true;
      }
    }
  };
  std::vector<std::jthread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();  // joins
  if (failure) throw SliceError(*failure);
  if (producer_interrupted().load()) throw Interrupted();
  for (std::size_t i = 0; i < slices.size(); ++i) partials.set(slices[i], results[i]);
}

Partials run_job(const JobRequest& request) {
  const std::size_t slice_count = std::min(request.parts, request.length);
  if (request.params.size() > wire::kMaxParamsBytes) {
    throw Error(
        fmt::format("the parameters of source {} encode to {} bytes, over the {} KiB "
                    "they may take: pass what is large through the data itself",
                    request.source, request.params.size(), wire::kMaxParamsBytes >> 10));
  }
  auto all_locally = [&] {
    Partials partials(slice_count);
    std::vector<std::size_t> all(slice_count);
    for (std::size_t i = 0; i < slice_count; ++i) all[i] = i;
    compute_locally(request, all, partials);
    return partials;
  };

  Dispatcher* dispatcher = g_dispatcher.load();
  if (dispatcher == nullptr) {
    if (g_warn_when_local) {
      spdlog::warn("no worker queue in use: computing {} over {} locally on {} cores",
                   request.producer, request.source, std::thread::hardware_concurrency());
    }
    return all_locally();
  }

  JobOutcome outcome = dispatcher->run(request);
  switch (outcome.end) {
    case JobEnd::done:
      return std::move(outcome.partials);
    case JobEnd::failed:
      throw SliceError(*outcome.failure);
    case JobEnd::interrupted:
      throw Interrupted();
    case JobEnd::broken:
      throw Error("the producer's I/O thread stopped: " + outcome.error);
    case JobEnd::no_workers:
      spdlog::warn("no worker serving {} over {} at {}: computing {} slice(s) locally on {} cores",
                   request.producer, request.source, dispatcher->endpoint(), outcome.missing.size(),
                   std::thread::hardware_concurrency());
      compute_locally(request, outcome.missing, outcome.partials);
      return std::move(outcome.partials);
    case JobEnd::timed_out:
      if (request.options.on_timeout == OnTimeout::fail) {
        throw TimeoutError(slice_count - outcome.missing.size(), slice_count, outcome.seconds);
      }
      spdlog::warn("map timed out after {:.3f} s: computing the {} missing slice(s) locally",
                   outcome.seconds, outcome.missing.size());
      compute_locally(request, outcome.missing, outcome.partials);
      return std::move(outcome.partials);
  }
  throw Error("unreachable");
}

}  // namespace pymar::detail
