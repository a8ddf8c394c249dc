// Text that came from a peer, made safe to log.
#pragma once

#include <string>
#include <string_view>

namespace pymar::detail {

/// `text` with control characters and bytes outside printable ASCII escaped as \xNN, and cut
/// to `max` bytes: a peer cannot forge or colour lines of our log through its identity or
/// messages.
inline std::string printable(std::string_view text, std::size_t max = 200) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : text.substr(0, max)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace pymar::detail
