// Factories: what `Producer::map` is given to know where a job's elements come from.
#pragma once

#include "pymar/detail/config.hpp"

#include <cstddef>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pymar/codec.hpp"
#include "pymar/data_source.hpp"
#include "pymar/detail/job.hpp"
#include "pymar/detail/kernel.hpp"

namespace pymar {

/// A registered source type S and its parameters: only offsets and parameters travel; each worker
/// builds S for its own slice.
template <class S>
class SourceFactory {
 public:
  using source_type = S;

 private:
  struct Empty {};
  using Params =
      std::conditional_t<detail::SourceWithParams<S>, typename detail::ParamsOf<S>::type, Empty>;

 public:
  SourceFactory() = default;
  explicit SourceFactory(Params params) : params_(prepared(std::move(params))) {}

  std::size_t full_length() const {
    if constexpr (detail::SourceWithParams<S>) {
      return detail::full_length_of<S>(&params_);
    } else {
      return detail::full_length_of<S, void>(nullptr);
    }
  }

  std::string encoded_params() const {
    if constexpr (detail::SourceWithParams<S>) {
      return encode(params_);
    } else {
      return {};
    }
  }

  detail::MemoryData memory() const { return {}; }

 private:
  // S::prepare, when S has it, runs once here on the producer, so that what every slice needs
  // (a row count, a key range) is worked out once and travels with the parameters.
  static Params prepared(Params params) {
    if constexpr (requires { S::prepare(std::move(params)); }) {
      return S::prepare(std::move(params));
    } else {
      return params;
    }
  }

  [[no_unique_address]] Params params_{};
};

/// Elements already in the producer's memory: each worker receives only its own slice. Trivially
/// copyable elements travel as raw bytes straight from this memory, without a copy; others are
/// encoded with msgpack. Holds a view (of an lvalue, which must outlive `map`) or owns the data
/// (when given an rvalue).
template <class T>
class MemoryFactory {
 public:
  using source_type = detail::MemorySource<T>;

  explicit MemoryFactory(std::span<const T> view) : view_(view) {}
  explicit MemoryFactory(std::vector<T>&& owned)
      : owned_(std::make_shared<const std::vector<T>>(std::move(owned))), view_(*owned_) {}

  std::size_t full_length() const { return view_.size(); }
  std::string encoded_params() const { return {}; }

  detail::MemoryData memory() const {
    detail::MemoryData data;
    if constexpr (source_type::raw) {
      data.kind = detail::PayloadKind::raw;
      data.base = reinterpret_cast<const std::byte*>(view_.data());
      data.element_size = sizeof(T);
    } else {
      data.kind = detail::PayloadKind::msgpack;
      data.encode_slice = [view = view_](std::size_t offset, std::size_t limit, std::string& out) {
        detail::StringSink sink{out};
        msgpack::packer<detail::StringSink> packer(sink);
        packer.pack_array(static_cast<std::uint32_t>(limit));
        for (const T& element : view.subspan(offset, limit)) packer.pack(element);
      };
    }
    return data;
  }

 private:
  std::shared_ptr<const std::vector<T>> owned_;
  std::span<const T> view_;
};

/// A factory for registered source S without parameters.
template <detail::DataSourceType S>
SourceFactory<S> factory() {
  return {};
}

/// A factory for registered source S configured with `params` (its `Params` type).
template <detail::DataSourceType S>
requires detail::SourceWithParams<S> SourceFactory<S> factory(typename S::Params params) {
  return SourceFactory<S>(std::move(params));
}

/// A factory over elements in memory: a std::vector, std::array, std::span or any contiguous range.
/// An lvalue is viewed (it must outlive `map`); a std::vector rvalue is moved in and owned.
template <std::ranges::contiguous_range R>
requires std::ranges::sized_range<R>
auto factory(R&& data) {
  using T = std::remove_cv_t<std::ranges::range_value_t<R>>;
  if constexpr (std::is_same_v<std::remove_cvref_t<R>, std::vector<T>> &&
                !std::is_lvalue_reference_v<R>) {
    return MemoryFactory<T>(std::move(data));
  } else {
    static_assert(std::is_lvalue_reference_v<R> || std::ranges::borrowed_range<R>,
                  "pass in-memory data as an lvalue (viewed) or a std::vector rvalue (moved in)");
    return MemoryFactory<T>(std::span<const T>(std::ranges::data(data), std::ranges::size(data)));
  }
}

}  // namespace pymar
