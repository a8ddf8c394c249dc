// Who this process is: build fingerprint, task name, host.
#pragma once

#include <string>

namespace pymar::detail {

/// Identifies the build of this task binary: the GNU build-id of the executable (a hash the
/// linker computes over its contents) with the library version, or a hash of the executable file
/// when it has no build-id. Two processes may share work only when their fingerprints match.
/// The environment variable PYMAR_TEST_BUILD_ID replaces it; only tests use that.
const std::string& build_fingerprint();

/// The executable's file name, for messages ("integration").
const std::string& task_name();

/// This machine's host name.
const std::string& host_name();

}  // namespace pymar::detail
