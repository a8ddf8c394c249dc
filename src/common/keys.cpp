#include "common/keys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <zmq.h>

#include "pymar/error.hpp"

namespace pymar::detail {
namespace {

constexpr std::size_t kMaxCertificateBytes = 64 << 10;

bool valid_z85_key(const std::string& text) {
  if (text.size() != kZ85KeyChars) return false;
  std::array<std::uint8_t, 32> bytes{};
  return zmq_z85_decode(bytes.data(), text.c_str()) != nullptr;
}

/// The quoted value of `name = "..."` on a line of the certificate, if the line is that field.
std::optional<std::string> field(const std::string& line, std::string_view name) {
  const auto start = line.find_first_not_of(" \t");
  if (start == std::string::npos || line.compare(start, name.size(), name) != 0) return {};
  const auto open = line.find('"', start + name.size());
  const auto close = line.rfind('"');
  if (open == std::string::npos || close <= open) return {};
  const auto equals = line.find('=', start + name.size());
  if (equals == std::string::npos || equals > open) return {};
  return line.substr(open + 1, close - open - 1);
}

void write_private_file(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw Error(fmt::format("cannot create {}: {}{}", path, std::strerror(errno),
                            errno == EEXIST ? " (remove it first to make a new key)" : ""));
  }
  const ssize_t written = ::write(fd, text.data(), text.size());
  const int write_error = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(text.size())) {
    throw Error(fmt::format("cannot write {}: {}", path, std::strerror(write_error)));
  }
}

std::string certificate_text(const std::string& name, const KeyPair& keys, bool with_secret) {
  std::string text = fmt::format(
      "#   ZeroMQ CURVE {} Certificate, made by Pymar\n"
      "#   {}\n\n"
      "metadata\n"
      "    name = \"{}\"\n"
      "curve\n"
      "    public-key = \"{}\"\n",
      with_secret ? "**Secret**" : "Public",
      with_secret ? "Keep this file to yourself: whoever reads it can act as its owner."
                  : "Give this file to the peers that should let its owner in.",
      name, keys.public_key);
  if (with_secret) text += fmt::format("    secret-key = \"{}\"\n", keys.secret_key);
  return text;
}

}  // namespace

KeyPair make_key_pair() {
  std::array<char, kZ85KeyChars + 1> public_key{};
  std::array<char, kZ85KeyChars + 1> secret_key{};
  if (zmq_curve_keypair(public_key.data(), secret_key.data()) != 0) {
    throw Error(fmt::format("cannot make a CURVE key pair: {} (is libzmq built with libsodium?)",
                            zmq_strerror(zmq_errno())));
  }
  return {public_key.data(), secret_key.data()};
}

std::pair<std::string, std::string> write_key_pair(const std::string& dir, const std::string& name,
                                                   const KeyPair& keys) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
    throw Error(fmt::format("'{}' is not a usable key name (a file name without '/')", name));
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw Error(fmt::format("cannot create {}: {}", dir, error.message()));
  const std::string public_path = (std::filesystem::path(dir) / (name + ".key")).string();
  const std::string secret_path = public_path + "_secret";
  write_private_file(secret_path, certificate_text(name, keys, true));
  write_private_file(public_path, certificate_text(name, keys, false));
  return {public_path, secret_path};
}

KeyPair read_certificate(const std::string& path, bool need_secret) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    throw Error(fmt::format("cannot read key file {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) throw Error(fmt::format("key file {} is not a file", path));
  if (static_cast<std::size_t>(info.st_size) > kMaxCertificateBytes) {
    throw Error(fmt::format("key file {} is {} bytes: not a certificate", path, info.st_size));
  }
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("cannot read key file {}: {}", path, std::strerror(errno)));
  KeyPair keys;
  std::string line;
  while (std::getline(in, line)) {
    if (auto value = field(line, "public-key")) keys.public_key = *value;
    if (auto value = field(line, "secret-key")) keys.secret_key = *value;
  }
  if (!valid_z85_key(keys.public_key)) {
    throw Error(fmt::format("key file {} has no valid public-key (a {}-character Z85 string)",
                            path, kZ85KeyChars));
  }
  if (!need_secret) {
    keys.secret_key.clear();
    return keys;
  }
  if (!valid_z85_key(keys.secret_key)) {
    throw Error(fmt::format("key file {} has no valid secret-key: give the secret certificate "
                            "(NAME.key_secret), not the public one",
                            path));
  }
  if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    throw Error(fmt::format("secret key file {} can be read by others (mode {:04o}): run chmod 600 "
                            "{}",
                            path, info.st_mode & 07777, path));
  }
  return keys;
}

std::set<std::string> read_allowed_keys(const std::string& path) {
  std::set<std::string> keys;
  std::error_code error;
  if (!std::filesystem::is_directory(path, error)) {
    keys.insert(read_certificate(path, false).public_key);
    return keys;
  }
  for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
    if (entry.path().extension() != ".key") continue;
    keys.insert(read_certificate(entry.path().string(), false).public_key);
  }
  if (error) throw Error(fmt::format("cannot list {}: {}", path, error.message()));
  if (keys.empty()) throw Error(fmt::format("{} holds no public key file (NAME.key)", path));
  return keys;
}

}  // namespace pymar::detail
