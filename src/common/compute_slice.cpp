#include "common/compute_slice.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace pymar::detail {
namespace {

// The kernel's struct sched_attr (include/uapi/linux/sched/types.h), which glibc 2.36 does not
// declare.
struct SchedAttr {
  std::uint32_t size;
  std::uint32_t sched_policy;
  std::uint64_t sched_flags;
  std::int32_t sched_nice;
  std::uint32_t sched_priority;
  std::uint64_t sched_runtime;  // for SCHED_OTHER since 6.12: the task's time slice
  std::uint64_t sched_deadline;
  std::uint64_t sched_period;
};

}  // namespace

std::uint64_t time_slice_of(int tid) {
#ifdef SYS_sched_getattr
  SchedAttr attr{};
  if (::syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0U) != 0) return 0;
  return attr.sched_runtime;
#else
  return 0;
#endif
}

bool request_long_time_slice() {
#ifdef SYS_sched_setattr
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  const int policy = ::sched_getscheduler(tid);
  if (policy != SCHED_OTHER && policy != SCHED_BATCH) return false;  // real-time or idle: as set
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));  // per thread on Linux
  if (nice == -1 && errno != 0) return false;
  SchedAttr attr{};
  attr.size = sizeof attr;
  attr.sched_policy = static_cast<std::uint32_t>(policy);
  attr.sched_nice = nice;
  attr.sched_runtime = kComputeSliceNs;
  return ::syscall(SYS_sched_setattr, tid, &attr, 0U) == 0;
#else
  return false;
#endif
}

}  // namespace pymar::detail
