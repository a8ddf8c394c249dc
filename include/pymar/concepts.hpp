// The contract of the template boundary: what `Producer::map` accepts, named so that a mistake
// is reported by what it breaks. The value type is derived and checked in detail/kernel.hpp.
#pragma once

#include "pymar/detail/config.hpp"

#include <concepts>
#include <cstddef>
#include <ranges>
#include <string>
#include <type_traits>

#include "pymar/codec.hpp"
#include "pymar/detail/job.hpp"

namespace pymar {

/// What `map` is given: pymar::factory<Source>(...) or pymar::factory(data) make one.
template <class F>
concept Factory = requires(const F& factory) {
  typename F::source_type;
  { factory.full_length() } -> std::convertible_to<std::size_t>;
  { factory.encoded_params() } -> std::convertible_to<std::string>;
  { factory.memory() } -> std::same_as<detail::MemoryData>;
};

/// A producer P whose map_fn takes a slice's elements, given as an lvalue of type Elements.
template <class P, class Elements>
concept ProducerFor = requires(Elements& elements) {
  P::map_fn(elements);
};

/// Set to true for a class of your own that you give a hand-written msgpack adaptor rather than
/// MSGPACK_DEFINE(...), so that `Encodable` accepts it as a value.
template <class T>
struct has_msgpack_adaptor : std::false_type {};

namespace detail {

// What MSGPACK_DEFINE(...) gives a class.
template <class T>
concept HasMsgpackMembers = requires(const T& value, msgpack::packer<StringSink>& packer) {
  value.msgpack_pack(packer);
};

// Class templates are std containers, tuples and optionals, which msgpack-c adapts, or a user's
// own with an adaptor: their arguments are not checked here.
template <class T>
struct IsTemplateInstance : std::false_type {};
template <template <class...> class Template, class... Args>
struct IsTemplateInstance<Template<Args...>> : std::true_type {};
// std::array<T, N> and other templates with values among their arguments.
template <template <class, auto, auto...> class Template, class Arg, auto Value, auto... Values>
struct IsTemplateInstance<Template<Arg, Value, Values...>> : std::true_type {};

}  // namespace detail

/// A value type that can travel between processes with msgpack: not a view or a pointer (what
/// they refer to would not travel), and, for a class, one that msgpack-c adapts (a template such
/// as std::vector, std::map, std::optional), one with MSGPACK_DEFINE(...), or one marked with
/// has_msgpack_adaptor. Numbers and other non-class types are taken to have an adaptor.
template <class T>
concept Encodable = !std::ranges::view<T> && !std::is_pointer_v<T> && !std::is_reference_v<T> &&
                    (!std::is_class_v<T> || detail::IsTemplateInstance<T>::value ||
                     detail::HasMsgpackMembers<T> || has_msgpack_adaptor<T>::value);

}  // namespace pymar
