// ExtentMap<V>: non-overlapping byte ranges of a volume, each mapped to a value that
// says where its bytes live. Inserting a range replaces whatever it overlaps (newest
// wins at byte granularity); partly covered neighbours are cut, and their values
// advanced by the number of bytes cut from their front (V::advanced(n)).
//
// Lookups and inserts are O(log n + k) for k touched extents. The map's nodes come from
// Alloc: a std::pmr::polymorphic_allocator lets a map that lives briefly take them from
// an arena (PmrExtentMap).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory_resource>
#include <queue>
#include <span>
#include <utility>
#include <vector>

namespace rwd {

template <class V>
struct ExtentOf {
  uint64_t end;  // exclusive
  V value;
};

template <class V, class Alloc = std::allocator<std::pair<const uint64_t, ExtentOf<V>>>>
class ExtentMap {
 public:
  using Extent = ExtentOf<V>;

  ExtentMap() = default;
  explicit ExtentMap(const Alloc& alloc) : map_(alloc) {}

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
  using Map = std::map<uint64_t, Extent, std::less<uint64_t>, Alloc>;
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

template <class V>
using PmrExtentMap =
    ExtentMap<V, std::pmr::polymorphic_allocator<std::pair<const uint64_t, ExtentOf<V>>>>;

// One write of a history, for FlatExtentMap::newest_wins.
template <class V>
struct Interval {
  uint64_t offset, length;
  V value;
};

// FlatExtentMap<V>: the read-only result of a whole history of writes, as a sorted
// vector of extents (same iteration and for_each as ExtentMap). newest_wins() builds
// it in O(n log n) with one sort and a sweep, instead of n map updates, so that a
// view of a million records opens in a fraction of a second.
template <class V>
class FlatExtentMap {
 public:
  using Extent = typename ExtentMap<V>::Extent;
  using Entry = std::pair<uint64_t, Extent>;  // start, {end, value}

  // `history` in write order (a later entry wins where two overlap).
  static FlatExtentMap newest_wins(std::span<const Interval<V>> history) {
    return newest_wins(history.size(), [&](size_t i) { return history[i]; });
  }

  // The same for a history of n writes given by get(i) -> Interval<V>, i in write
  // order, which need not be stored as such.
  template <class Get>
  static FlatExtentMap newest_wins(size_t n, Get&& get) {
    std::vector<Start> starts;
    starts.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const Interval<V> w = get(i);
      if (w.length != 0)
        starts.push_back({w.offset, w.offset + w.length, static_cast<uint32_t>(i)});
    }
    sort_by_offset(&starts);
    drop_shadowed(&starts);
    // Active writes (index, end), newest on top; ended ones are dropped when they
    // surface. The end rides along so that the check needs no get().
    std::vector<std::pair<uint32_t, uint64_t>> heap;
    heap.reserve(64);
    std::priority_queue active(std::less<std::pair<uint32_t, uint64_t>>(), std::move(heap));
    FlatExtentMap out;
    out.extents_.reserve(starts.size());
    size_t next = 0;
    uint64_t pos = 0;
    uint32_t last_index = UINT32_MAX;
    while (next < starts.size() || !active.empty()) {
      if (active.empty()) pos = std::max(pos, starts[next].offset);
      for (; next < starts.size() && starts[next].offset <= pos; ++next)
        active.emplace(starts[next].index, starts[next].end);
      while (!active.empty() && active.top().second <= pos) active.pop();
      if (active.empty()) continue;
      const uint32_t top = active.top().first;
      uint64_t stop = active.top().second;
      if (next < starts.size()) stop = std::min(stop, starts[next].offset);
      if (top == last_index && out.extents_.back().second.end == pos) {
        out.extents_.back().second.end = stop;  // the same write, cut by an older one
      } else {
        const Interval<V> w = get(top);
        out.extents_.push_back({pos, Extent{stop, w.value.advanced(pos - w.offset)}});
        last_index = top;
      }
      pos = stop;
    }
    return out;
  }

  template <class F>
  void for_each(uint64_t offset, uint64_t length, F&& f) const {
    const uint64_t end = offset + length;
    auto it = std::upper_bound(extents_.begin(), extents_.end(), offset,
                               [](uint64_t o, const Entry& e) { return o < e.first; });
    if (it != extents_.begin() && std::prev(it)->second.end > offset) --it;
    for (; it != extents_.end() && it->first < end; ++it) {
      uint64_t s = std::max(it->first, offset);
      uint64_t e = std::min(it->second.end, end);
      f(s, e, it->second.value, s - it->first);
    }
  }

  size_t size() const { return extents_.size(); }
  bool empty() const { return extents_.empty(); }
  auto begin() const { return extents_.begin(); }
  auto end() const { return extents_.end(); }

 private:
  struct Start {
    uint64_t offset, end;
    uint32_t index;
  };
  // LSD radix sort on offset, 11 bits a pass, as many passes as the largest offset
  // needs (three for a volume under 8 GiB): stable, and several times faster than a
  // comparison sort of a million starts.
  static void sort_by_offset(std::vector<Start>* v) {
    constexpr int kBits = 11;
    constexpr size_t kBuckets = size_t{1} << kBits;
    uint64_t max = 0;
    for (const Start& s : *v) max = std::max(max, s.offset);
    std::vector<Start> tmp(v->size());
    std::vector<size_t> count(kBuckets);
    for (int shift = 0; shift < 64 && (max >> shift) != 0; shift += kBits) {
      std::fill(count.begin(), count.end(), 0);
      for (const Start& s : *v) ++count[(s.offset >> shift) & (kBuckets - 1)];
      size_t sum = 0;
      for (size_t& c : count) {
        const size_t k = c;
        c = sum;
        sum += k;
      }
      for (const Start& s : *v) tmp[count[(s.offset >> shift) & (kBuckets - 1)]++] = s;
      v->swap(tmp);
    }
  }
  // Of the writes that start at one offset (in write order, as the stable sort left
  // them), drops each that a later one there covers whole: rewrites of the same
  // blocks, the common case, then never reach the heap.
  static void drop_shadowed(std::vector<Start>* v) {
    std::vector<Start> kept;  // of one group, newest first
    size_t out = 0;
    for (size_t a = 0; a < v->size();) {
      size_t b = a + 1;
      while (b < v->size() && (*v)[b].offset == (*v)[a].offset) ++b;
      kept.clear();
      for (size_t i = b; i-- > a;)  // newest first: keep what reaches past all newer
        if (kept.empty() || (*v)[i].end > kept.back().end) kept.push_back((*v)[i]);
      for (const Start& k : kept) (*v)[out++] = k;  // out <= a: nothing unread is overwritten
      a = b;
    }
    v->resize(out);
  }
  std::vector<Entry> extents_;
};

}  // namespace rwd
