// The workloads both benchmark binaries run: the integration example and trivial one-element
// slices. Each binary registers the ones it uses.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ranges>

#include <pymar/pymar.hpp>

namespace bench {
constexpr double a = 1.0;
constexpr double b = 10.0;
constexpr double dx = 1e-6;
}  // namespace bench

// --- integration, as in examples/integration.cpp ------------------------------------------------

struct Points : pymar::DataSource {
  static std::size_t full_length() {
    return static_cast<std::size_t>(std::llround((bench::b - bench::a) / bench::dx));
  }

  auto items() const {
    return indices() |
           std::views::transform([](std::size_t i) { return bench::a + double(i) * bench::dx; });
  }
};

struct Integral : pymar::Producer<Integral> {
  static constexpr std::size_t WORKERS_NUMBER = 4;

  static auto map_fn(auto&& points) {
    return points | std::views::transform([](double x) { return std::exp(x) * bench::dx; });
  }

  static double reduce_fn(auto&& values) { return pymar::sum(values); }
};

// --- trivial slices: one index each, summed; the exact answer shows that none is lost ------------

struct Indices : pymar::DataSource {
  struct Params {
    std::uint64_t count = 0;
    MSGPACK_DEFINE(count)
  };
  explicit Indices(const Params&) {}
  static std::size_t full_length(const Params& p) { return p.count; }
  auto items() const { return indices(); }
};

struct Trivial : pymar::Producer<Trivial> {
  static constexpr std::size_t WORKERS_NUMBER = std::size_t{1} << 24;  // one slice per element

  static auto map_fn(auto&& indices) {
    return indices | std::views::transform([](std::size_t i) { return std::uint64_t(i); });
  }

  static std::uint64_t reduce_fn(auto&& values) { return pymar::sum<std::uint64_t>(values); }
};

// The same, allowed to compute a job too small for a round trip in the producer: its data are
// made from the parameters, the same everywhere.
struct TrivialHere : pymar::Producer<TrivialHere> {
  static constexpr std::size_t WORKERS_NUMBER = Trivial::WORKERS_NUMBER;
  static constexpr bool COMPUTE_SMALL_JOBS_HERE = true;
  static auto map_fn(auto&& indices) { return Trivial::map_fn(indices); }
  static std::uint64_t reduce_fn(auto&& values) { return Trivial::reduce_fn(values); }
};
