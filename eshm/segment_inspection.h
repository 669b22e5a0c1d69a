// A read-only look at the file at a segment path: what it is, its shape, who holds its roles, its rings'
// counters. For tools (eshmctl) and tests.
//
// An inspection cannot disturb the processes that use the segment, nor the file:
//  * it lstats the path first: a FIFO, a directory, a socket, a symbolic link or a device is reported and
//    never opened (opening a FIFO could block, or wake a process waiting on it) or followed;
//  * it opens a regular file O_RDONLY | O_NOFOLLOW | O_NONBLOCK, and O_NOATIME where the kernel allows it
//    (the file's owner, or CAP_FOWNER; otherwise mapping it may update its access time under relatime): it
//    never creates, writes, removes or renames anything, and changes no other time of the file;
//  * it maps the file PROT_READ under the SIGBUS guard (internal/sigbus_guard.h), so a file truncated while
//    it is inspected reads as zeros and is reported kTruncated, never a crash;
//  * it checks the file with the function Segment::Open uses (internal/segment_file_check.h) before it
//    trusts anything in it;
//  * it asks the kernel whether each role's lock is held (F_OFD_GETLK, role_lock.h) and takes no lock.
//
// A snapshot is not atomic: the peers keep running, and each word is loaded once, so two counters of one
// ring may be apart by what happened between their loads (the queued counts are clamped at zero).
//
// Memory ordering: a role's state is loaded with acquire, pairing with the holder's release store that
// follows its pid, heartbeat and epoch (Channel::TakeRoleControl); a ring's head and tail with acquire,
// pairing with the consumer's and the producer's release stores (ring.h), as Channel::stats does. The other
// words are statistics, loaded relaxed. The trailer's canary is loaded last, ordered after all of them
// (internal::CanaryIntactAfterLoads), so an intact canary means no word above was read from a truncation's
// zeros.
//
// Threading: thread-safe; each call opens and maps the file for itself.
#ifndef ESHM_SEGMENT_INSPECTION_H_
#define ESHM_SEGMENT_INSPECTION_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "eshm/layout.h"
#include "eshm/segment_name.h"

namespace eshm {

// What the file at a segment path turned out to be.
enum class SegmentFileStatus {
  kOk,                   // a complete segment of this layout version, read whole
  kMissing,              // nothing at the path
  kUnreadable,           // could not be looked at: lstat, open (e.g. another user's 0600 file) or mmap failed
  kNotRegularFile,       // a FIFO, directory, socket, symbolic link or device: not opened, not followed
  kForeign,              // a regular file eshm did not make (another magic)
  kHalfCreated,          // no layout version: never completed
  kTruncated,            // shorter than a header or than its header says, its trailer's canary gone, or cut
                         // while it was inspected
  kIncompatibleVersion,  // another layout version
  kCorrupt,              // eshm's magic and version, but a header that contradicts itself
};

struct RoleSnapshot {
  bool lock_held = false;  // some open file description holds the role's lock (an error counts as held)
  std::uint32_t state = 0;  // 0: vacant; the holder sets it after it attached and clears it when it closes
  std::uint32_t pid = 0;
  std::uint64_t heartbeat = 0;
  std::uint64_t attach_epoch = 0;
  std::uint32_t stale_threshold_ms = 0;  // as the holder published it (0: not said)
  std::uint32_t monitor_tid = 0;         // the holder's monitor thread (0: not said)
  std::uint64_t pid_namespace = 0;       // where pid and monitor_tid are valid (0: not said)
  std::uint64_t kernel_watch = 0;        // whom the holder watches through the kernel (layout.h)
  // The holder's monitor thread's voluntary context switches (/proc/PID/task/TID/status), or -1 when they
  // cannot be read here (no thread said, another pid namespace, the thread gone).
  std::int64_t monitor_switches = -1;
  // Whether the peer says it watches this holder's monitor thread (so the holder beats here only once a
  // second, and its thread's switches are its heartbeat).
  bool WatchedBy(const RoleSnapshot& peer) const {
    return attach_epoch != 0 && peer.attach_epoch != 0 &&
           peer.kernel_watch == EncodeKernelWatch(peer.attach_epoch, attach_epoch);
  }
};

struct RingSnapshot {
  std::uint64_t head = 0;  // bytes the consumer has released
  std::uint64_t messages_read = 0;
  std::uint64_t tail = 0;  // bytes the producer has published
  std::uint64_t messages_written = 0;
  std::uint64_t wake_syscalls = 0;  // FUTEX_WAKE calls on this ring, both sides
  std::uint64_t wait_syscalls = 0;  // FUTEX_WAIT calls on this ring, both sides

  std::uint64_t QueuedMessages() const { return messages_written - std::min(messages_written, messages_read); }
  std::uint64_t QueuedBytes() const { return tail - std::min(tail, head); }
};

struct SegmentSnapshot {
  std::string path;
  SegmentFileStatus status = SegmentFileStatus::kMissing;
  // Empty for kOk; otherwise what is wrong, naming the file. It holds the file name's bytes as they are
  // (a listed name may hold any byte but '/' and NUL): escape it before showing it on a terminal.
  std::string problem;

  // The file as fstat saw it, when it was opened (a regular file).
  bool opened = false;
  std::uint64_t file_bytes = 0;
  std::int64_t modified_ns = 0;  // CLOCK_REALTIME
  uid_t uid = 0;
  mode_t mode = 0;  // permission bits
  dev_t device = 0;
  ino_t inode = 0;

  // From a header that passed every check (kOk, and kTruncated when the file was cut afterwards).
  bool shape_known = false;
  std::uint64_t ring_capacity[2] = {0, 0};  // indexed by Direction
  std::uint64_t max_message_bytes = 0;
  std::uint64_t creation_epoch_ns = 0;  // CLOCK_REALTIME
  std::uint32_t creator_pid = 0;

  // The live words, for kOk.
  RoleSnapshot roles[2];  // indexed by Role
  RingSnapshot rings[2];  // indexed by Direction
  bool trailer_intact = false;
  std::int64_t sampled_ns = 0;  // CLOCK_MONOTONIC, once the words were read

  bool ok() const { return status == SegmentFileStatus::kOk; }
};

// Inspects the segment `name`.
SegmentSnapshot InspectSegment(const SegmentName& name);

// Inspects the file kSegmentDirectory/kSegmentFilePrefix<listed_name>, for a name ListSegmentFiles gave,
// which need not be a valid SegmentName. A name with '/' or NUL names no file there: kMissing.
SegmentSnapshot InspectSegmentFile(std::string_view listed_name);

// The names of the files in kSegmentDirectory that begin with kSegmentFilePrefix, without the prefix,
// sorted. Anyone who can write to the directory can add one: a name may hold any byte but '/' and NUL.
absl::StatusOr<std::vector<std::string>> ListSegmentFiles();

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_SEGMENT_INSPECTION_H_
