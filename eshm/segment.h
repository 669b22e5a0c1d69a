// A named POSIX shared-memory segment holding eshm's two rings: creation, opening, validation, removal, and
// the one decision about the file at a channel's path (Acquire).
//
// The segment lives at /dev/shm/eshm_<name>. A segment is created complete before it gets its name:
// Create() makes an unnamed file in /dev/shm (O_TMPFILE) with an explicit mode (applied whatever the umask),
// reserves its memory with posix_fallocate (so a full /dev/shm is an error now rather than a SIGBUS later),
// fills in the header, writes the layout version last, and only then links the file to its name, which
// fails if the name is taken. So a file at a segment path is either a complete segment or not one of ours,
// and a creator killed at any moment leaves nothing behind: the kernel frees an unnamed file with its last
// descriptor. (Needs /proc, through which the file is linked.)
//
// Open() checks the file before trusting it, without waiting and without ever writing to it or removing it:
// that it is a regular file (anything else is refused before it is opened, so a FIFO cannot block the
// opener), owned by this user, of eshm's magic and layout version, and self-consistent (sizes, offsets).
//
// Acquire() is the single place that decides what happens to the file at a name: create a segment, adopt
// the one there, replace a dead master's segment of another shape, or refuse; and which role lock to take
// on the result. See its comment for the protocol that makes replacement safe against concurrent openers.
//
// Memory ordering: the creator's release store of layout_version pairs with the opener's acquire load
// (SYNC(layout-version) in segment.cc); every other header field is written before it and read after it,
// and copied into the Segment at open so that later changes by a peer cannot move its rings. (Linking the
// file to its name happens after the store, so an opener always finds the version written.)
//
// Truncation. Any process that can open the file can ftruncate it under our mapping. Three things notice:
//  * the SIGBUS guard (internal/sigbus_guard.h), when a page past the new end is touched: the mapping is
//    replaced by zero pages and the segment marked lost;
//  * TrailerIntact(), one load of the canary at the segment's very end (layout.h), for the read path: no
//    system call, so it can run after every message copied (why that suffices: at TrailerIntact below);
//  * CheckTruncation(), fstat plus the canary, for a periodic check (the channel's liveness tick): it also
//    sees a truncation that no access touches, e.g. while a reader waits on a record that now reads zero.
// Each marks the segment lost for good: truncated() is sticky.
//
// Threading: thread-compatible. A Segment only owns the mapping; the rings inside it are shared.
// truncated(), TrailerIntact() and CheckTruncation() may be called from any thread.
#ifndef ESHM_SEGMENT_H_
#define ESHM_SEGMENT_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/deadline.h"
#include "eshm/internal/segment_file_check.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment_name.h"

namespace eshm {

struct SegmentOptions {
  std::uint64_t m2s_capacity = 1 << 20;  // ring data bytes, master -> slave; a power of two
  std::uint64_t s2m_capacity = 1 << 20;  // ring data bytes, slave -> master; a power of two
  // Largest message either direction accepts; 0 means the largest the smaller ring allows.
  std::uint64_t max_message_bytes = 0;
  mode_t mode = 0600;  // file mode, applied exactly (the umask does not narrow it)
};

// The role Acquire claims on the segment it returns.
enum class AcquireRole {
  kMaster,  // the master role: create, take over or replace; refused if a live master holds it
  kSlave,   // the slave role on an existing segment: never creates, replaces or removes anything
  kAuto,    // the master role if it is free, the slave role otherwise
};

struct AcquireOptions {
  AcquireRole role = AcquireRole::kAuto;
  // The segment kMaster and kAuto create when the name is free, and replace a dead master's segment with
  // when that one has another shape (other capacities, or another maximum message size if one is given).
  SegmentOptions shape;
  // Accept a segment owned by another uid (see Segment::Open).
  bool allow_other_owner = false;
  // kMaster only: create a segment, or fail with AlreadyExists if the name is taken by anything.
  bool create_only = false;
  // How long to wait: a slave for a segment to appear at the name, anyone for another process that is
  // deciding whether to replace the segment there. Nothing else waits.
  Deadline deadline = Deadline::Past();
  // How often a waiting slave looks at the name again; it also looks as soon as inotify reports the name
  // created (internal/name_watch.h), so this is only the backstop where inotify is unavailable.
  int retry_interval_ms = 10;
  // Called at least every kAcquireCheckIntervalMs while Acquire waits; a non-OK status ends the wait with
  // that status (Python raises KeyboardInterrupt through it, eshm_demo stops on SIGINT).
  std::function<absl::Status()> check;
};

inline constexpr int kAcquireCheckIntervalMs = 50;

// A segment with a role lock held through its descriptor.
struct AcquiredSegment;

class Segment {
 public:
  // OK if `name` can name a segment: SegmentName::Create(name).status().
  static absl::Status ValidateName(std::string_view name);
  // "/dev/shm/eshm_<name>", for messages and tools: SegmentName::PathOf(name).
  static std::string PathFor(std::string_view name);

  // Each call below that takes a string_view checks the name (InvalidArgument) and calls its SegmentName
  // overload, which checks nothing again.

  // Creates a new segment, complete before it appears at its name; AlreadyExists if anything is there. Takes
  // no role lock.
  static absl::StatusOr<Segment> Create(const SegmentName& name, const SegmentOptions& options);
  static absl::StatusOr<Segment> Create(std::string_view name, const SegmentOptions& options);
  // Opens the segment at the name, waiting until `deadline` for one to appear there (NotFound after). The
  // file must belong to this process's effective uid unless `allow_other_owner`: otherwise another local
  // user could create the name first (with a permissive mode) and intercept the channel. Anything that is
  // not a complete eshm segment of this layout version is refused at once (FailedPrecondition, or DataLoss
  // for a header that contradicts itself; the message names the file and what is wrong with it) and left
  // untouched. A file this process may not read and write is PermissionDenied, naming its owner and mode.
  static absl::StatusOr<Segment> Open(const SegmentName& name, Deadline deadline, bool allow_other_owner = false);
  static absl::StatusOr<Segment> Open(std::string_view name, Deadline deadline, bool allow_other_owner = false);
  // Creates, adopts or replaces the segment at `name` and claims a role on it, or refuses; see segment.cc.
  // It removes a file only after proving it a complete eshm segment of this layout version, of another shape
  // than `options.shape`, whose master is gone; anything else it refuses and leaves untouched.
  static absl::StatusOr<AcquiredSegment> Acquire(const SegmentName& name, const AcquireOptions& options);
  static absl::StatusOr<AcquiredSegment> Acquire(std::string_view name, const AcquireOptions& options);
  // Removes the name, whatever is there (for tools and tests); processes that have it mapped keep using it
  // until they unmap.
  static absl::Status Unlink(std::string_view name);

  // Where this segment's name points now.
  enum class NameState { kThis, kAbsent, kOther };
  NameState name_state() const;
  // Removes the name if it still names this segment, never a successor's. For the holder of this segment's
  // master lock: every process that removes or replaces a segment's name holds that lock (see Acquire), so
  // the name cannot change between the check and the removal.
  void UnlinkNameIfThis() const;

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  const std::string& name() const { return name_.name(); }
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

  // True once another process truncated the file under our mapping and this process noticed (see the file
  // comment): the segment is lost, for good. A plain load or two: for hot paths.
  bool truncated() const {
    // Acquire: pairs with the release stores that set either flag.
    return lost_.load(std::memory_order_acquire) || fault_flag_->load(std::memory_order_acquire);
  }

  // The read path's check: one load of the trailer's canary, after every load the caller made before it
  // (the acquire fence). True if the file still ends where it did. False marks the segment lost.
  //
  // Why one load after copying a message is enough. A truncation to size T (tmpfs, shmem_setattr) first
  // sets the file size, then unmaps every page from round_up(T, page) on in every process (flushing TLBs),
  // and only then zeroes the rest of the page that holds T, [T, round_up(T, page)). Suppose a byte we
  // copied was damaged. Either it lay in an unmapped page, and touching it raised SIGBUS, so the guard
  // turned the whole mapping into zeros, the canary included. Or it lay in the zeroed part of T's page, and
  // we saw the zero, which the kernel wrote after unmapping everything from round_up(T, page) on; ring
  // data ends before trailer_offset, a multiple of the page size, so the canary's page was among those
  // unmapped, and our canary load (ordered after the copy) faults, raising SIGBUS: zeros again. Either
  // way the canary reads wrong. A truncation inside the trailer's own page damages no ring data; it zeroes
  // the canary's last bytes. (The kernel zeroing T's page is a memset whose stores other CPUs may see in
  // any order: that is why the canary must not share a page with ring data.)
  //
  // Residual window: a page fault on the trailer's page already in flight in this process when the size
  // changes (the page's very first touch, or a refault after swap) can map it again after the unmapping,
  // until the kernel removes it; a message damaged in that instant would pass. The liveness tick's
  // CheckTruncation still reports the truncation within one tick. Open touches the trailer, so a first
  // touch is not left for later.
  bool TrailerIntact() const {
    if (internal::CanaryIntactAfterLoads(*trailer_)) return true;
    lost_.store(true, std::memory_order_release);  // pairs with the acquire in truncated()
    return false;
  }

  // The periodic check: fstat (is the file shorter than the segment? the kernel changes the size before
  // it unmaps or zeroes anything) and TrailerIntact (which also sees a file truncated and grown back).
  // True if the segment is lost, by this check or earlier. One system call.
  bool CheckTruncation() const;

  int fd() const { return fd_; }
  dev_t device() const { return device_; }
  ino_t inode() const { return inode_; }

 private:
  explicit Segment(SegmentName name) : name_(std::move(name)) {}
  static std::size_t Index(Direction d) { return static_cast<std::size_t>(d); }
  // A complete segment in an unnamed file; Publish() gives it its name.
  static absl::StatusOr<Segment> CreateUnnamed(const SegmentName& name, const SegmentOptions& options);
  // Links the unnamed file to its name; AlreadyExists if the name is taken.
  absl::Status Publish();
  // Opens what is at the name once: NotFound at once if nothing is.
  static absl::StatusOr<Segment> OpenOnce(const SegmentName& name, bool allow_other_owner);
  // Everything but the name, from `other` (left empty).
  void TakeMappingFrom(Segment& other) noexcept;
  void Reset();
  // Guards the mapping at base_ of size_ bytes (guard_slot_, fault_flag_). False if it could not be.
  bool Guard();

  static const std::atomic<bool> kNeverFaulted;

  SegmentName name_;
  int fd_ = -1;
  int guard_slot_ = -1;  // SIGBUS guard of the mapping
  // The guard slot's "faulted" flag (a never-set one while there is no slot); stays readable forever.
  const std::atomic<bool>* fault_flag_ = &kNeverFaulted;
  // Set (release) once TrailerIntact or CheckTruncation finds the file truncated. Mutable: finding out is
  // not a change of the segment.
  mutable std::atomic<bool> lost_{false};
  const SegmentTrailer* trailer_ = nullptr;
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t epoch_ns_ = 0;
  std::uint64_t max_message_bytes_ = 0;
  std::uint64_t offset_[2] = {0, 0};
  std::uint64_t capacity_[2] = {0, 0};
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

struct AcquiredSegment {
  Segment segment;
  Role role;
};

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_SEGMENT_H_
