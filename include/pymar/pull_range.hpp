// PullRange: the elements of a source that reads them one at a time from a store.
#pragma once

#include "pymar/detail/config.hpp"

#include <cstddef>
#include <iterator>

namespace pymar {

/// A single-pass range over elements read one at a time: rows of a query, documents of a
/// cursor, lines of a file. Derive from it and provide `bool read(T& out)`: true with the next
/// element stored in `out`, false at the end. The first element is read by `begin()`, each next
/// one by `++`; an element stays valid until the iterator moves on. `items()` of a source may
/// return such a range (by value: it is movable when Derived is).
///
///   struct Lines : pymar::PullRange<Lines, std::string> {
///     std::ifstream in;
///     bool read(std::string& line) { return bool(std::getline(in, line)); }
///   };
template <class Derived, class T>
class PullRange {
 public:
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    const T& operator*() const { return range_->current_; }
    const T* operator->() const { return &range_->current_; }
    iterator& operator++() {
      range_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class PullRange;
    bool at_end() const { return range_->done_; }
    explicit iterator(PullRange* range) : range_(range) {}
    PullRange* range_ = nullptr;
  };

  /// Reads the first element; a range is iterated once.
  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void advance() {
    if (!done_) done_ = !static_cast<Derived*>(this)->read(current_);
  }

  T current_{};
  bool started_ = false;
  bool done_ = false;
};

}  // namespace pymar
