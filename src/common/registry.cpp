#include "common/registry.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <typeindex>
#include <unordered_map>

#include <fmt/format.h>

#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

struct Entry {
  std::string name;
  std::type_index type;
  std::string where;  // file:line of the registration, for error messages
};

struct KernelKey {
  std::type_index producer;
  std::type_index source;
  bool operator==(const KernelKey&) const = default;
};

struct KernelKeyHash {
  std::size_t operator()(const KernelKey& key) const noexcept {
    return key.producer.hash_code() * 31 + key.source.hash_code();
  }
};

// Filled during static initialisation from many translation units, read afterwards; the mutex
// covers the rare case of registrations from dynamically loaded code.
struct Registry {
  std::mutex mutex;
  std::map<std::string, Entry> producers;  // by name
  std::map<std::string, Entry> sources;
  std::unordered_map<std::type_index, std::string> producer_by_type;
  std::unordered_map<std::type_index, std::string> source_by_type;
  std::unordered_map<KernelKey, Kernel, KernelKeyHash> kernels;
  std::vector<std::string> errors;
};

// A function-local static: constructed on first use, whatever the order of static initialisation.
Registry& registry() {
  static Registry instance;
  return instance;
}

std::string normalised(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != ' ') out += c;
  }
  if (out.starts_with("::")) out.erase(0, 2);
  return out;
}

}  // namespace

namespace {

/// The end of the template argument list that starts just after `open` ('<'), or npos.
std::size_t closing_bracket(std::string_view text, std::size_t open) {
  int depth = 1;
  for (std::size_t i = open + 1; i < text.size(); ++i) {
    if (text[i] == '<') ++depth;
    if (text[i] == '>' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return readable_type_name(status == 0 && demangled ? demangled.get() : mangled);
}

}  // namespace

std::string readable_type_name(std::string_view demangled) {
  std::string out(demangled);
  auto replace_all = [&out](std::string_view from, std::string_view to) {
    for (auto at = out.find(from); at != std::string::npos; at = out.find(from, at + to.size())) {
      out.replace(at, from.size(), to);
    }
  };
  // The standard library's inline namespaces (libstdc++'s __cxx11, libc++'s __1).
  replace_all("std::__cxx11::", "std::");
  replace_all("std::__1::", "std::");
  replace_all("std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
              "std::string");
  replace_all("std::basic_string_view<char, std::char_traits<char> >", "std::string_view");
  // Default arguments: ", std::allocator<T> >" and ", std::less<K>, ..." spell what the user
  // never wrote.
  for (const std::string_view argument : {", std::allocator<", ", std::less<", ", std::hash<",
                                          ", std::equal_to<", ", std::default_delete<"}) {
    for (auto at = out.find(argument); at != std::string::npos; at = out.find(argument, at)) {
      const std::size_t end = closing_bracket(out, at + argument.size() - 1);
      if (end == std::string::npos) break;
      out.erase(at, end + 1 - at);
    }
  }
  replace_all(" >", ">");
  return out;
}

std::string type_name(const std::type_info& type) {
  return demangle(type.name());
}

Registration::Registration(EntryKind kind, std::string_view name, std::type_index type,
                           const char* file, int line) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto& by_name = kind == EntryKind::producer ? r.producers : r.sources;
    auto& by_type = kind == EntryKind::producer ? r.producer_by_type : r.source_by_type;
    const char* what = kind == EntryKind::producer ? "producer" : "data source";
    Entry entry{normalised(name), type, fmt::format("{}:{}", file, line)};
    if (auto it = by_name.find(entry.name); it != by_name.end()) {
      r.errors.push_back(fmt::format("{} '{}' is registered twice: at {} and at {}", what,
                                     entry.name, it->second.where, entry.where));
      return;
    }
    if (auto it = by_type.find(type); it != by_type.end()) {
      r.errors.push_back(fmt::format("{} type registered twice, as '{}' and as '{}' (at {})", what,
                                     it->second, entry.name, entry.where));
      return;
    }
    by_type.emplace(type, entry.name);
    by_name.emplace(entry.name, std::move(entry));
  } catch (...) {
    // Out of memory during static initialisation: nothing sensible to report it with.
  }
}

bool register_kernel(std::type_index producer, std::type_index source, Kernel kernel) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.kernels.emplace(KernelKey{producer, source}, kernel);
    return true;
  } catch (...) {
    return false;
  }
}

bool register_memory_source(std::type_index source, std::type_index element) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    if (r.source_by_type.contains(source)) return true;
    // Named after the element type; identical in every process running this binary.
    std::string name = "memory<" + demangle(element.name()) + ">";
    r.source_by_type.emplace(source, name);
    r.sources.emplace(name, Entry{name, source, "in-memory data"});
    return true;
  } catch (...) {
    return false;
  }
}

std::string registered_name(EntryKind kind, std::type_index type) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  const auto& by_type = kind == EntryKind::producer ? r.producer_by_type : r.source_by_type;
  if (auto it = by_type.find(type); it != by_type.end()) return it->second;
  const std::string name = demangle(type.name());
  if (kind == EntryKind::producer) {
    throw Error(
        fmt::format("producer {0} is not registered: add PYMAR_REGISTER_PRODUCER({0}); "
                    "at namespace scope in the task's sources",
                    name));
  }
  throw Error(
      fmt::format("data source {0} is not registered: add PYMAR_REGISTER_DATASOURCE({0}); "
                  "at namespace scope in the task's sources",
                  name));
}

std::vector<std::string> registration_errors() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.errors;
}

std::vector<std::string> producer_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, entry] : r.producers) names.push_back(name);
  return names;
}

std::vector<std::string> source_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, entry] : r.sources) names.push_back(name);
  return names;
}

KernelLookup find_kernel(const std::string& producer, const std::string& source) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto p = r.producers.find(producer);
  if (p == r.producers.end()) {
    return {nullptr, fmt::format("unknown producer '{}'", producer)};
  }
  auto s = r.sources.find(source);
  if (s == r.sources.end()) {
    return {nullptr, fmt::format("unknown data source '{}'", source)};
  }
  auto k = r.kernels.find(KernelKey{p->second.type, s->second.type});
  if (k == r.kernels.end()) {
    return {nullptr, fmt::format("producer '{}' is never mapped over source '{}' in this binary",
                                 producer, source)};
  }
  return {k->second, {}};
}

}  // namespace pymar::detail
