#include "tools/bridge/frame.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tools/bridge/crc32c.h"

namespace eshm::bridge {
namespace {

std::vector<std::byte> Bytes(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

std::vector<std::byte> DataFrameBytes(std::uint64_t stream, std::uint64_t seq, const std::vector<std::byte>& payload) {
  const auto header = EncodeDataHeader(stream, seq, static_cast<std::uint32_t>(payload.size()), Crc32c(payload));
  std::vector<std::byte> frame(header.begin(), header.end());
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

StatusFrame SomeStatus() {
  StatusFrame status;
  status.stream_id = 0x1122334455667788;
  status.resend = true;
  status.oldest_seq = 10;
  status.next_seq = 25;
  status.acked_stream_id = 0x99;
  status.delivered_seq = 7;
  status.accepted_seq = 9;
  status.app_state = 2;
  return status;
}

TEST(Crc32cTest, KnownValue) {
  // The CRC-32C check value (RFC 3720, appendix B.4).
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32c(Bytes("6789"), Crc32c(Bytes("12345"))), 0xE3069283u);
}

TEST(FrameTest, StatusRoundTrip) {
  const auto bytes = EncodeStatus(SomeStatus());
  absl::StatusOr<Frame> frame = DecodeFrame(bytes, 1000);
  ASSERT_TRUE(frame.ok()) << frame.status();
  const StatusFrame& s = std::get<StatusFrame>(*frame);
  EXPECT_EQ(s.stream_id, 0x1122334455667788u);
  EXPECT_TRUE(s.resend);
  EXPECT_EQ(s.oldest_seq, 10u);
  EXPECT_EQ(s.next_seq, 25u);
  EXPECT_EQ(s.acked_stream_id, 0x99u);
  EXPECT_EQ(s.delivered_seq, 7u);
  EXPECT_EQ(s.accepted_seq, 9u);
  EXPECT_EQ(s.app_state, 2);
}

TEST(FrameTest, DataRoundTrip) {
  const std::vector<std::byte> payload = Bytes("hello, far side");
  const std::vector<std::byte> bytes = DataFrameBytes(5, 42, payload);
  absl::StatusOr<Frame> frame = DecodeFrame(bytes, 1000);
  ASSERT_TRUE(frame.ok()) << frame.status();
  const DataFrame& d = std::get<DataFrame>(*frame);
  EXPECT_EQ(d.stream_id, 5u);
  EXPECT_EQ(d.seq, 42u);
  ASSERT_EQ(d.payload.size(), payload.size());
  EXPECT_EQ(std::memcmp(d.payload.data(), payload.data(), payload.size()), 0);
}

TEST(FrameTest, EmptyPayloadIsAMessage) {
  absl::StatusOr<Frame> frame = DecodeFrame(DataFrameBytes(5, 1, {}), 1000);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_TRUE(std::get<DataFrame>(*frame).payload.empty());
}

// Any single flipped bit, anywhere, is refused: nothing damaged is ever taken for a good frame.
TEST(FrameTest, EveryFlippedBitIsRefused) {
  const auto status = EncodeStatus(SomeStatus());
  const std::vector<std::byte> data = DataFrameBytes(5, 42, Bytes("payload bytes of some length"));
  for (std::vector<std::byte> frame : {std::vector<std::byte>(status.begin(), status.end()), data}) {
    for (std::size_t i = 0; i < frame.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::vector<std::byte> damaged = frame;
        damaged[i] ^= std::byte{static_cast<unsigned char>(1u << bit)};
        EXPECT_FALSE(DecodeFrame(damaged, 1000).ok()) << "byte " << i << " bit " << bit;
      }
    }
  }
}

TEST(FrameTest, EveryTruncationIsRefused) {
  const std::vector<std::byte> data = DataFrameBytes(5, 42, Bytes("payload"));
  for (std::size_t size = 0; size < data.size(); ++size) {
    EXPECT_FALSE(DecodeFrame(std::span<const std::byte>(data).first(size), 1000).ok()) << size;
  }
  const auto status = EncodeStatus(SomeStatus());
  for (std::size_t size = 0; size < status.size(); ++size) {
    EXPECT_FALSE(DecodeFrame(std::span<const std::byte>(status).first(size), 1000).ok()) << size;
  }
  std::vector<std::byte> longer(status.begin(), status.end());
  longer.push_back(std::byte{0});
  EXPECT_FALSE(DecodeFrame(longer, 1000).ok());
}

TEST(FrameTest, PayloadAboveTheLocalMaximumIsRefused) {
  const std::vector<std::byte> bytes = DataFrameBytes(5, 1, std::vector<std::byte>(101));
  EXPECT_TRUE(DecodeFrame(bytes, 101).ok());
  absl::StatusOr<Frame> frame = DecodeFrame(bytes, 100);
  ASSERT_FALSE(frame.ok());
  EXPECT_NE(frame.status().message().find("largest message"), std::string::npos) << frame.status();
}

// Well-formed frames (checksums right) whose fields say impossible things are refused too.
TEST(FrameTest, ImpossibleFieldsAreRefused) {
  StatusFrame status = SomeStatus();
  status.oldest_seq = 26;  // beyond next_seq
  EXPECT_FALSE(DecodeFrame(EncodeStatus(status), 1000).ok());
  status = SomeStatus();
  status.oldest_seq = 0;
  EXPECT_FALSE(DecodeFrame(EncodeStatus(status), 1000).ok());
  status = SomeStatus();
  status.app_state = 4;
  EXPECT_FALSE(DecodeFrame(EncodeStatus(status), 1000).ok());
  status = SomeStatus();
  status.stream_id = 0;
  EXPECT_FALSE(DecodeFrame(EncodeStatus(status), 1000).ok());
  status = SomeStatus();
  status.acked_stream_id = 0;  // acknowledging messages of no stream
  EXPECT_FALSE(DecodeFrame(EncodeStatus(status), 1000).ok());
  status = SomeStatus();
  status.accepted_seq = 6;  // fewer accepted than delivered
  EXPECT_FALSE(DecodeFrame(EncodeStatus(status), 1000).ok());
  EXPECT_FALSE(DecodeFrame(DataFrameBytes(5, 0, Bytes("x")), 1000).ok());
  EXPECT_FALSE(DecodeFrame(DataFrameBytes(0, 1, Bytes("x")), 1000).ok());
}

TEST(FrameTest, RandomBytesAreRefusedWithoutCrashing) {
  std::mt19937_64 random(1);
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::byte> bytes(random() % 120);
    for (std::byte& b : bytes) b = static_cast<std::byte>(random());
    if (bytes.size() >= 6 && i % 2 == 0) {
      // Give half of them a valid magic, version and type so that the deeper checks run.
      const std::uint32_t magic = 0x31524245;
      std::memcpy(bytes.data(), &magic, 4);
      bytes[4] = std::byte{kFrameVersion};
      bytes[5] = std::byte{static_cast<unsigned char>(1 + random() % 2)};
    }
    EXPECT_FALSE(DecodeFrame(bytes, 1000).ok());
  }
}

}  // namespace
}  // namespace eshm::bridge
