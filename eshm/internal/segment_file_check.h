// Is the file at a segment path a complete segment of this layout version, and if not, what is wrong with it?
//
// One answer for the two callers that ask: Segment::Open, which refuses such a file, and InspectSegment
// (segment_inspection.h), which reports it. The checks run in this order: the file's type, its size (and the
// first word of a file too short for a header), the magic and the layout version, the header's fields against
// each other and against the file's size, and the trailer's canary. Nothing here opens, maps, locks or
// writes anything: the caller opens the file, and maps it (read-only or not) under the SIGBUS guard
// (sigbus_guard.h), so that a file cut while it is checked reads as zeros instead of killing the process.
//
// Memory ordering: CheckMappedFile loads the layout version with acquire (SYNC(layout-version): it pairs
// with the creator's release store in segment.cc) before it reads any other field of the header or the
// canary, which the creator wrote before that store.
//
// Threading: thread-safe (no state).
#ifndef ESHM_INTERNAL_SEGMENT_FILE_CHECK_H_
#define ESHM_INTERNAL_SEGMENT_FILE_CHECK_H_

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "eshm/layout.h"

namespace eshm::internal {

enum class SegmentFileDefect {
  kNone,                 // a complete segment of this layout version
  kNotRegularFile,       // a FIFO, directory, socket, symbolic link or device
  kForeign,              // a regular file that eshm did not make: another magic (or none, beside a version)
  kHalfCreated,          // no layout version: never completed (this eshm names only complete segments)
  kTruncated,            // shorter than a header or than its header says, or its trailer's canary is gone
  kIncompatibleVersion,  // eshm's magic, another layout version
  kCorrupt,              // eshm's magic and version, but a header that contradicts itself
};

// The geometry of a header that passed every check, copied out of the file: later writes by a peer cannot
// move what the caller trusts.
struct SegmentFileShape {
  std::uint64_t segment_bytes = 0;
  std::uint64_t creation_epoch_ns = 0;
  std::uint64_t ring_offset[2] = {0, 0};    // indexed by Direction
  std::uint64_t ring_capacity[2] = {0, 0};  // indexed by Direction
  std::uint64_t max_message_bytes = 0;
  std::uint32_t creator_pid = 0;
};

struct SegmentFileCheck {
  SegmentFileDefect defect = SegmentFileDefect::kNone;
  // OK for kNone. Otherwise what is wrong, naming the file, with the code Segment::Open refuses it with:
  // DataLoss for a header that contradicts itself (kCorrupt), FailedPrecondition for everything else.
  absl::Status problem;
  // What to do about it, for someone who wanted to open the file (may be empty). Segment::Open appends it
  // to the problem; an inspection, which wanted to open nothing, leaves it out.
  std::string advice;
  SegmentFileShape shape;  // for kNone

  bool ok() const { return defect == SegmentFileDefect::kNone; }
  // Segment::Open's refusal: the problem followed by the advice.
  absl::Status OpenError() const;
};

// A file whose lstat or fstat gave `mode`: kNotRegularFile (naming what it is) unless it is a regular file.
SegmentFileCheck CheckFileType(const std::string& path, mode_t mode);

// A regular file open as `fd` of `file_bytes` < kSegmentHeaderBytes, too short to be a segment: kForeign if
// its first word (read with pread) is neither zero nor eshm's magic, kTruncated otherwise.
SegmentFileCheck CheckShortFile(int fd, std::uint64_t file_bytes, const std::string& path);

// A regular file of `file_bytes` >= kSegmentHeaderBytes, mapped whole at `base` under the SIGBUS guard: its
// magic, layout version, header and trailer's canary. On kNone, `shape` holds the checked geometry.
SegmentFileCheck CheckMappedFile(const std::byte* base, std::uint64_t file_bytes, const std::string& path);

// One load of the trailer's canary, ordered after every load the caller made before it: true if the file
// still ends where it did, so none of those loads read bytes a truncation had zeroed (Segment::TrailerIntact
// argues why one load suffices).
inline bool CanaryIntactAfterLoads(const SegmentTrailer& trailer) {
  // Acquire fence: orders the caller's earlier loads before the canary's load (free on x86, a load barrier
  // on Arm). This orders against the kernel's zeroing, not against another thread's release.
#if defined(__SANITIZE_THREAD__)
  // GCC rejects atomic_thread_fence under ThreadSanitizer. A compiler barrier keeps the order on x86,
  // which does not reorder loads with loads; a ThreadSanitizer build elsewhere checks races, not this.
  std::atomic_signal_fence(std::memory_order_acquire);
#else
  std::atomic_thread_fence(std::memory_order_acquire);
#endif
  // Relaxed: the fence above orders it; the creator wrote it before its release of the layout version.
  return trailer.canary.load(std::memory_order_relaxed) == kTrailerCanary;
}

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_SEGMENT_FILE_CHECK_H_
