// The frames eshm-bridge exchanges over ZeroMQ (docs/bridge.md, section 2): DATA carries one message of a
// stream under its sequence number, STATUS carries the cumulative acknowledgement, the sender's window
// bounds and the state of its local application. Everything is little-endian at fixed offsets.
//
// Decoding treats its input as hostile: every field is checked, and a frame that fails a check is refused
// with an error saying which, so that nothing from it is ever delivered.
#ifndef ESHM_TOOLS_BRIDGE_FRAME_H_
#define ESHM_TOOLS_BRIDGE_FRAME_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

#include "absl/status/statusor.h"

namespace eshm::bridge {

inline constexpr std::size_t kCommonHeaderBytes = 16;
inline constexpr std::size_t kDataHeaderBytes = 40;
inline constexpr std::size_t kStatusFrameBytes = 64;
inline constexpr std::uint8_t kFrameVersion = 1;
// STATUS flag: the receiver asks the sender to send again from `delivered_seq + 1`.
inline constexpr std::uint16_t kFlagResend = 1;

// The state of a bridge's local application, as PeerState numbers it (eshm/channel.h).
inline constexpr std::uint8_t kMaxAppState = 3;

struct StatusFrame {
  std::uint64_t stream_id = 0;        // the sender's outgoing stream
  bool resend = false;
  std::uint64_t oldest_seq = 1;       // oldest sequence number the sender still holds (= next_seq if none)
  std::uint64_t next_seq = 1;         // what its next new message will get
  std::uint64_t acked_stream_id = 0;  // the stream it receives (0: none adopted yet)
  std::uint64_t delivered_seq = 0;    // cumulative acknowledgement of that stream: in its local ring
  std::uint64_t accepted_seq = 0;     // received in order (>= delivered_seq; the rest waits for ring room)
  std::uint8_t app_state = 0;         // PeerState of its local application
};

struct DataFrame {
  std::uint64_t stream_id = 0;
  std::uint64_t seq = 0;
  std::uint32_t payload_crc = 0;
  std::span<const std::byte> payload;  // points into the decoded buffer
};

using Frame = std::variant<StatusFrame, DataFrame>;

std::array<std::byte, kStatusFrameBytes> EncodeStatus(const StatusFrame& status);
// The 40 bytes that precede a DATA frame's payload. `payload_crc` is Crc32c(payload), which the caller
// already has (it travels with the message from the local ring on).
std::array<std::byte, kDataHeaderBytes> EncodeDataHeader(std::uint64_t stream_id, std::uint64_t seq,
                                                         std::uint32_t payload_bytes, std::uint32_t payload_crc);

// Decodes and checks one frame. A DATA payload larger than `max_payload_bytes` is refused (the local ring
// could never take it). InvalidArgument or DataLoss (a checksum) say what is wrong.
absl::StatusOr<Frame> DecodeFrame(std::span<const std::byte> bytes, std::uint64_t max_payload_bytes);

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_FRAME_H_
