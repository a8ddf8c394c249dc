#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/concepts.hpp>
#include <pymar/int128.hpp>

namespace {

struct Measurement {
  std::string name;
  std::vector<double> values;
  std::int64_t count = 0;
  MSGPACK_DEFINE(name, values, count)
  bool operator==(const Measurement&) const = default;
};

struct Plain {
  int x = 0;
};

// A class given hand-written adaptors rather than MSGPACK_DEFINE, and marked as such.
struct Celsius {
  double degrees = 0;
  bool operator==(const Celsius&) const = default;
};

// Travels as a msgpack binary holding its own encoding: its adaptor decodes inside a decode.
struct Envelope {
  std::vector<std::int64_t> inside;
  bool operator==(const Envelope&) const = default;
};

}  // namespace

template <>
struct pymar::has_msgpack_adaptor<Celsius> : std::true_type {};
template <>
struct pymar::has_msgpack_adaptor<Envelope> : std::true_type {};

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct pack<Celsius> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& out, const Celsius& value) const {
      return out.pack(value.degrees);
    }
  };
  template <>
  struct convert<Celsius> {
    const msgpack::object& operator()(const msgpack::object& in, Celsius& value) const {
      value.degrees = in.as<double>();
      return in;
    }
  };
  template <>
  struct pack<Envelope> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& out, const Envelope& value) const {
      const std::string bytes = pymar::encode(value.inside);
      out.pack_bin(static_cast<std::uint32_t>(bytes.size()));
      return out.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
    }
  };
  template <>
  struct convert<Envelope> {
    const msgpack::object& operator()(const msgpack::object& in, Envelope& value) const {
      if (in.type != msgpack::type::BIN) throw msgpack::type_error();
      value.inside = pymar::decode<std::vector<std::int64_t>>({in.via.bin.ptr, in.via.bin.size});
      return in;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

namespace {

template <class T>
T round_trip(const T& value) {
  return pymar::decode<T>(pymar::encode(value));
}

}  // namespace

TEST_CASE("values of many kinds survive encoding") {
  CHECK(round_trip(42) == 42);
  CHECK(round_trip(-7LL) == -7LL);
  CHECK(round_trip(22023.7365011063) == 22023.7365011063);
  CHECK(round_trip(std::string("héllo")) == "héllo");
  CHECK(round_trip(std::vector<int>{1, 2, 3}) == std::vector<int>{1, 2, 3});
  const std::map<std::string, std::int64_t> counts{{"one", 6}, {"two", 5}};
  CHECK(round_trip(counts) == counts);
  const Measurement m{"temperature", {1.5, -2.25}, 2};
  CHECK(round_trip(m) == m);
}

// What msgpack's own conversion makes of `bytes` as a T, or nullopt where it refuses them.
template <class T>
std::optional<T> msgpack_reference(const std::string& bytes) {
  try {
    std::size_t offset = 0;
    const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size(), offset);
    if (offset != bytes.size()) return std::nullopt;  // trailing bytes
    return handle.get().as<T>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

template <class T>
std::optional<T> pymar_decode(const std::string& bytes) {
  try {
    return pymar::decode<T>(bytes);
  } catch (const pymar::DecodeError&) {
    return std::nullopt;
  }
}

template <class T>
void check_numbers_as(const std::vector<std::string>& encodings) {
  for (const std::string& bytes : encodings) {
    CAPTURE(bytes.size());
    CAPTURE(static_cast<int>(static_cast<unsigned char>(bytes[0])));
    CHECK(pymar_decode<T>(bytes) == msgpack_reference<T>(bytes));
  }
}

TEST_CASE("a number decodes exactly as msgpack's own conversion gives it, or is refused alike") {
  // Every integer form at and around each type's limits, in the smallest encoding and in the
  // wider forms another encoder may choose, and floats of both widths.
  std::vector<std::string> encodings;
  const std::vector<std::int64_t> signed_values = {0,
                                                   1,
                                                   5,
                                                   127,
                                                   128,
                                                   255,
                                                   256,
                                                   32767,
                                                   32768,
                                                   65535,
                                                   65536,
                                                   2147483647,
                                                   2147483648LL,
                                                   4294967295LL,
                                                   4294967296LL,
                                                   INT64_MAX,
                                                   -1,
                                                   -5,
                                                   -32,
                                                   -33,
                                                   -128,
                                                   -129,
                                                   -32768,
                                                   -32769,
                                                   -2147483648LL,
                                                   -2147483649LL,
                                                   INT64_MIN};
  for (const std::int64_t v : signed_values) encodings.push_back(pymar::encode(v));
  encodings.push_back(pymar::encode(UINT64_MAX));
  encodings.push_back(pymar::encode(std::uint64_t{1} << 63));
  encodings.push_back(std::string("\xd0\x05", 2));                              // int8 holding 5
  encodings.push_back(std::string("\xd3\x00\x00\x00\x00\x00\x00\x00\x07", 9));  // int64: 7
  encodings.push_back(std::string("\xcf\x00\x00\x00\x00\x00\x00\x00\x09", 9));  // uint64: 9
  encodings.push_back(std::string("\xd1\xff\xfe", 3));                          // int16 holding -2
  for (const double v : {0.0, -1.5, 22023.7365011063, 1e300, -3.4e38}) {
    encodings.push_back(pymar::encode(v));
  }
  encodings.push_back(pymar::encode(2.5f));
  encodings.push_back(pymar::encode(true));
  encodings.push_back(pymar::encode(std::string("7")));
  encodings.push_back(std::string("\xcd\x01", 2));  // truncated uint16
  encodings.push_back(std::string("\x05\x05", 2));  // a fixint and a trailing byte

  check_numbers_as<std::int8_t>(encodings);
  check_numbers_as<std::uint8_t>(encodings);
  check_numbers_as<std::int16_t>(encodings);
  check_numbers_as<std::uint16_t>(encodings);
  check_numbers_as<std::int32_t>(encodings);
  check_numbers_as<std::uint32_t>(encodings);
  check_numbers_as<std::int64_t>(encodings);
  check_numbers_as<std::uint64_t>(encodings);
  check_numbers_as<long long>(encodings);
  check_numbers_as<char>(encodings);
  check_numbers_as<bool>(encodings);
  check_numbers_as<float>(encodings);
  check_numbers_as<double>(encodings);
}

TEST_CASE("a user adaptor may decode inside a decode") {
  // Each inner value decodes into more objects than all the envelopes after it: an inner
  // decode that reused the outer one's memory would overwrite envelopes not yet converted.
  std::vector<Envelope> envelopes;
  for (std::int64_t i = 0; i < 50; ++i) {
    envelopes.push_back(Envelope{std::vector<std::int64_t>(static_cast<std::size_t>(60 - i), i)});
  }
  CHECK(round_trip(envelopes) == envelopes);
}

TEST_CASE("a user adaptor carries 128-bit integers, negative ones too") {
  const pymar::int128 big = static_cast<pymar::int128>(333333283333335000000.0L);
  CHECK(round_trip(big) == big);
  const pymar::int128 negative = -big - 12345;
  CHECK(round_trip(negative) == negative);
  CHECK(round_trip(pymar::int128{0}) == 0);
}

TEST_CASE("a value type is accepted when it can travel and refused when it cannot") {
  CHECK(pymar::Encodable<int>);
  CHECK(pymar::Encodable<pymar::int128>);
  CHECK(pymar::Encodable<std::string>);
  CHECK(pymar::Encodable<std::vector<Measurement>>);
  CHECK(pymar::Encodable<std::map<std::string, std::int64_t>>);
  CHECK(pymar::Encodable<std::optional<double>>);
  CHECK(pymar::Encodable<Measurement>);
  CHECK(pymar::Encodable<Celsius>);
  CHECK(round_trip(Celsius{21.5}) == Celsius{21.5});
  // What a value refers to would not travel; a struct needs MSGPACK_DEFINE or an adaptor.
  CHECK_FALSE(pymar::Encodable<Plain>);
  CHECK_FALSE(pymar::Encodable<std::string_view>);
  CHECK_FALSE(pymar::Encodable<std::span<const int>>);
  CHECK_FALSE(pymar::Encodable<const char*>);
  CHECK_FALSE(pymar::Encodable<decltype(std::views::iota(0, 3))>);
}

TEST_CASE("bytes of the wrong shape are a DecodeError, not a crash") {
  CHECK_THROWS_AS(pymar::decode<int>(pymar::encode(std::string("text"))), pymar::DecodeError);
  CHECK_THROWS_AS(pymar::decode<Measurement>(pymar::encode(42)), pymar::DecodeError);
  CHECK_THROWS_AS(pymar::decode<int>(""), pymar::DecodeError);
}

TEST_CASE("truncated or trailing bytes are a DecodeError") {
  const std::string bytes = pymar::encode(std::vector<int>{1, 2, 3, 4});
  CHECK_THROWS_AS(pymar::decode<std::vector<int>>(bytes.substr(0, bytes.size() - 1)),
                  pymar::DecodeError);
  CHECK_THROWS_AS(pymar::decode<std::vector<int>>(bytes + "x"), pymar::DecodeError);
}

TEST_CASE("a forged length cannot make the decoder allocate for it") {
  // array32 header claiming 4 billion elements, followed by 3 bytes.
  const std::string forged_array("\xdd\xff\xff\xff\xff\x01\x02\x03", 8);
  CHECK_THROWS_AS(pymar::decode<std::vector<int>>(forged_array), pymar::DecodeError);
  const std::string forged_map("\xdf\xff\xff\xff\xff\x01\x02", 7);
  CHECK_THROWS_AS((pymar::decode<std::map<int, int>>(forged_map)), pymar::DecodeError);
  const std::string forged_string(
      "\xdb\xff\xff\xff\xff"
      "abc",
      8);
  CHECK_THROWS_AS(pymar::decode<std::string>(forged_string), pymar::DecodeError);
}

TEST_CASE("limits bound nesting depth and container sizes") {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += '\x91';  // fixarray of one element, nested
  deep += '\x01';
  CHECK_THROWS_AS(pymar::decode<msgpack::object>(deep), pymar::DecodeError);
  pymar::DecodeLimits limits;
  limits.max_array = 2;
  CHECK_THROWS_AS(pymar::decode<std::vector<int>>(pymar::encode(std::vector<int>{1, 2, 3}), limits),
                  pymar::DecodeError);
  CHECK(pymar::decode<std::vector<int>>(pymar::encode(std::vector<int>{1, 2}), limits).size() == 2);
}

TEST_CASE("nested containers cannot claim more elements in all than the bytes can hold") {
  // 63 nested arrays, each claiming 4000 elements, around 4000 one-byte elements: every count is
  // within the input's size, but together they claim 63 times more than it holds, and msgpack
  // allocates 24 bytes per claimed element as it meets each header.
  std::string nested;
  for (int i = 0; i < 63; ++i) nested += std::string("\xdd\x00\x00\x0f\xa0", 5);
  nested += std::string(4000, '\x01');
  CHECK_THROWS_WITH_AS(pymar::decode<std::vector<std::vector<int>>>(nested),
                       doctest::Contains("declare more elements than"), pymar::DecodeError);
  // The same with maps: 60 nested maps of 1000 entries, each the value of the first key of the
  // one around it.
  std::string nested_maps;
  for (int i = 0; i < 60; ++i) nested_maps += std::string("\xdf\x00\x00\x03\xe8\x01", 6);
  nested_maps += std::string(2000, '\x01');
  CHECK_THROWS_WITH_AS((pymar::decode<std::map<int, int>>(nested_maps)),
                       doctest::Contains("declare more elements than"), pymar::DecodeError);

  // Honest input of any shape still decodes.
  std::vector<std::vector<std::int64_t>> grid(100, std::vector<std::int64_t>(100, 7));
  CHECK(round_trip(grid) == grid);
  std::map<std::string, std::int64_t> counts;
  for (int i = 0; i < 1000; ++i) counts["w" + std::to_string(i)] = i;
  CHECK(round_trip(counts) == counts);
  std::vector<std::vector<int>> empties(5000);
  CHECK(round_trip(empties) == empties);
  const std::vector<Measurement> many(300, Measurement{"m", {1.0, 2.0}, 3});
  CHECK(round_trip(many) == many);
}

namespace {

// `count` msgpack nils in one array: a byte each, 24 bytes each once decoded.
std::string nils(std::size_t count) {
  std::string bytes("\xdd", 1);
  for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>(count >> shift);
  bytes.append(count, '\xc0');
  return bytes;
}

// Virtual memory this process maps now, in bytes.
[[maybe_unused]] std::size_t mapped_bytes() {  // unused under AddressSanitizer
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0;
  statm >> pages;
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST_CASE("decoding B bytes makes at most 8 B + 24 MiB of msgpack objects") {
  const pymar::DecodeLimits limits;
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  CHECK(limits.max_objects(0) * sizeof(msgpack::object) == 24 * kMiB);
  CHECK(limits.max_objects(3 * kMiB) * sizeof(msgpack::object) == 24 * kMiB + 8 * 3 * kMiB);

  // 64 MiB of nils would be 1.5 GiB of objects: refused before anything is allocated.
  const std::string bytes = nils(std::size_t{64} << 20);
  CHECK_THROWS_WITH_AS(pymar::decode<std::vector<msgpack::type::nil_t>>(bytes),
                       doctest::Contains("declare more elements than"), pymar::DecodeError);
  CHECK_THROWS_WITH_AS(pymar::detail::check_decode_cost(bytes),
                       doctest::Contains("declare more elements than"), pymar::DecodeError);
  // Under the floor, as many nils as bytes decode.
  CHECK(pymar::decode<std::vector<msgpack::type::nil_t>>(nils(kMiB)).size() == kMiB);
  // Honest values over the floor: three million doubles (9 bytes each).
  const std::vector<double> doubles(3 * kMiB, 0.5);
  CHECK(pymar::decode<std::vector<double>>(pymar::encode(doubles)) == doubles);

#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer maps terabytes of shadow memory: an address-space limit means nothing.
  MESSAGE("the address-space limit is not checked under AddressSanitizer");
#else
  // And the memory, measured: in a child whose address space is limited to what it maps now
  // plus 8 B + 24 MiB and some slack, decoding the nils fails with the reason above, not with
  // bad_alloc (which is what 1.5 GiB of objects would hit).
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const std::size_t allowed = mapped_bytes() + 8 * bytes.size() + (24 << 20) + (64 << 20);
    const rlimit limit{allowed, allowed};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(3);
    try {
      (void)pymar::decode<std::vector<msgpack::type::nil_t>>(bytes);
      _exit(2);
    } catch (const pymar::DecodeError& e) {
      _exit(std::string(e.what()).find("declare more elements than") != std::string::npos ? 0 : 1);
    } catch (...) {
      _exit(1);
    }
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
#endif
}
