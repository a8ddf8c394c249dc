// 128-bit integers as values: `pymar::sum<pymar::int128>(values)` sums 64-bit values without
// overflow, and the partial sums travel through this msgpack adaptor, which msgpack-c lacks.
// It is also the model for a type of your own: any type with pack and convert adaptors like
// these can be a value of map_fn and reduce_fn.
#pragma once

#include "pymar/detail/config.hpp"

#include <cstdint>

#include "pymar/codec.hpp"

namespace pymar {
/// The signed 128-bit integer of GCC and Clang.
using int128 = __int128_t;
}  // namespace pymar

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  // Travels as [high 64 bits (signed), low 64 bits (unsigned)].
  template <>
  struct pack<::pymar::int128> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& out,
                                        const ::pymar::int128& value) const {
      out.pack_array(2);
      out.pack(static_cast<std::int64_t>(value >> 64));
      out.pack(static_cast<std::uint64_t>(value));
      return out;
    }
  };

  template <>
  struct convert<::pymar::int128> {
    const msgpack::object& operator()(const msgpack::object& in, ::pymar::int128& value) const {
      if (in.type != msgpack::type::ARRAY || in.via.array.size != 2) throw msgpack::type_error();
      const auto high = in.via.array.ptr[0].as<std::int64_t>();
      const auto low = in.via.array.ptr[1].as<std::uint64_t>();
      value = static_cast<::pymar::int128>(high) * (::pymar::int128{1} << 64) +
              static_cast<::pymar::int128>(low);
      return in;
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
