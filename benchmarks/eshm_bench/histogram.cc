#include "benchmarks/eshm_bench/histogram.h"

#include <algorithm>
#include <cmath>

namespace eshm_bench {

namespace {
constexpr std::size_t kLinear = std::size_t{2} << Histogram::kSubBits;
constexpr std::size_t kPerOctave = std::size_t{1} << Histogram::kSubBits;
}  // namespace

std::uint64_t Histogram::LowestIn(std::size_t index) {
  if (index < kLinear) return index;
  const std::size_t octave = (index - kLinear) / kPerOctave;  // 0 for [2^(kSubBits+1), 2^(kSubBits+2))
  const std::size_t sub = (index - kLinear) % kPerOctave;
  const int shift = static_cast<int>(octave) + 1;
  return (static_cast<std::uint64_t>(kPerOctave + sub)) << shift;
}

std::uint64_t Histogram::WidthOf(std::size_t index) {
  if (index < kLinear) return 1;
  return std::uint64_t{1} << ((index - kLinear) / kPerOctave + 1);
}

double Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const std::uint64_t rank =
      std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))));
  if (rank >= count_) return static_cast<double>(max_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      // The middle of the bucket halves the worst-case error; the exact extremes bound it.
      const double middle = static_cast<double>(LowestIn(i)) + static_cast<double>(WidthOf(i) - 1) / 2;
      return std::clamp(middle, static_cast<double>(min()), static_cast<double>(max_));
    }
  }
  return static_cast<double>(max_);
}

}  // namespace eshm_bench
