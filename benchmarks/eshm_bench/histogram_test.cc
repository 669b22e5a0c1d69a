#include "benchmarks/eshm_bench/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace eshm_bench {
namespace {

// The nearest-rank percentile of sorted data: the ceil(q * n)-th smallest value.
double ExactPercentile(const std::vector<std::uint64_t>& sorted, double q) {
  const std::size_t n = sorted.size();
  const std::size_t rank = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(q * static_cast<double>(n))));
  return static_cast<double>(sorted[std::min(rank, n) - 1]);
}

void ExpectWithinBound(const std::vector<std::uint64_t>& values) {
  Histogram h;
  for (const std::uint64_t v : values) h.Record(v);
  std::vector<std::uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (const double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const double exact = ExactPercentile(sorted, q);
    // Half a bucket, and a bucket is at most 2^-kSubBits of its values wide.
    const double bound = exact / (1 << Histogram::kSubBits) / 2 + 0.5;
    EXPECT_NEAR(h.Percentile(q), exact, bound) << "q=" << q;
  }
  EXPECT_EQ(h.count(), values.size());
  EXPECT_EQ(h.min(), sorted.front());
  EXPECT_EQ(h.max(), sorted.back());
}

TEST(HistogramTest, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.Percentile(0.5), 0);
  EXPECT_EQ(h.mean(), 0);
  EXPECT_EQ(h.min(), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  std::vector<std::uint64_t> values;
  for (std::uint64_t v = 1; v <= 100; ++v) values.push_back(v);
  Histogram h;
  for (const std::uint64_t v : values) h.Record(v);
  EXPECT_EQ(h.Percentile(0.5), 50);
  EXPECT_EQ(h.Percentile(0.9), 90);
  EXPECT_EQ(h.Percentile(0.99), 99);
  EXPECT_EQ(h.Percentile(1.0), 100);
  EXPECT_EQ(h.Percentile(0.0), 1);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(HistogramTest, BucketsTileTheRangeWithoutGaps) {
  for (std::size_t i = 0; i + 1 < Histogram::kBuckets; ++i) {
    ASSERT_EQ(Histogram::LowestIn(i) + Histogram::WidthOf(i), Histogram::LowestIn(i + 1)) << i;
    ASSERT_EQ(Histogram::IndexOf(Histogram::LowestIn(i)), i);
    ASSERT_EQ(Histogram::IndexOf(Histogram::LowestIn(i) + Histogram::WidthOf(i) - 1), i);
  }
  EXPECT_EQ(Histogram::IndexOf(Histogram::kMaxTrackable), Histogram::kBuckets - 1);
}

TEST(HistogramTest, RelativeWidthIsBounded) {
  // Below 2^(kSubBits+1) every value has its own bucket; above, widths grow with the values.
  constexpr std::size_t kLinear = std::size_t{2} << Histogram::kSubBits;
  for (std::size_t i = 0; i < kLinear; ++i) ASSERT_EQ(Histogram::WidthOf(i), 1u);
  for (std::size_t i = kLinear; i < Histogram::kBuckets; ++i) {
    ASSERT_LE(static_cast<double>(Histogram::WidthOf(i)) / static_cast<double>(Histogram::LowestIn(i)),
              1.0 / (1 << Histogram::kSubBits))
        << i;
  }
}

TEST(HistogramTest, UniformDataMatchesExactPercentiles) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::uint64_t> dist(100, 10'000'000);
  std::vector<std::uint64_t> values(100'000);
  for (std::uint64_t& v : values) v = dist(rng);
  ExpectWithinBound(values);
}

TEST(HistogramTest, HeavyTailedDataMatchesExactPercentiles) {
  // Latency-like: a tight body around 300 ns and a log-normal tail out to milliseconds.
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(std::log(300.0), 0.8);
  std::vector<std::uint64_t> values(200'000);
  for (std::uint64_t& v : values) v = static_cast<std::uint64_t>(dist(rng)) + 1;
  values[17] = 50'000'000;  // one 50 ms outlier: the max is exact
  ExpectWithinBound(values);
}

TEST(HistogramTest, ValuesAboveTheRangeKeepAnExactMax) {
  Histogram h;
  h.Record(10);
  h.Record(Histogram::kMaxTrackable * 4);
  EXPECT_EQ(h.max(), Histogram::kMaxTrackable * 4);
  EXPECT_EQ(h.Percentile(1.0), static_cast<double>(Histogram::kMaxTrackable * 4));
  EXPECT_EQ(h.Percentile(0.5), 10);
}

}  // namespace
}  // namespace eshm_bench
