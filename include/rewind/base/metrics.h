// Metrics in Prometheus' text exposition format (version 0.0.4), for the plugin's
// metrics= and rewind-server --metrics (docs/METRICS.md).
//
// Counters and histograms are bumped from any thread without a lock (one relaxed
// atomic add): the write path pays nothing more. A scrape reads them and renders the
// text with MetricsText, HELP and TYPE once per family, then its samples.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rwd {

// A count that only rises.
class Counter {
 public:
  void add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Durations counted into fixed buckets.
class DurationHistogram {
 public:
  // Upper bounds in seconds, rising: 0.5 ms to 10 s by default, which spans a flush on
  // a fast SSD to one behind a stalled disk.
  DurationHistogram();
  explicit DurationHistogram(std::vector<double> bounds);
  void observe(std::chrono::nanoseconds d);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound: the observations at or below it
    uint64_t count = 0;                // all of them (the +Inf bucket)
    double sum_seconds = 0;
  };
  // The buckets read once each, made cumulative: each bucket at most the next.
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (the last: above all)
  std::atomic<uint64_t> sum_ns_{0};
};

// label name -> value; values are escaped as the format wants.
using MetricLabels = std::vector<std::pair<std::string_view, std::string>>;

class MetricsText {
 public:
  enum class Type { kCounter, kGauge, kHistogram };
  // Starts the family `name` (a counter's ends in _total, a unit's in _seconds or
  // _bytes): its HELP and TYPE lines.
  void family(std::string_view name, Type type, std::string_view help);
  // One sample of the family begun last.
  void sample(std::string_view name, const MetricLabels& labels, double value);
  void sample(std::string_view name, const MetricLabels& labels, uint64_t value);
  // family() and the _bucket, _sum and _count samples of one histogram.
  void histogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                 const DurationHistogram::Snapshot& s);
  // Samples of a histogram family already begun (one per label set).
  void histogram_samples(std::string_view name, const MetricLabels& labels,
                         const DurationHistogram::Snapshot& s);
  // The shorthand for a family of one sample without labels.
  void counter(std::string_view name, std::string_view help, uint64_t value);
  void gauge(std::string_view name, std::string_view help, double value);

  const std::string& text() const { return text_; }

 private:
  void write_labels(const MetricLabels& labels, std::string_view extra_name = {},
                    std::string_view extra_value = {});
  std::string text_;
};

}  // namespace rwd
