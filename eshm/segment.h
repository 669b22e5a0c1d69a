// A named POSIX shared-memory segment holding eshm's two rings: creation, opening, validation, removal.
//
// The segment lives at /dev/shm/eshm_<name>. Create() makes it exclusively, with an explicit mode (applied
// whatever the umask), reserves its memory up front with posix_fallocate (so a full /dev/shm is an error
// now rather than a SIGBUS later), fills in the header, and writes the layout version last. Open() checks
// the file before trusting it: that it is a regular file, large enough, initialized (it waits for the
// version word, with a deadline, when the creator is still at work), ours (magic), of our layout version,
// and self-consistent (sizes and offsets). A failed Open never writes to the file.
//
// Memory ordering: the creator's release store of layout_version pairs with the opener's acquire load
// (SYNC(layout-version) in segment.cc); every other header field is written before it and read after it,
// and copied into the Segment at open so that later changes by a peer cannot move its rings.
//
// Threading: thread-compatible. A Segment only owns the mapping; the rings inside it are shared.
#ifndef ESHM_SEGMENT_H_
#define ESHM_SEGMENT_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"

namespace eshm {

// Longest segment name: the file name /dev/shm/eshm_<name> must fit NAME_MAX (255).
inline constexpr std::size_t kMaxSegmentNameLength = 255 - 5;

struct SegmentOptions {
  std::uint64_t m2s_capacity = 1 << 20;  // ring data bytes, master -> slave; a power of two
  std::uint64_t s2m_capacity = 1 << 20;  // ring data bytes, slave -> master; a power of two
  // Largest message either direction accepts; 0 means the largest the smaller ring allows.
  std::uint64_t max_message_bytes = 0;
  mode_t mode = 0600;  // file mode, applied exactly (the umask does not narrow it)
};

class Segment {
 public:
  // OK if `name` can name a segment: 1 to kMaxSegmentNameLength characters from [A-Za-z0-9._-].
  static absl::Status ValidateName(std::string_view name);
  // "/dev/shm/eshm_<name>", for messages and tools.
  static std::string PathFor(std::string_view name);

  // Creates a new segment; AlreadyExists if one is there.
  static absl::StatusOr<Segment> Create(std::string_view name, const SegmentOptions& options);
  // Opens an existing segment, waiting until `deadline` for its creator to finish initializing it. The file
  // must belong to this process's effective uid unless `allow_other_owner`: otherwise another local user
  // could create the name first (with a permissive mode) and intercept the channel.
  static absl::StatusOr<Segment> Open(std::string_view name, Deadline deadline, bool allow_other_owner = false);
  // Removes the name; processes that have it mapped keep using it until they unmap.
  static absl::Status Unlink(std::string_view name);
  // True if the file at the name was left half-created: never initialized (too small, or no layout version)
  // and its creator is gone (the creator's lock is free). Sets `*inode` to the file examined, so a caller
  // that removes it can check it removes that file. Never writes.
  static bool IsAbandoned(std::string_view name, ino_t* inode);

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  const std::string& name() const { return name_; }
  SegmentHeader* header() const { return reinterpret_cast<SegmentHeader*>(base_); }
  std::uint64_t size_bytes() const { return size_; }
  std::uint64_t creation_epoch_ns() const { return epoch_ns_; }
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }
  std::uint64_t ring_capacity(Direction d) const { return capacity_[Index(d)]; }
  RingControl* ring_control(Direction d) const {
    return reinterpret_cast<RingControl*>(base_ + offset_[Index(d)]);
  }
  std::byte* ring_data(Direction d) const { return base_ + offset_[Index(d)] + kRingControlBytes; }
  // The producer and the consumer of one direction. Each ring must have at most one of each at a time.
  RingProducer MakeProducer(Direction d) const;
  RingConsumer MakeConsumer(Direction d) const;

  // True once another process truncated the file under our mapping: the mapping now holds private zero
  // pages (see internal/sigbus_guard.h) and the segment is lost.
  bool truncated() const;

  int fd() const { return fd_; }
  dev_t device() const { return device_; }
  ino_t inode() const { return inode_; }

 private:
  Segment() = default;
  static std::size_t Index(Direction d) { return static_cast<std::size_t>(d); }
  void Reset();

  std::string name_;
  int fd_ = -1;
  int guard_slot_ = -1;  // SIGBUS guard of the mapping
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t epoch_ns_ = 0;
  std::uint64_t max_message_bytes_ = 0;
  std::uint64_t offset_[2] = {0, 0};
  std::uint64_t capacity_[2] = {0, 0};
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

}  // namespace eshm

#endif  // ESHM_SEGMENT_H_
