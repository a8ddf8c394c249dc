#include "common/time_slice.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

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
  std::uint64_t sched_runtime;  // for SCHED_OTHER and SCHED_BATCH since 6.12: the time slice
  std::uint64_t sched_deadline;
  std::uint64_t sched_period;
};

int own_tid() {
  return static_cast<int>(::syscall(SYS_gettid));
}

}  // namespace

bool request_time_slice(std::uint64_t ns) {
#ifdef SYS_sched_setattr
  const int tid = own_tid();
  const int policy = ::sched_getscheduler(tid);
  if (policy != SCHED_OTHER && policy != SCHED_BATCH) return false;
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));  // per thread on Linux
  if (nice == -1 && errno != 0) return false;
  SchedAttr attr{};
  attr.size = sizeof attr;
  attr.sched_policy = static_cast<std::uint32_t>(policy);
  attr.sched_nice = nice;
  attr.sched_runtime = ns;
  return ::syscall(SYS_sched_setattr, tid, &attr, 0U) == 0;
#else
  (void)ns;
  return false;
#endif
}

std::uint64_t time_slice_of(int tid) {
#ifdef SYS_sched_getattr
  SchedAttr attr{};
  if (::syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0U) != 0) return 0;
  return attr.sched_runtime;
#else
  (void)tid;
  return 0;
#endif
}

MessagingThreadsStart::MessagingThreadsStart()
    : previous_(time_slice_of(own_tid())), changed_(request_time_slice(kMessagingSliceNs)) {}

MessagingThreadsStart::~MessagingThreadsStart() {
  if (!changed_) return;
  // The kernel reports a default slice as a number, and setting that number would pin it:
  // the default is asked for first, and the number only when it differs.
  request_time_slice(0);
  if (time_slice_of(own_tid()) != previous_) request_time_slice(previous_);
}

}  // namespace pymar::detail
