#include "common/build_id.hpp"

#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include "pymar/version.hpp"

namespace pymar::detail {
namespace {

// Reads the NT_GNU_BUILD_ID note of the main program (the first object dl_iterate_phdr reports).
int find_build_id(dl_phdr_info* info, std::size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_NOTE) continue;
    const auto* cursor = reinterpret_cast<const unsigned char*>(info->dlpi_addr + segment.p_vaddr);
    const auto* end = cursor + segment.p_memsz;
    while (cursor + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, cursor, sizeof note);
      const unsigned char* name = cursor + sizeof note;
      const unsigned char* desc = name + ((note.n_namesz + 3) & ~3u);
      if (desc + note.n_descsz > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0) {
        for (std::size_t b = 0; b < note.n_descsz; ++b) *out += fmt::format("{:02x}", desc[b]);
        return 1;
      }
      cursor = desc + ((note.n_descsz + 3) & ~3u);
    }
  }
  return 1;  // only the main program's notes matter
}

std::string hash_of_executable() {
  std::ifstream file("/proc/self/exe", std::ios::binary);
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a
  char buffer[1 << 16];
  while (file.read(buffer, sizeof buffer) || file.gcount() > 0) {
    for (std::streamsize i = 0; i < file.gcount(); ++i) {
      hash = (hash ^ static_cast<unsigned char>(buffer[i])) * 1099511628211ull;
    }
  }
  return fmt::format("fnv{:016x}", hash);
}

}  // namespace

const std::string& build_fingerprint() {
  static const std::string fingerprint = [] {
    if (const char* forced = std::getenv("PYMAR_TEST_BUILD_ID"); forced && *forced) {
      return std::string(forced);
    }
    std::string id;
    dl_iterate_phdr(find_build_id, &id);
    if (id.empty()) id = hash_of_executable();
    return fmt::format("{}/{}", id.substr(0, 16), version());
  }();
  return fingerprint;
}

const std::string& task_name() {
  static const std::string name = [] {
    char path[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return std::string("task");
    std::string_view full(path, static_cast<std::size_t>(n));
    return std::string(full.substr(full.find_last_of('/') + 1));
  }();
  return name;
}

const std::string& host_name() {
  static const std::string name = [] {
    char buffer[256] = {};
    if (gethostname(buffer, sizeof buffer - 1) != 0) return std::string("localhost");
    return std::string(buffer);
  }();
  return name;
}

}  // namespace pymar::detail
