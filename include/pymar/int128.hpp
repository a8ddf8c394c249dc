// A msgpack adaptor for a type msgpack-c lacks: the 128-bit integer. Any type with pack and
// convert adaptors like these can be a value of map_fn and reduce_fn.
#pragma once

#include <cstdint>

#include <pymar/codec.hpp>

using int128 = __int128_t;

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  // Travels as [high 64 bits (signed), low 64 bits (unsigned)].
  template <>
  struct pack<int128> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& out, const int128& value) const {
      out.pack_array(2);
      out.pack(static_cast<std::int64_t>(value >> 64));
      out.pack(static_cast<std::uint64_t>(value));
      return out;
    }
  };

  template <>
  struct convert<int128> {
    const msgpack::object& operator()(const msgpack::object& in, int128& value) const {
      if (in.type != msgpack::type::ARRAY || in.via.array.size != 2) throw msgpack::type_error();
      const auto high = in.via.array.ptr[0].as<std::int64_t>();
      const auto low = in.via.array.ptr[1].as<std::uint64_t>();
      value = static_cast<int128>(high) * (int128{1} << 64) + static_cast<int128>(low);
      return in;
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
