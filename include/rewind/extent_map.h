// ExtentMap<V>: non-overlapping byte ranges of a volume, each mapped to a value that
// says where its bytes live. Inserting a range replaces whatever it overlaps (newest
// wins at byte granularity); partly covered neighbours are cut, and their values
// advanced by the number of bytes cut from their front (V::advanced(n)).
//
// Lookups and inserts are O(log n + k) for k touched extents.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace rwd {

template <class V>
class ExtentMap {
 public:
  struct Extent {
    uint64_t end;  // exclusive
    V value;
  };

  void insert(uint64_t offset, uint64_t length, V value) {
    if (length == 0) return;
    const uint64_t end = offset + length;
    auto it = first_overlap(offset);
    while (it != map_.end() && it->first < end) {
      const uint64_t s = it->first;
      Extent e = it->second;
      it = map_.erase(it);
      if (s < offset) map_.emplace(s, Extent{offset, e.value});
      if (e.end > end) {
        map_.emplace(end, Extent{e.end, e.value.advanced(end - s)});
        break;
      }
    }
    map_.emplace(offset, Extent{end, std::move(value)});
  }

  // Calls f(start, end, value) for each extent overlapping [offset, offset+length),
  // clipped to that range, in offset order. `value` is for the unclipped start;
  // the clipped start is `start`, so the caller advances by (start - extent start)
  // through the fourth argument.
  template <class F>
  void for_each(uint64_t offset, uint64_t length, F&& f) const {
    const uint64_t end = offset + length;
    for (auto it = first_overlap(offset); it != map_.end() && it->first < end; ++it) {
      uint64_t s = std::max(it->first, offset);
      uint64_t e = std::min(it->second.end, end);
      f(s, e, it->second.value, s - it->first);
    }
  }

  // Removes every extent overlapping [offset, offset+length) for which pred(value).
  template <class P>
  void erase_if(uint64_t offset, uint64_t length, P&& pred) {
    const uint64_t end = offset + length;
    for (auto it = first_overlap(offset); it != map_.end() && it->first < end;) {
      if (pred(it->second.value)) {
        it = map_.erase(it);
      } else {
        ++it;
      }
    }
  }

  size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  void clear() { map_.clear(); }
  auto begin() const { return map_.begin(); }
  auto end() const { return map_.end(); }

 private:
  using Map = std::map<uint64_t, Extent>;
  typename Map::const_iterator first_overlap(uint64_t offset) const {
    auto it = map_.upper_bound(offset);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.end > offset) return prev;
    }
    return it;
  }
  typename Map::iterator first_overlap(uint64_t offset) {
    auto it = map_.upper_bound(offset);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.end > offset) return prev;
    }
    return it;
  }
  Map map_;
};

}  // namespace rwd
