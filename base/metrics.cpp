#include "rewind/base/metrics.h"

#include <algorithm>

#include <fmt/format.h>

namespace rwd {

DurationHistogram::DurationHistogram()
    : DurationHistogram(
          {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}) {}

DurationHistogram::DurationHistogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {}

void DurationHistogram::observe(std::chrono::nanoseconds d) {
  const double seconds = std::chrono::duration<double>(d).count();
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), seconds) -
                                       bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, d.count())),
                    std::memory_order_relaxed);
}

DurationHistogram::Snapshot DurationHistogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t total = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.count = total + counts_[bounds_.size()].load(std::memory_order_relaxed);
  s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

namespace {

const char* type_name(MetricsText::Type t) {
  switch (t) {
    case MetricsText::Type::kCounter:
      return "counter";
    case MetricsText::Type::kGauge:
      return "gauge";
    case MetricsText::Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// A label value: backslash, double quote and newline escaped.
void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// A number as the format reads it: integers exactly, others in the shortest form.
std::string number(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v)) && v > -9e15 && v < 9e15)
    return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

}  // namespace

void MetricsText::family(std::string_view name, Type type, std::string_view help) {
  // HELP text escapes backslash and newline only.
  text_ += fmt::format("# HELP {} ", name);
  for (char c : help) {
    if (c == '\\')
      text_ += "\\\\";
    else if (c == '\n')
      text_ += "\\n";
    else
      text_ += c;
  }
  text_ += fmt::format("\n# TYPE {} {}\n", name, type_name(type));
}

void MetricsText::write_labels(const MetricLabels& labels, std::string_view extra_name,
                               std::string_view extra_value) {
  if (labels.empty() && extra_name.empty()) return;
  text_ += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) text_ += ',';
    first = false;
    text_ += k;
    text_ += "=\"";
    append_escaped(text_, v);
    text_ += '"';
  }
  if (!extra_name.empty()) {
    if (!first) text_ += ',';
    text_ += extra_name;
    text_ += "=\"";
    text_ += extra_value;
    text_ += '"';
  }
  text_ += '}';
}

void MetricsText::sample(std::string_view name, const MetricLabels& labels, double value) {
  text_ += name;
  write_labels(labels);
  text_ += ' ';
  text_ += number(value);
  text_ += '\n';
}

void MetricsText::sample(std::string_view name, const MetricLabels& labels, uint64_t value) {
  text_ += name;
  write_labels(labels);
  text_ += fmt::format(" {}\n", value);
}

void MetricsText::histogram(std::string_view name, std::string_view help,
                            const MetricLabels& labels, const DurationHistogram::Snapshot& s) {
  family(name, Type::kHistogram, help);
  histogram_samples(name, labels, s);
}

void MetricsText::histogram_samples(std::string_view name, const MetricLabels& labels,
                                    const DurationHistogram::Snapshot& s) {
  const std::string bucket = fmt::format("{}_bucket", name);
  for (size_t i = 0; i < s.bounds.size(); ++i) {
    text_ += bucket;
    write_labels(labels, "le", number(s.bounds[i]));
    text_ += fmt::format(" {}\n", s.cumulative[i]);
  }
  text_ += bucket;
  write_labels(labels, "le", "+Inf");
  text_ += fmt::format(" {}\n", s.count);
  sample(fmt::format("{}_sum", name), labels, s.sum_seconds);
  sample(fmt::format("{}_count", name), labels, s.count);
}

void MetricsText::counter(std::string_view name, std::string_view help, uint64_t value) {
  family(name, Type::kCounter, help);
  sample(name, {}, value);
}

void MetricsText::gauge(std::string_view name, std::string_view help, double value) {
  family(name, Type::kGauge, help);
  sample(name, {}, value);
}

}  // namespace rwd
