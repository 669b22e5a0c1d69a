#include "tools/bridge/crc32c.h"

#include <cstdio>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace eshm::bridge {
namespace {

std::span<const std::byte> Bytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

// The definition, one bit at a time: what both fast paths must agree with.
std::uint32_t BitwiseCrc32c(std::span<const std::byte> data, std::uint32_t crc) {
  crc = ~crc;
  for (std::byte b : data) {
    crc ^= static_cast<std::uint32_t>(b);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
  }
  return ~crc;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_internal::Portable(Bytes("123456789"), 0), 0xE3069283u);
  EXPECT_EQ(Crc32c({}), 0u);
  EXPECT_EQ(Crc32c({}, 0x12345678u), 0x12345678u);  // nothing to add: the running value is unchanged
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF, and ascending 0..31.
  std::vector<std::byte> block(32, std::byte{0});
  EXPECT_EQ(Crc32c(block), 0x8A9136AAu);
  std::fill(block.begin(), block.end(), std::byte{0xFF});
  EXPECT_EQ(Crc32c(block), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) block[i] = static_cast<std::byte>(i);
  EXPECT_EQ(Crc32c(block), 0x46DD794Eu);
}

TEST(Crc32cTest, PathsAgreeOnEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<std::byte> buffer(64 + 8 + 4096);
  for (std::byte& b : buffer) b = static_cast<std::byte>(rng());
  const bool hardware = crc32c_internal::HardwareAvailable();
  if (!hardware) std::printf("no crc32 instruction on this CPU: checking the table path only\n");
  for (std::size_t start = 0; start < 8; ++start) {
    for (std::size_t length = 0; length <= 64; ++length) {
      const std::span<const std::byte> data(buffer.data() + start, length);
      for (std::uint32_t seed : {0u, 0xE3069283u}) {
        const std::uint32_t expected = BitwiseCrc32c(data, seed);
        EXPECT_EQ(crc32c_internal::Portable(data, seed), expected) << "start " << start << " length " << length;
        if (hardware) {
          EXPECT_EQ(crc32c_internal::Hardware(data, seed), expected) << "start " << start << " length " << length;
        }
        EXPECT_EQ(Crc32c(data, seed), expected);
      }
    }
  }
  // A long run, and one split at every odd place: continuing from an earlier result is the same CRC.
  const std::span<const std::byte> all(buffer.data() + 3, 4096);
  const std::uint32_t whole = BitwiseCrc32c(all, 0);
  EXPECT_EQ(crc32c_internal::Portable(all, 0), whole);
  if (hardware) {
    EXPECT_EQ(crc32c_internal::Hardware(all, 0), whole);
  }
  for (std::size_t split = 1; split < all.size(); split += 301) {
    EXPECT_EQ(Crc32c(all.subspan(split), Crc32c(all.first(split))), whole) << "split at " << split;
  }
}

}  // namespace
}  // namespace eshm::bridge
