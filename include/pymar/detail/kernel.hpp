// Kernels: the compiled pairing of one producer with one source. Each `map<P>(factory<S>)` in a
// task instantiates KernelFor<P, S>, whose static member records it, so every worker built from
// the same binary can run exactly the pairs the job uses, selected by name, and nothing else.
#pragma once

#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pymar/codec.hpp"
#include "pymar/data_source.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/detail/raw_payload.hpp"
#include "pymar/error.hpp"
#include "pymar/registry.hpp"

namespace pymar::detail {

/// The source type of in-memory data of element type T.
template <class T>
struct MemorySource {
  using element_type = T;
  static constexpr bool raw = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>;
};

template <class S>
struct IsMemorySource : std::false_type {};
template <class T>
struct IsMemorySource<MemorySource<T>> : std::true_type {};

/// Builds a registered source for one slice: from its decoded Params when it has them.
template <class S>
S make_source(const SliceInput& input) {
  if constexpr (SourceWithParams<S>) {
    auto params = decode<typename S::Params>(input.params);
    S source(std::move(params));
    source.offset = input.offset;
    source.limit = input.limit;
    return source;
  } else {
    S source{};
    source.offset = input.offset;
    source.limit = input.limit;
    return source;
  }
}

/// The elements a registered source's slice hands to map_fn.
template <class S>
using ElementsOf = decltype(elements_of(std::declval<S&>()));

template <class P, class Elements>
using ValueOf = std::remove_cvref_t<decltype(P::reduce_fn(P::map_fn(std::declval<Elements&>())))>;

/// The value type of producer P over source S: what reduce_fn returns, on a worker and on the
/// producer alike.
template <class P, class S>
struct ValueFor {
  using type = ValueOf<P, ElementsOf<S>>;
};
template <class P, class T>
struct ValueFor<P, MemorySource<T>> {
  using type = std::conditional_t<MemorySource<T>::raw, ValueOf<P, std::span<const T>>,
                                  ValueOf<P, const std::vector<T>>>;
};

template <class P, class Elements>
void map_and_reduce(Elements&& elements, std::string& out) {
  using Value = ValueOf<P, std::remove_reference_t<Elements>>;
  static_assert(
      std::is_convertible_v<decltype(P::reduce_fn(std::declval<std::vector<Value>&>())), Value>,
      "reduce_fn must accept both map_fn's values and a std::vector of its own results, "
      "and return the same type for both");
  decltype(auto) mapped = P::map_fn(elements);
  const Value partial = P::reduce_fn(mapped);
  const std::size_t start = out.size();
  encode(partial, out);
  // The producer refuses a partial that would cost too much to decode (see DecodeLimits): say
  // so here, where it is made, rather than have it computed again and again.
  check_decode_cost(std::string_view(out).substr(start));
}

template <class T>
std::span<const T> raw_elements(const SliceInput& input, std::vector<T>& realigned) {
  check_raw_payload(input.payload.size(), sizeof(T), input.limit);
  const void* data = input.payload.data();
  if (reinterpret_cast<std::uintptr_t>(data) % alignof(T) == 0) {
    return {static_cast<const T*>(data), input.limit};
  }
  // ZeroMQ's receive buffers do not promise alignment (a slice may sit at any offset of a larger
  // read buffer): copy a misaligned slice rather than read it in place.
  realigned.resize(input.limit);
  if (input.limit != 0) std::memcpy(realigned.data(), data, input.payload.size());
  return {realigned.data(), realigned.size()};
}

template <class P, class S>
struct KernelFor {
  static void run(const SliceInput& input, std::string& out) {
    if constexpr (IsMemorySource<S>::value) {
      using T = typename S::element_type;
      if constexpr (S::raw) {
        std::vector<T> realigned;
        std::span<const T> elements = raw_elements<T>(input, realigned);
        map_and_reduce<P>(elements, out);
      } else {
        // The default limits, already bounded by the payload's size: elements may hold arrays
        // of their own (pairs, structs, vectors), which may be longer than the slice.
        auto elements = decode<std::vector<T>>(input.payload);
        if (elements.size() != input.limit) {
          throw DecodeError("slice payload holds " + std::to_string(elements.size()) +
                            " elements, expected " + std::to_string(input.limit));
        }
        const std::vector<T>& view = elements;
        map_and_reduce<P>(view, out);
      }
    } else {
      S source = make_source<S>(input);
      map_and_reduce<P>(elements_of(source), out);
    }
  }

  static bool record() noexcept {
    if constexpr (IsMemorySource<S>::value) {
      register_memory_source(typeid(S), typeid(typename S::element_type));
    }
    return register_kernel(typeid(P), typeid(S), &run);
  }

  /// Initialised before main: makes the pair known to workers of this binary.
  static inline const bool registered = record();
};

}  // namespace pymar::detail
