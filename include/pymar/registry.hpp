// The static registry: every producer and source a task binary was built with, by name.
#pragma once

#include "pymar/detail/config.hpp"

#include <string>
#include <string_view>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <vector>

#include "pymar/data_source.hpp"
#include "pymar/detail/job.hpp"

namespace pymar {

template <class Derived>
struct Producer;

namespace detail {

enum class EntryKind { producer, source };

/// A static object whose construction records one REGISTER_* use. Errors (a name registered
/// twice) are recorded, not thrown, and reported by pymar::main before anything runs.
struct Registration {
  Registration(EntryKind kind, std::string_view name, std::type_index type, const char* file,
               int line) noexcept;
};

/// Records the kernel for a (producer, source) pair; called from KernelFor<P, S>'s static member.
bool register_kernel(std::type_index producer, std::type_index source, Kernel kernel) noexcept;

/// Records an in-memory source type (named after its element type) the first time it is used.
bool register_memory_source(std::type_index source, std::type_index element) noexcept;

/// The registered name of a producer or source type; throws pymar::Error naming the macro to use
/// when the type was never registered.
std::string registered_name(EntryKind kind, std::type_index type);

/// A readable name for a type (demangled).
std::string type_name(const std::type_info& type);

}  // namespace detail
}  // namespace pymar

#define PYMAR_DETAIL_CAT2(a, b) a##b
#define PYMAR_DETAIL_CAT(a, b) PYMAR_DETAIL_CAT2(a, b)

/// Registers a producer class (derived from pymar::Producer<Class>) under the name `Class`, as
/// written without spaces. Use at namespace scope, once per class, in a source file of the task
/// binary. Variadic so that a template with several arguments needs no parentheses:
/// REGISTER_PRODUCER(Histogram<double, 64>).
#define PYMAR_REGISTER_PRODUCER(...)                                                             \
  static_assert(std::is_base_of_v<::pymar::Producer<__VA_ARGS__>, __VA_ARGS__>,                  \
                #__VA_ARGS__ " must derive from pymar::Producer<" #__VA_ARGS__ ">");             \
  static const ::pymar::detail::Registration PYMAR_DETAIL_CAT(pymar_registration_, __COUNTER__){ \
      ::pymar::detail::EntryKind::producer, #__VA_ARGS__, typeid(__VA_ARGS__), __FILE__,         \
      __LINE__};                                                                                 \
  static_assert(true, "")

/// Registers a data source class (derived from pymar::DataSource) under the name `Class`, as
/// written without spaces; variadic like PYMAR_REGISTER_PRODUCER.
#define PYMAR_REGISTER_DATASOURCE(...)                                                            \
  static_assert(::pymar::detail::DataSourceType<__VA_ARGS__>, #__VA_ARGS__                        \
                " must derive from pymar::DataSource and have items() or begin()/end()");         \
  static const ::pymar::detail::Registration PYMAR_DETAIL_CAT(pymar_registration_, __COUNTER__){  \
      ::pymar::detail::EntryKind::source, #__VA_ARGS__, typeid(__VA_ARGS__), __FILE__, __LINE__}; \
  static_assert(true, "")

#ifndef PYMAR_NO_SHORT_MACROS
#define REGISTER_PRODUCER(...) PYMAR_REGISTER_PRODUCER(__VA_ARGS__)
#define REGISTER_DATASOURCE(...) PYMAR_REGISTER_DATASOURCE(__VA_ARGS__)
#endif
