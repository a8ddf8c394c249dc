// What the HTTP endpoints serve, made from the producer's Observation: Prometheus text for
// /metrics, and a bounded JSON state for the dashboard's page. No HTTP here, so that the
// formats are tested without a server (and built without cpp-httplib).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "producer/observation.hpp"

namespace pymar::detail {

/// Prometheus text exposition format 0.0.4: counters over the producer's life, gauges of now.
std::string prometheus_text(const Observation& observation);

/// `value` as a Prometheus label value, without the quotes: \ " and newline escaped.
std::string prometheus_label(std::string_view value);

/// The dashboard's JSON (GET /api/state): the running job, or else the last one, with at most
/// kStateWorkers workers, the kStateSlices most recent slices and the kStateFaults most recent
/// faults, so that one answer stays under ~100 KiB whatever peers do.
std::string dashboard_state_json(const Observation& observation);
constexpr std::size_t kStateWorkers = 128;
constexpr std::size_t kStateSlices = 1024;
constexpr std::size_t kStateFaults = 50;

/// The dashboard page itself: HTML with its CSS and script inline (no network needed).
std::string_view dashboard_page();

}  // namespace pymar::detail
