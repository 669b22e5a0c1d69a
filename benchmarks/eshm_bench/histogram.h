// A log-linear latency histogram in the spirit of HdrHistogram: fixed memory, constant-time Record, and
// a bounded relative error (better than 3 significant digits) for any value up to kMaxTrackable.
//
// Layout. Values below 2^(kSubBits+1) get one bucket each (exact). Above that, every power-of-two range
// [2^m, 2^(m+1)) is cut into 2^kSubBits equal buckets, so a bucket is at most 2^-kSubBits (~0.098 %) of
// the values it holds wide. Percentiles report the middle of their bucket, clamped to the exact min and
// max, so they are within half that of the exact nearest-rank percentile. Larger values are clamped into
// the top bucket (max() stays exact).
//
// The object is trivially copyable and holds no pointers: a forked child records into its own copy and
// memcpy's it into memory it shares with the parent. Thread-compatible.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_HISTOGRAM_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_HISTOGRAM_H_

#include <array>
#include <bit>
#include <cstdint>

namespace eshm_bench {

class Histogram {
 public:
  static constexpr int kSubBits = 10;  // 1024 buckets per octave: relative bucket width <= 1/1024
  static constexpr int kMaxBits = 40;  // values up to 2^40 ns (~18 minutes) keep the bound
  static constexpr std::uint64_t kMaxTrackable = (std::uint64_t{1} << kMaxBits) - 1;
  static constexpr std::size_t kBuckets =
      (std::size_t{2} << kSubBits) + static_cast<std::size_t>(kMaxBits - kSubBits - 1) * (std::size_t{1} << kSubBits);

  void Record(std::uint64_t value) {
    ++counts_[IndexOf(value < kMaxTrackable ? value : kMaxTrackable)];
    ++count_;
    sum_ += static_cast<double>(value);
    if (value < min_) min_ = value;
    if (value > max_) max_ = value;
  }

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : sum_ / static_cast<double>(count_); }
  // The value at quantile q in [0, 1] by nearest rank (the ceil(q * count)-th smallest, at least the first);
  // 0 when empty.
  double Percentile(double q) const;

  // Bucket arithmetic, public for the test.
  static std::size_t IndexOf(std::uint64_t value) {
    constexpr std::uint64_t kLinear = std::uint64_t{2} << kSubBits;
    if (value < kLinear) return static_cast<std::size_t>(value);
    const int magnitude = std::bit_width(value) - 1;  // value in [2^magnitude, 2^(magnitude+1))
    const int shift = magnitude - kSubBits;
    return static_cast<std::size_t>(kLinear) + static_cast<std::size_t>(magnitude - kSubBits - 1) * (1u << kSubBits) +
           static_cast<std::size_t>((value >> shift) - (std::uint64_t{1} << kSubBits));
  }
  // The smallest value and the width of bucket `index`.
  static std::uint64_t LowestIn(std::size_t index);
  static std::uint64_t WidthOf(std::size_t index);

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_HISTOGRAM_H_
