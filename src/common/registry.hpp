// The registry as the library sees it: names, kernels, and the errors found while registering.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pymar/detail/job.hpp"
#include "pymar/registry.hpp"

namespace pymar::detail {

/// A demangled type name as the user wrote it: `std::string`, `std::vector<int>`, not the
/// library's spelling with inline namespaces and default arguments.
std::string readable_type_name(std::string_view demangled);

/// Problems found during static registration (a name registered twice), one line each.
std::vector<std::string> registration_errors();

/// Names of the registered producers and sources (sources include in-memory ones), sorted.
std::vector<std::string> producer_names();
std::vector<std::string> source_names();

/// The kernel for a (producer, source) pair of names, or an explanation of why there is none.
struct KernelLookup {
  Kernel kernel = nullptr;
  std::string error;
};
KernelLookup find_kernel(const std::string& producer, const std::string& source);

}  // namespace pymar::detail
