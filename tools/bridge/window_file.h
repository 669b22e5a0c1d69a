// The file that makes an eshm-bridge restartable (docs/bridge.md, section 3): its outgoing window (the
// messages taken from the local ring that the far bridge has not acknowledged yet, with their sequence
// numbers) and its incoming position (the far stream and the last of its messages delivered into the local
// ring). It lives in shared memory (default /dev/shm), so it survives a kill -9 of the bridge as the rings do.
//
// Crash consistency: a record is written before the tail that covers it is published, and the published
// positions are what a restarted bridge trusts; stores that commit are release stores so that no
// instruction a kill lands on leaves a position covering bytes not yet written. The file is re-validated
// completely on open (positions, every record's sequence number and CRC); a damaged file is refused with an
// error naming it. One bridge at a time holds the file (an OFD write lock).
//
// Single-threaded: the bridge's one thread uses it.
#ifndef ESHM_TOOLS_BRIDGE_WINDOW_FILE_H_
#define ESHM_TOOLS_BRIDGE_WINDOW_FILE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace eshm::bridge {

class WindowFile {
 public:
  // A record of the window: the message `seq`, `length` bytes at byte position `position` of the log.
  struct Entry {
    std::uint64_t seq = 0;
    std::uint64_t position = 0;  // monotonic; the record header is at position % capacity
    std::uint32_t length = 0;
    std::uint32_t crc = 0;
  };

  static constexpr std::uint64_t kRecordHeaderBytes = 16;
  // The log bytes a message of `length` bytes takes.
  static constexpr std::uint64_t RecordBytes(std::uint64_t length) { return kRecordHeaderBytes + ((length + 7) & ~std::uint64_t{7}); }

  // Opens the file at `path`, or creates it with a log of `capacity` bytes (rounded up to a multiple of 8)
  // and a new random stream id. An existing file keeps its own capacity (see capacity()).
  static absl::StatusOr<WindowFile> Open(const std::string& path, std::uint64_t capacity);

  WindowFile(WindowFile&& other) noexcept;
  WindowFile& operator=(WindowFile&& other) noexcept;
  WindowFile(const WindowFile&) = delete;
  WindowFile& operator=(const WindowFile&) = delete;
  ~WindowFile();

  const std::string& path() const { return path_; }
  std::uint64_t capacity() const { return capacity_; }
  bool created() const { return created_; }  // this Open created the file (a new stream)

  // ---- Outgoing window ----
  std::uint64_t stream_id() const;
  std::uint64_t next_seq() const { return next_seq_; }
  std::uint64_t oldest_seq() const { return entries_.empty() ? next_seq_ : entries_.front().seq; }
  std::uint64_t used_bytes() const;
  // Whether a message of `length` bytes fits now (it never does if RecordBytes(length) > capacity()).
  bool Fits(std::uint64_t length) const { return used_bytes() + RecordBytes(length) <= capacity_; }
  // Appends `message` (whose Crc32c is `crc`) under next_seq(), which it returns. Requires Fits().
  std::uint64_t Append(std::span<const std::byte> message, std::uint32_t crc);
  const std::deque<Entry>& entries() const { return entries_; }
  // Copies `entry`'s payload into `out` (entry.length bytes) and checks its CRC: DataLoss if the file was
  // damaged since the message was appended.
  absl::Status Read(const Entry& entry, std::span<std::byte> out) const;
  // Drops every record up to and including `seq` (the far side has it in its ring).
  void Acknowledge(std::uint64_t seq);

  // ---- Incoming position ----
  std::uint64_t far_stream_id() const;
  std::uint64_t far_delivered_seq() const;
  // Starts receiving stream `stream_id`, every message up to `delivered_seq` counted as delivered.
  void AdoptFarStream(std::uint64_t stream_id, std::uint64_t delivered_seq);
  // Message `seq` of the far stream is in the local ring.
  void SetDelivered(std::uint64_t seq);

 private:
  struct Header;
  WindowFile() = default;
  absl::Status Initialize(std::uint64_t capacity);
  absl::Status Validate(std::uint64_t file_bytes);
  void CopyOut(std::uint64_t position, std::span<std::byte> out) const;
  void CopyIn(std::uint64_t position, std::span<const std::byte> in);
  Header* header() const;
  void Unmap();

  std::string path_;
  int fd_ = -1;
  std::byte* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  std::byte* log_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t next_seq_ = 1;
  bool created_ = false;
  std::deque<Entry> entries_;
};

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_WINDOW_FILE_H_
