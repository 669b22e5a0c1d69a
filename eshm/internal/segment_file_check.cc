#include "eshm/internal/segment_file_check.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eshm/ring.h"

namespace eshm::internal {
namespace {

SegmentFileCheck Found(SegmentFileDefect defect, absl::Status problem, std::string advice = "") {
  SegmentFileCheck check;
  check.defect = defect;
  check.problem = std::move(problem);
  check.advice = std::move(advice);
  return check;
}

// What to do about a file eshm refused: it never removes a file it cannot prove it made.
std::string LeftUntouched(const std::string& path) {
  return absl::StrFormat(
      "; it was left untouched: if it is yours and no process uses it, remove it (rm %s), or use another "
      "channel name",
      path);
}

std::string FileKind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return absl::StrFormat("a file of type 0%o", mode & S_IFMT);
}

// The fields of a complete segment's header against each other and against the file. `h` is a local copy.
SegmentFileCheck CheckHeaderFields(const SegmentHeader& h, std::uint64_t file_bytes, const std::string& path) {
  if (h.header_bytes != kSegmentHeaderBytes) {
    return Found(SegmentFileDefect::kCorrupt, absl::DataLossError(absl::StrFormat(
        "%s: header size %d does not match this eshm's %d: the segment is corrupt", path, h.header_bytes,
        kSegmentHeaderBytes)));
  }
  for (int d = 0; d < 2; ++d) {
    if (absl::Status s = ValidateRingCapacity(h.ring_capacity[d]); !s.ok()) {
      return Found(SegmentFileDefect::kCorrupt,
                   absl::DataLossError(absl::StrCat(path, ": corrupt header: ", s.message())));
    }
  }
  const SegmentGeometry g = ComputeGeometry(h.ring_capacity[0], h.ring_capacity[1]);
  if (h.ring_offset[0] != g.ring_offset[0] || h.ring_offset[1] != g.ring_offset[1] ||
      h.segment_bytes != g.segment_bytes) {
    return Found(SegmentFileDefect::kCorrupt, absl::DataLossError(absl::StrFormat(
        "%s: corrupt header: ring offsets %d/%d and size %d do not match capacities %d/%d", path,
        h.ring_offset[0], h.ring_offset[1], h.segment_bytes, h.ring_capacity[0], h.ring_capacity[1])));
  }
  if (file_bytes != h.segment_bytes) {
    return Found(SegmentFileDefect::kTruncated,
                 absl::FailedPreconditionError(absl::StrFormat(
                     "%s is %d bytes but its header says %d: the file was truncated or resized", path, file_bytes,
                     h.segment_bytes)),
                 absl::StrFormat("; remove it (rm %s) once no process uses it", path));
  }
  const std::uint64_t limit = std::min(MaxPayloadForCapacity(h.ring_capacity[0]),
                                       MaxPayloadForCapacity(h.ring_capacity[1]));
  if (h.max_message_bytes == 0 || h.max_message_bytes > limit) {
    return Found(SegmentFileDefect::kCorrupt, absl::DataLossError(absl::StrFormat(
        "%s: corrupt header: maximum message size %d is outside 1..%d", path, h.max_message_bytes, limit)));
  }
  return SegmentFileCheck{};
}

}  // namespace

absl::Status SegmentFileCheck::OpenError() const {
  if (problem.ok()) return problem;
  return absl::Status(problem.code(), absl::StrCat(problem.message(), advice));
}

SegmentFileCheck CheckFileType(const std::string& path, mode_t mode) {
  if (S_ISREG(mode)) return SegmentFileCheck{};
  return Found(SegmentFileDefect::kNotRegularFile,
               absl::FailedPreconditionError(absl::StrCat(
                   path, " is ", FileKind(mode),
                   ", not a regular file, so not an eshm segment; eshm does not open it or follow it")),
               LeftUntouched(path));
}

SegmentFileCheck CheckShortFile(int fd, std::uint64_t file_bytes, const std::string& path) {
  // pread, not mmap: the file is shorter than a header. Its first word still tells foreign bytes apart.
  std::uint64_t magic = 0;
  if (file_bytes >= sizeof(magic) && pread(fd, &magic, sizeof(magic), 0) == static_cast<ssize_t>(sizeof(magic)) &&
      magic != 0 && magic != kSegmentMagic) {
    return Found(SegmentFileDefect::kForeign,
                 absl::FailedPreconditionError(absl::StrFormat(
                     "%s is not an eshm segment (it begins with 0x%016x, not eshm's magic 0x%016x)", path, magic,
                     kSegmentMagic)),
                 LeftUntouched(path));
  }
  return Found(SegmentFileDefect::kTruncated,
               absl::FailedPreconditionError(absl::StrFormat(
                   "%s is %d bytes, too small for an eshm segment (at least %d): it is not one, or it was truncated",
                   path, file_bytes, kSegmentHeaderBytes)),
               LeftUntouched(path));
}

SegmentFileCheck CheckMappedFile(const std::byte* base, std::uint64_t file_bytes, const std::string& path) {
  const auto* h = reinterpret_cast<const SegmentHeader*>(base);
  // SYNC(layout-version): acquire pairs with the creator's release in Segment::CreateUnnamed.
  const std::uint32_t version = h->layout_version.load(std::memory_order_acquire);
  const std::uint64_t magic = h->magic;
  if (magic != kSegmentMagic && (magic != 0 || version != 0)) {
    return Found(SegmentFileDefect::kForeign,
                 absl::FailedPreconditionError(
                     magic != 0 ? absl::StrFormat("%s is not an eshm segment (magic 0x%016x, expected 0x%016x)",
                                                  path, magic, kSegmentMagic)
                                : absl::StrFormat("%s is not an eshm segment (no magic)", path)),
                 LeftUntouched(path));
  }
  if (version == 0) {
    return Found(SegmentFileDefect::kHalfCreated,
                 absl::FailedPreconditionError(absl::StrFormat(
                     "%s is not a complete eshm segment (%s, no layout version): eshm gives a segment its name "
                     "only once it is complete, so this eshm did not make it (an older eshm whose creator died "
                     "may have)",
                     path, magic == 0 ? "no magic" : "eshm's magic")),
                 LeftUntouched(path));
  }
  if (version != kLayoutVersion) {
    return Found(SegmentFileDefect::kIncompatibleVersion,
                 absl::FailedPreconditionError(absl::StrFormat(
                     "%s has layout version %d but this eshm reads version %d", path, version, kLayoutVersion)),
                 absl::StrFormat(": run the same eshm release on both sides, or remove the old segment (rm %s) "
                                 "once no process uses it",
                                 path));
  }
  SegmentHeader copy;
  std::memcpy(static_cast<void*>(&copy), h, sizeof(copy));
  SegmentFileCheck check = CheckHeaderFields(copy, file_bytes, path);
  if (!check.ok()) return check;
  // The file is exactly the size the header says, so the trailer lies inside the mapping. Reading the
  // canary also maps its page now (see Segment::TrailerIntact).
  const auto* trailer = reinterpret_cast<const SegmentTrailer*>(base + copy.segment_bytes - kTrailerBytes);
  if (!CanaryIntactAfterLoads(*trailer)) {
    return Found(SegmentFileDefect::kTruncated,
                 absl::FailedPreconditionError(absl::StrFormat(
                     "%s has the right size but not eshm's trailer (its last 8 bytes): it was truncated and grown "
                     "back, or overwritten",
                     path)),
                 LeftUntouched(path));
  }
  check.shape.segment_bytes = copy.segment_bytes;
  check.shape.creation_epoch_ns = copy.creation_epoch_ns;
  check.shape.max_message_bytes = copy.max_message_bytes;
  check.shape.creator_pid = copy.creator_pid;
  for (int d = 0; d < 2; ++d) {
    check.shape.ring_offset[d] = copy.ring_offset[d];
    check.shape.ring_capacity[d] = copy.ring_capacity[d];
  }
  return check;
}

}  // namespace eshm::internal
