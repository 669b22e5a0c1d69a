#include "tools/bridge/frame.h"

#include <bit>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tools/bridge/crc32c.h"

namespace eshm::bridge {
namespace {

constexpr std::uint32_t kMagic = 0x31524245;  // "EBR1" in little-endian bytes
constexpr std::uint8_t kTypeStatus = 1;
constexpr std::uint8_t kTypeData = 2;

template <typename T>
void Put(std::byte* out, std::size_t offset, T value) {
  static_assert(std::endian::native == std::endian::little, "eshm-bridge frames are little-endian");
  std::memcpy(out + offset, &value, sizeof(T));
}

template <typename T>
T Get(const std::byte* in, std::size_t offset) {
  T value;
  std::memcpy(&value, in + offset, sizeof(T));
  return value;
}

void PutCommon(std::byte* out, std::uint8_t type, std::uint16_t flags, std::uint64_t stream_id) {
  Put<std::uint32_t>(out, 0, kMagic);
  Put<std::uint8_t>(out, 4, kFrameVersion);
  Put<std::uint8_t>(out, 5, type);
  Put<std::uint16_t>(out, 6, flags);
  Put<std::uint64_t>(out, 8, stream_id);
}

bool AllZero(const std::byte* in, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) {
    if (in[i] != std::byte{0}) return false;
  }
  return true;
}

absl::StatusOr<Frame> DecodeStatus(std::span<const std::byte> bytes, std::uint16_t flags) {
  const std::byte* in = bytes.data();
  if (bytes.size() != kStatusFrameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("STATUS frame of ", bytes.size(), " bytes (it has ", kStatusFrameBytes, ")"));
  }
  if (Crc32c(bytes.first(60)) != Get<std::uint32_t>(in, 60)) {
    return absl::DataLossError("STATUS frame fails its checksum");
  }
  if ((flags & ~kFlagResend) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("STATUS frame with unknown flags 0x", absl::Hex(flags)));
  }
  if (!AllZero(in + 57, 3)) return absl::InvalidArgumentError("STATUS frame with non-zero reserved bytes");
  StatusFrame status;
  status.stream_id = Get<std::uint64_t>(in, 8);
  status.resend = (flags & kFlagResend) != 0;
  status.oldest_seq = Get<std::uint64_t>(in, 16);
  status.next_seq = Get<std::uint64_t>(in, 24);
  status.acked_stream_id = Get<std::uint64_t>(in, 32);
  status.delivered_seq = Get<std::uint64_t>(in, 40);
  status.accepted_seq = Get<std::uint64_t>(in, 48);
  status.app_state = Get<std::uint8_t>(in, 56);
  if (status.stream_id == 0) return absl::InvalidArgumentError("STATUS frame with stream id 0");
  if (status.oldest_seq == 0 || status.oldest_seq > status.next_seq) {
    return absl::InvalidArgumentError(absl::StrCat("STATUS frame with a window of [", status.oldest_seq, ", ",
                                                   status.next_seq, ")"));
  }
  if (status.acked_stream_id == 0 && status.accepted_seq != 0) {
    return absl::InvalidArgumentError("STATUS frame acknowledging messages of no stream");
  }
  if (status.accepted_seq < status.delivered_seq) {
    return absl::InvalidArgumentError(absl::StrCat("STATUS frame with ", status.delivered_seq, " delivered but only ",
                                                   status.accepted_seq, " accepted"));
  }
  if (status.app_state > kMaxAppState) {
    return absl::InvalidArgumentError(absl::StrCat("STATUS frame with application state ", status.app_state));
  }
  return Frame(status);
}

absl::StatusOr<Frame> DecodeData(std::span<const std::byte> bytes, std::uint16_t flags,
                                 std::uint64_t max_payload_bytes) {
  const std::byte* in = bytes.data();
  if (bytes.size() < kDataHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("DATA frame of ", bytes.size(), " bytes, shorter than its header"));
  }
  if (Crc32c(bytes.first(32)) != Get<std::uint32_t>(in, 32)) {
    return absl::DataLossError("DATA frame header fails its checksum");
  }
  if (flags != 0) return absl::InvalidArgumentError(absl::StrCat("DATA frame with flags 0x", absl::Hex(flags)));
  if (!AllZero(in + 36, 4)) return absl::InvalidArgumentError("DATA frame with non-zero reserved bytes");
  DataFrame data;
  data.stream_id = Get<std::uint64_t>(in, 8);
  data.seq = Get<std::uint64_t>(in, 16);
  const std::uint32_t length = Get<std::uint32_t>(in, 24);
  data.payload_crc = Get<std::uint32_t>(in, 28);
  if (data.stream_id == 0 || data.seq == 0) {
    return absl::InvalidArgumentError("DATA frame with stream id or sequence number 0");
  }
  if (length != bytes.size() - kDataHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("DATA frame says ", length, " payload bytes but carries ",
                                                   bytes.size() - kDataHeaderBytes));
  }
  if (length > max_payload_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("DATA frame of ", length,
                                                   " payload bytes, more than the local channel's largest message (",
                                                   max_payload_bytes, ")"));
  }
  data.payload = bytes.subspan(kDataHeaderBytes);
  if (Crc32c(data.payload) != data.payload_crc) {
    return absl::DataLossError(absl::StrCat("DATA frame ", data.seq, ": payload fails its checksum"));
  }
  return Frame(data);
}

}  // namespace

std::array<std::byte, kStatusFrameBytes> EncodeStatus(const StatusFrame& status) {
  std::array<std::byte, kStatusFrameBytes> out{};
  PutCommon(out.data(), kTypeStatus, status.resend ? kFlagResend : 0, status.stream_id);
  Put<std::uint64_t>(out.data(), 16, status.oldest_seq);
  Put<std::uint64_t>(out.data(), 24, status.next_seq);
  Put<std::uint64_t>(out.data(), 32, status.acked_stream_id);
  Put<std::uint64_t>(out.data(), 40, status.delivered_seq);
  Put<std::uint64_t>(out.data(), 48, status.accepted_seq);
  Put<std::uint8_t>(out.data(), 56, status.app_state);
  Put<std::uint32_t>(out.data(), 60, Crc32c(std::span<const std::byte>(out).first(60)));
  return out;
}

std::array<std::byte, kDataHeaderBytes> EncodeDataHeader(std::uint64_t stream_id, std::uint64_t seq,
                                                         std::uint32_t payload_bytes, std::uint32_t payload_crc) {
  std::array<std::byte, kDataHeaderBytes> out{};
  PutCommon(out.data(), kTypeData, 0, stream_id);
  Put<std::uint64_t>(out.data(), 16, seq);
  Put<std::uint32_t>(out.data(), 24, payload_bytes);
  Put<std::uint32_t>(out.data(), 28, payload_crc);
  Put<std::uint32_t>(out.data(), 32, Crc32c(std::span<const std::byte>(out).first(32)));
  return out;
}

absl::StatusOr<Frame> DecodeFrame(std::span<const std::byte> bytes, std::uint64_t max_payload_bytes) {
  if (bytes.size() < kCommonHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("frame of ", bytes.size(), " bytes, shorter than any frame"));
  }
  const std::byte* in = bytes.data();
  if (Get<std::uint32_t>(in, 0) != kMagic) {
    return absl::InvalidArgumentError("not an eshm-bridge frame (bad magic): is the far end an eshm-bridge?");
  }
  if (Get<std::uint8_t>(in, 4) != kFrameVersion) {
    return absl::InvalidArgumentError(absl::StrCat("frame version ", Get<std::uint8_t>(in, 4), " (this bridge speaks ",
                                                   kFrameVersion, "): run the same eshm-bridge on both hosts"));
  }
  const std::uint16_t flags = Get<std::uint16_t>(in, 6);
  switch (Get<std::uint8_t>(in, 5)) {
    case kTypeStatus:
      return DecodeStatus(bytes, flags);
    case kTypeData:
      return DecodeData(bytes, flags, max_payload_bytes);
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown frame type ", Get<std::uint8_t>(in, 5)));
  }
}

}  // namespace eshm::bridge
