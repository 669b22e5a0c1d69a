// CRC-32C (Castagnoli), the checksum eshm-bridge puts on every frame and every window record: it catches
// a message damaged anywhere between the local ring it left and the far ring it enters (window file, wire).
#ifndef ESHM_TOOLS_BRIDGE_CRC32C_H_
#define ESHM_TOOLS_BRIDGE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace eshm::bridge {

// CRC-32C of `data`, continuing from `crc` (the result of an earlier call; 0 to start).
std::uint32_t Crc32c(std::span<const std::byte> data, std::uint32_t crc = 0);

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_CRC32C_H_
