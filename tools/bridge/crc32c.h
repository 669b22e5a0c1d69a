// CRC-32C (Castagnoli), the checksum eshm-bridge puts on every frame and every window record: it catches
// a message damaged anywhere between the local ring it left and the far ring it enters (window file, wire).
#ifndef ESHM_TOOLS_BRIDGE_CRC32C_H_
#define ESHM_TOOLS_BRIDGE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace eshm::bridge {

// CRC-32C of `data`, continuing from `crc` (the result of an earlier call; 0 to start). Uses the CPU's
// crc32 instruction where it has one (x86-64 with SSE4.2, checked once at run time), a table otherwise;
// both give the same result.
std::uint32_t Crc32c(std::span<const std::byte> data, std::uint32_t crc = 0);

namespace crc32c_internal {
// The two implementations Crc32c chooses between, for the test that checks they agree.
std::uint32_t Portable(std::span<const std::byte> data, std::uint32_t crc);
// Only where HardwareAvailable() is true.
std::uint32_t Hardware(std::span<const std::byte> data, std::uint32_t crc);
bool HardwareAvailable();
}  // namespace crc32c_internal

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_CRC32C_H_
