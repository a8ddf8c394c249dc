// The producer's endpoint as the pool of `--produce -w N` learns it. That pool and its workers
// start before the producer has bound its port (so that their start-up overlaps the producer's),
// and then read the endpoint from a pipe: one fixed-size record per reader, written at once.
// A pipe write of at most PIPE_BUF bytes is atomic and every read asks for one whole record,
// so readers that race each take one whole record. End of file: no producer will come.
#pragma once

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pymar::detail {

inline constexpr std::size_t kEndpointRecordBytes = 256;

/// Records one write can hold: each write is atomic, so a reader never sees part of a record.
inline constexpr std::size_t kRecordsPerWrite = PIPE_BUF / kEndpointRecordBytes;

/// Writes `copies` records holding `endpoint` (shorter than a record). False when it is too long
/// or a write failed. (A pipe holds 64 KiB: past 256 records, this waits for readers.)
inline bool write_endpoint_records(int fd, std::string_view endpoint, std::size_t copies) {
  if (endpoint.size() >= kEndpointRecordBytes) return false;
  std::string records(kRecordsPerWrite * kEndpointRecordBytes, '\0');
  for (std::size_t i = 0; i < kRecordsPerWrite; ++i) {
    records.replace(i * kEndpointRecordBytes, endpoint.size(), endpoint);
  }
  while (copies > 0) {
    const std::size_t now = std::min(copies, kRecordsPerWrite);
    ssize_t written;
    do {
      written = ::write(fd, records.data(), now * kEndpointRecordBytes);
    } while (written < 0 && errno == EINTR);
    if (written != static_cast<ssize_t>(now * kEndpointRecordBytes)) return false;
    copies -= now;
  }
  return true;
}

/// Blocks for one record; nullopt at end of file (or a record that is not one).
inline std::optional<std::string> read_endpoint_record(int fd) {
  std::array<char, kEndpointRecordBytes> record{};
  ssize_t got;
  do {
    got = ::read(fd, record.data(), record.size());
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(record.size())) return std::nullopt;
  const std::string_view text(record.data(), record.size());
  std::string endpoint(text.substr(0, text.find('\0')));
  if (endpoint.empty()) return std::nullopt;
  return endpoint;
}

}  // namespace pymar::detail
