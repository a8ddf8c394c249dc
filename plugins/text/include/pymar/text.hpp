// The text plugin: the lines of one or more files as a Pymar DataSource, split by byte ranges.
//
//   REGISTER_DATASOURCE(pymar::text::Lines);
//   ...
//   const pymar::text::Params files{.files = {"a.txt", "b.txt"}};
//   auto counts = WordCount().map(pymar::factory<pymar::text::Lines>(files));
//
// The elements of the whole are the files' bytes, taken as one run of bytes (the files in order),
// so a slice is a byte range and a worker reads only its own part of a large file. A line belongs
// to the slice that holds its first byte: a slice skips a line it starts in the middle of (the
// slice before reads it) and reads its last line to the end, past its own range. So every line is
// in exactly one slice. Each file starts a new line; a last line needs no newline; a line
// handed to map_fn has no newline (a "\r" before it stays). Header-only: no library to link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/data_source.hpp>
#include <pymar/error.hpp>
#include <pymar/pull_range.hpp>

namespace pymar::text {

/// A file that cannot be read, or that changed size while the job ran.
class Error : public pymar::Error {
 public:
  using pymar::Error::Error;
};

/// The files a job reads. Each worker reads them under the same paths (a shared file system, or
/// copies): relative paths are relative to the worker's working directory.
struct Params {
  std::vector<std::string> files{};
  /// Each file's size when the job started (filled by Lines::prepare on the producer when the
  /// factory is made): a worker that finds another size fails rather than miscount.
  std::vector<std::uint64_t> sizes{};
  MSGPACK_DEFINE(files, sizes)
};

namespace detail {

inline std::uint64_t size_of(const std::string& file) {
  std::error_code error;
  const auto size = std::filesystem::file_size(file, error);
  if (error) throw Error("text source: cannot read '" + file + "': " + error.message());
  return size;
}

inline std::vector<std::uint64_t> sizes_of(const Params& params) {
  std::vector<std::uint64_t> sizes;
  for (std::size_t i = 0; i < params.files.size(); ++i) {
    const std::uint64_t size = size_of(params.files[i]);
    if (!params.sizes.empty()) {
      if (params.sizes.size() != params.files.size()) {
        throw Error("text source: Params::sizes does not have one size per file");
      }
      if (params.sizes[i] != size) {
        throw Error("text source: '" + params.files[i] + "' is " + std::to_string(size) +
                    " bytes here, but was " + std::to_string(params.sizes[i]) +
                    " bytes when the job started: files must not change during a job");
      }
    }
    sizes.push_back(size);
  }
  return sizes;
}

}  // namespace detail

/// The lines whose first byte lies in one byte range of the files: a single-pass (input) range
/// of `const std::string&`, each valid until the iterator moves on.
class LineRange : public PullRange<LineRange, std::string> {
 public:
  /// The part of one file this range covers: lines starting at a byte in [begin, end).
  struct Piece {
    std::string file;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
  };

  explicit LineRange(std::vector<Piece> pieces) : pieces_(std::move(pieces)) {}

  /// The next line into `line`; false after the last. Called by PullRange.
  bool read(std::string& line) {
    while (piece_ < pieces_.size()) {
      if (!in_.is_open() && !open_piece()) {
        next_piece();
        continue;
      }
      if (position_ < pieces_[piece_].end && in_.peek() != std::char_traits<char>::eof()) {
        std::getline(in_, line);
        position_ += line.size() + (in_.eof() ? 0 : 1);
        if (in_.bad()) throw Error("text source: error reading '" + pieces_[piece_].file + "'");
        return true;
      }
      next_piece();
    }
    return false;
  }

 private:
  // Opens pieces_[piece_] and finds the first line that starts in it; false if none does.
  bool open_piece() {
    const Piece& piece = pieces_[piece_];
    in_ = std::ifstream(piece.file, std::ios::binary);
    if (!in_) throw Error("text source: cannot open '" + piece.file + "'");
    position_ = piece.begin;
    if (piece.begin == 0) return true;
    // A line starts at `begin` only if the byte before it ends a line; otherwise the line in
    // progress belongs to the slice that holds its first byte, and this one starts after it.
    in_.seekg(static_cast<std::streamoff>(piece.begin - 1));
    if (in_.get() == '\n') return true;
    in_.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    if (in_.eof()) return false;
    position_ += static_cast<std::uint64_t>(in_.gcount());
    return true;
  }

  void next_piece() {
    in_.close();
    ++piece_;
  }

  std::vector<Piece> pieces_;
  std::size_t piece_ = 0;
  std::ifstream in_;
  std::uint64_t position_ = 0;  // in the current file, of the next line's first byte
};

/// The lines of text files. Register it (REGISTER_DATASOURCE(pymar::text::Lines)) or a class
/// derived from it, and give pymar::factory<Lines> the files.
class Lines : public pymar::DataSource {
 public:
  using Params = text::Params;

  explicit Lines(Params params) : params_(std::move(params)) {}

  /// Runs once on the producer, when the factory is made: records each file's size, so that a
  /// worker that finds another one fails rather than miscount.
  static Params prepare(Params params) {
    if (params.sizes.empty()) params.sizes = detail::sizes_of(params);
    return params;
  }

  /// The total size of the files in bytes: the elements that slices are cut from.
  static std::size_t full_length(const Params& params) {
    std::uint64_t total = 0;
    for (std::uint64_t size : detail::sizes_of(params)) total += size;
    return static_cast<std::size_t>(total);
  }

  /// The lines that start in this slice's bytes [offset, offset + limit).
  LineRange items() const {
    const std::vector<std::uint64_t> sizes = detail::sizes_of(params_);
    std::vector<LineRange::Piece> pieces;
    std::uint64_t file_start = 0;  // of file i in the run of all files' bytes
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::uint64_t begin = std::max<std::uint64_t>(offset, file_start);
      const std::uint64_t end = std::min<std::uint64_t>(offset + limit, file_start + sizes[i]);
      if (begin < end) pieces.push_back({params_.files[i], begin - file_start, end - file_start});
      file_start += sizes[i];
    }
    return LineRange(std::move(pieces));
  }

  const Params& params() const noexcept { return params_; }

 private:
  Params params_;
};

/// The words of a line: its runs of characters other than spaces, tabs, "\r", "\n", "\v", "\f".
/// A lazy forward range of std::string_view into the line. Made from a temporary std::string, it
/// keeps the string alive, so `for (auto w : words(doc.get<std::string>("text")))` is safe.
class Words {
 public:
  class iterator {
   public:
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    std::string_view operator*() const { return word_; }
    iterator& operator++() {
      find(word_.data() + word_.size());
      return *this;
    }
    iterator operator++(int) {
      iterator before = *this;
      ++*this;
      return before;
    }
    bool operator==(const iterator& other) const { return word_.data() == other.word_.data(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.word_.empty(); }

   private:
    friend class Words;
    iterator(const char* from, const char* end) : end_(end) { find(from); }

    static bool space(char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
    }
    void find(const char* from) {
      while (from != end_ && space(*from)) ++from;
      const char* to = from;
      while (to != end_ && !space(*to)) ++to;
      word_ = std::string_view(from, static_cast<std::size_t>(to - from));
    }

    std::string_view word_;
    const char* end_ = nullptr;
  };

  explicit Words(std::string_view line) : line_(line) {}
  explicit Words(std::string&& line)
      : owned_(std::make_shared<const std::string>(std::move(line))), line_(*owned_) {}
  iterator begin() const { return iterator(line_.data(), line_.data() + line_.size()); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  // Shared, not copied: copies of the range must keep viewing the same characters.
  std::shared_ptr<const std::string> owned_;
  std::string_view line_;
};

/// The words of `line` (see Words).
inline Words words(std::string_view line) {
  return Words(line);
}
inline Words words(const char* line) {
  return Words(std::string_view(line));
}
/// The words of a temporary string, which the range keeps alive.
inline Words words(std::string&& line) {
  return Words(std::move(line));
}

}  // namespace pymar::text
