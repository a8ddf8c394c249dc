// CurveZMQ keys: making key pairs, and reading them from certificate files in ZeroMQ's Z85
// format (the layout CZMQ's zcert writes, so keys made by other ZeroMQ tools work too).
#pragma once

#include <optional>
#include <set>
#include <string>

namespace pymar::detail {

/// A Z85-encoded CURVE key is this many characters (32 bytes).
inline constexpr std::size_t kZ85KeyChars = 40;

struct KeyPair {
  std::string public_key;  ///< Z85
  std::string secret_key;  ///< Z85; empty when read from a public certificate
};

/// A fresh key pair from libsodium through libzmq. Throws pymar::Error when libzmq has no CURVE.
KeyPair make_key_pair();

/// Writes DIR/NAME.key (public) and DIR/NAME.key_secret (public and secret), both readable by
/// their owner only, creating DIR if needed. Refuses to overwrite an existing file. Returns the
/// two paths. Throws pymar::Error.
std::pair<std::string, std::string> write_key_pair(const std::string& dir, const std::string& name,
                                                   const KeyPair& keys);

/// Reads a certificate. With `need_secret`, the file must hold a secret key and be readable by
/// its owner only (as ssh insists for its keys). Throws pymar::Error naming the file and what is
/// wrong with it.
KeyPair read_certificate(const std::string& path, bool need_secret);

/// The public keys of a certificate file, or of every `*.key` file in a folder (secret
/// certificates, `*.key_secret`, are skipped). Throws pymar::Error when there is none.
std::set<std::string> read_allowed_keys(const std::string& path);

/// The keys one process uses. A producer has its own pair and the workers it lets in; a worker has
/// its own pair and the producer it will talk to.
struct Keys {
  KeyPair own;
  std::set<std::string> allowed;  ///< producer: public keys of the workers let in
  std::string producer;           ///< worker: the producer's public key
};

}  // namespace pymar::detail
