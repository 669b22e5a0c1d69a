#include "tools/bridge/crc32c.h"

#include <array>
#include <bit>
#include <cstring>

namespace eshm::bridge {
namespace crc32c_internal {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78u;  // reflected Castagnoli polynomial

// Slice-by-8: kTables[k][b] is the CRC of byte b followed by k zero bytes, so eight input bytes are folded
// with eight independent lookups instead of eight dependent ones.
constexpr std::array<std::array<std::uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<std::uint32_t, 256>, 8> tables{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kPolynomial : 0u);
    tables[0][i] = crc;
  }
  for (std::uint32_t i = 0; i < 256; ++i) {
    for (int k = 1; k < 8; ++k) tables[k][i] = (tables[k - 1][i] >> 8) ^ tables[0][tables[k - 1][i] & 0xFFu];
  }
  return tables;
}

constexpr std::array<std::array<std::uint32_t, 256>, 8> kTables = MakeTables();

std::uint32_t Load32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);  // unaligned and aliasing-safe; the frames are little-endian like x86
  return v;
}

}  // namespace

std::uint32_t Portable(std::span<const std::byte> data, std::uint32_t crc) {
  crc = ~crc;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  auto byte_step = [&crc](std::byte b) { crc = kTables[0][(crc ^ static_cast<std::uint32_t>(b)) & 0xFFu] ^ (crc >> 8); };
  if constexpr (std::endian::native == std::endian::little) {
    for (; n >= 8; n -= 8, p += 8) {
      const std::uint32_t lo = Load32(p) ^ crc;
      const std::uint32_t hi = Load32(p + 4);
      crc = kTables[7][lo & 0xFF] ^ kTables[6][(lo >> 8) & 0xFF] ^ kTables[5][(lo >> 16) & 0xFF] ^ kTables[4][lo >> 24] ^
            kTables[3][hi & 0xFF] ^ kTables[2][(hi >> 8) & 0xFF] ^ kTables[1][(hi >> 16) & 0xFF] ^ kTables[0][hi >> 24];
    }
  }
  for (; n > 0; --n, ++p) byte_step(*p);
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t Hardware(std::span<const std::byte> data, std::uint32_t crc) {
  std::uint64_t c = ~crc;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    c = __builtin_ia32_crc32di(c, v);
  }
  std::uint32_t c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(*p));
  return ~c32;
}

bool HardwareAvailable() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}
#else
std::uint32_t Hardware(std::span<const std::byte> data, std::uint32_t crc) { return Portable(data, crc); }
bool HardwareAvailable() { return false; }
#endif

}  // namespace crc32c_internal

std::uint32_t Crc32c(std::span<const std::byte> data, std::uint32_t crc) {
  return crc32c_internal::HardwareAvailable() ? crc32c_internal::Hardware(data, crc)
                                              : crc32c_internal::Portable(data, crc);
}

}  // namespace eshm::bridge
