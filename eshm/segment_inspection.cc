#include "eshm/segment_inspection.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "eshm/deadline.h"
#include "eshm/internal/proc_status.h"
#include "eshm/internal/segment_file_check.h"
#include "eshm/internal/sigbus_guard.h"
#include "eshm/layout.h"
#include "eshm/role_lock.h"

namespace eshm {
namespace {

// What one inspection opened and mapped: unguarded, unmapped and closed on every return.
struct InspectedFile {
  InspectedFile() = default;
  InspectedFile(const InspectedFile&) = delete;
  InspectedFile& operator=(const InspectedFile&) = delete;
  ~InspectedFile() {
    internal::UnguardMapping(guard_slot);
    if (base != nullptr) munmap(const_cast<std::byte*>(base), length);
    if (fd >= 0) close(fd);
  }

  int fd = -1;
  const std::byte* base = nullptr;
  std::size_t length = 0;
  int guard_slot = -1;
};

SegmentFileStatus StatusOf(internal::SegmentFileDefect defect) {
  switch (defect) {
    case internal::SegmentFileDefect::kNone: return SegmentFileStatus::kOk;
    case internal::SegmentFileDefect::kNotRegularFile: return SegmentFileStatus::kNotRegularFile;
    case internal::SegmentFileDefect::kForeign: return SegmentFileStatus::kForeign;
    case internal::SegmentFileDefect::kHalfCreated: return SegmentFileStatus::kHalfCreated;
    case internal::SegmentFileDefect::kTruncated: return SegmentFileStatus::kTruncated;
    case internal::SegmentFileDefect::kIncompatibleVersion: return SegmentFileStatus::kIncompatibleVersion;
    case internal::SegmentFileDefect::kCorrupt: return SegmentFileStatus::kCorrupt;
  }
  return SegmentFileStatus::kCorrupt;
}

SegmentSnapshot& Report(SegmentSnapshot& s, SegmentFileStatus status, std::string problem) {
  s.status = status;
  s.problem = std::move(problem);
  return s;
}

SegmentSnapshot& Report(SegmentSnapshot& s, const internal::SegmentFileCheck& check) {
  return Report(s, StatusOf(check.defect), std::string(check.problem.message()));
}

SegmentSnapshot& ReportErrno(SegmentSnapshot& s, int error, const char* call) {
  return Report(s, SegmentFileStatus::kUnreadable,
                absl::StrFormat("%s(\"%s\"): %s", call, s.path, std::strerror(error)));
}

// Opens without following, blocking or (where the kernel lets this process) touching the access time.
int OpenForInspection(const std::string& path) {
  const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  const int fd = open(path.c_str(), flags | O_NOATIME);
  // O_NOATIME is for the file's owner (or CAP_FOWNER); another user's readable file is opened without it.
  if (fd < 0 && errno == EPERM) return open(path.c_str(), flags);
  return fd;
}

// The holder's monitor thread's voluntary context switches, when its published pid and thread id name
// them in this pid namespace; -1 otherwise.
std::int64_t MonitorSwitches(const RoleSnapshot& role) {
  const std::uint64_t own_namespace = internal::OwnPidNamespace();
  if (role.pid <= 1 || own_namespace == 0 || role.pid_namespace != own_namespace) return -1;
  const int fd = internal::OpenThreadStatus(static_cast<pid_t>(role.pid), static_cast<pid_t>(role.monitor_tid));
  if (fd < 0) return -1;
  std::uint64_t switches = 0;
  const bool read = internal::ReadVoluntarySwitches(fd, &switches);
  close(fd);
  return read ? static_cast<std::int64_t>(switches) : -1;
}

// The live words of a checked segment (see the header for the orders).
void ReadLiveWords(const std::byte* base, const internal::SegmentFileShape& shape, SegmentSnapshot& s) {
  const auto* header = reinterpret_cast<const SegmentHeader*>(base);
  for (int r = 0; r < 2; ++r) {
    const RoleControl& role = header->roles[r];
    // Acquire: pairs with the holder's release of state, which follows its pid, heartbeat and epoch.
    s.roles[r].state = role.state.load(std::memory_order_acquire);
    // Relaxed: each a single word the holder stores; nothing here depends on their order.
    s.roles[r].pid = role.pid.load(std::memory_order_relaxed);
    s.roles[r].heartbeat = role.heartbeat.load(std::memory_order_relaxed);
    s.roles[r].attach_epoch = role.attach_epoch.load(std::memory_order_relaxed);
    s.roles[r].stale_threshold_ms = role.stale_threshold_ms.load(std::memory_order_relaxed);
    s.roles[r].monitor_tid = role.monitor_tid.load(std::memory_order_relaxed);
    s.roles[r].kernel_watch = role.kernel_watch.load(std::memory_order_relaxed);
    s.roles[r].pid_namespace = role.pid_namespace.load(std::memory_order_relaxed);
  }
  for (int d = 0; d < 2; ++d) {
    const auto* ring = reinterpret_cast<const RingControl*>(base + shape.ring_offset[d]);
    RingSnapshot& out = s.rings[d];
    // The consumer's words before the producer's: the counts queued are then rarely below zero (clamped in
    // RingSnapshot when the producer's tail trails a commit the consumer has already read past).
    // Acquire: pairs with the consumer's release of its head; messages_read is a relaxed statistic.
    out.head = ring->consumer.head.load(std::memory_order_acquire);
    out.messages_read = ring->consumer.messages_read.load(std::memory_order_relaxed);
    // Acquire: pairs with the producer's release of its tail; messages_written is a relaxed statistic.
    out.tail = ring->producer.tail.load(std::memory_order_acquire);
    out.messages_written = ring->producer.messages_written.load(std::memory_order_relaxed);
    // Relaxed: counters of system calls, for show.
    out.wake_syscalls = ring->wait.wake_syscalls.load(std::memory_order_relaxed);
    out.wait_syscalls = ring->wait.wait_syscalls.load(std::memory_order_relaxed);
  }
}

// Whether the file is still the size it was mapped at. The kernel sets a truncated file's size before it
// unmaps or zeroes anything, so whatever zeros of a truncation this inspection read, this sees the cut.
bool SizeUnchanged(const InspectedFile& file, std::uint64_t file_bytes, std::uint64_t* now) {
  struct stat st;
  if (fstat(file.fd, &st) != 0) return true;  // nothing better to say: the checks above stand
  *now = static_cast<std::uint64_t>(st.st_size);
  return *now == file_bytes;
}

std::string TruncatedMeanwhile(const std::string& path, std::uint64_t was, std::uint64_t now) {
  return absl::StrFormat(
      "%s was truncated (or resized) while it was inspected: it is now %d bytes, not %d; the processes using it "
      "get DataLoss",
      path, now, was);
}

SegmentSnapshot Inspect(std::string path) {
  SegmentSnapshot s;
  s.path = std::move(path);
  // Look before opening: anything but a regular file is reported as it is, never opened or followed.
  struct stat st;
  if (lstat(s.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Report(s, SegmentFileStatus::kMissing, absl::StrFormat("no segment %s", s.path));
    return ReportErrno(s, errno, "lstat");
  }
  if (!S_ISREG(st.st_mode)) return Report(s, internal::CheckFileType(s.path, st.st_mode));
  InspectedFile file;
  file.fd = OpenForInspection(s.path);
  if (file.fd < 0) {
    const int error = errno;
    if (error == ENOENT) return Report(s, SegmentFileStatus::kMissing, absl::StrFormat("no segment %s", s.path));
    // Swapped for something else since the lstat (O_NOFOLLOW refuses a symlink with ELOOP).
    if (lstat(s.path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      return Report(s, internal::CheckFileType(s.path, st.st_mode));
    }
    return ReportErrno(s, error, "open");
  }
  if (fstat(file.fd, &st) != 0) return ReportErrno(s, errno, "fstat");
  if (!S_ISREG(st.st_mode)) return Report(s, internal::CheckFileType(s.path, st.st_mode));
  s.opened = true;
  s.file_bytes = static_cast<std::uint64_t>(st.st_size);
  s.modified_ns = std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.uid = st.st_uid;
  s.mode = st.st_mode & 07777;
  s.device = st.st_dev;
  s.inode = st.st_ino;

  if (s.file_bytes < kSegmentHeaderBytes) return Report(s, internal::CheckShortFile(file.fd, s.file_bytes, s.path));
  void* base = mmap(nullptr, s.file_bytes, PROT_READ, MAP_SHARED, file.fd, 0);
  if (base == MAP_FAILED) return ReportErrno(s, errno, "mmap");
  file.base = static_cast<const std::byte*>(base);
  file.length = s.file_bytes;
  // Guarded before the first read: the file may shrink at any moment.
  file.guard_slot = internal::GuardMapping(base, file.length);
  if (file.guard_slot < 0) {
    return Report(s, SegmentFileStatus::kUnreadable,
                  absl::StrFormat("%s: no memory to guard a mapping against a truncation of the file (SIGBUS)",
                                  s.path));
  }

  const internal::SegmentFileCheck check = internal::CheckMappedFile(file.base, s.file_bytes, s.path);
  std::uint64_t size_now = s.file_bytes;
  if (!check.ok()) {
    // A header read from a truncation's zeros looks foreign, half-created or corrupt: say what happened.
    if (!SizeUnchanged(file, s.file_bytes, &size_now)) {
      return Report(s, SegmentFileStatus::kTruncated, TruncatedMeanwhile(s.path, s.file_bytes, size_now));
    }
    return Report(s, check);
  }
  s.shape_known = true;
  s.ring_capacity[0] = check.shape.ring_capacity[0];
  s.ring_capacity[1] = check.shape.ring_capacity[1];
  s.max_message_bytes = check.shape.max_message_bytes;
  s.creation_epoch_ns = check.shape.creation_epoch_ns;
  s.creator_pid = check.shape.creator_pid;

  ReadLiveWords(file.base, check.shape, s);
  const auto* trailer =
      reinterpret_cast<const SegmentTrailer*>(file.base + check.shape.segment_bytes - kTrailerBytes);
  s.trailer_intact = internal::CanaryIntactAfterLoads(*trailer);
  for (const Role role : {Role::kMaster, Role::kSlave}) {
    RoleSnapshot& r = s.roles[static_cast<int>(role)];
    r.lock_held = IsRoleLockedByOther(file.fd, role);
    r.monitor_switches = MonitorSwitches(r);
  }
  s.sampled_ns = MonotonicNowNs();
  // A truncation while the words were read: the size changed (a cut inside the trailer's page faults
  // nothing), the canary is gone (cut and grown back), or a page vanished (the guard gave zeros).
  if (!SizeUnchanged(file, s.file_bytes, &size_now)) {
    return Report(s, SegmentFileStatus::kTruncated, TruncatedMeanwhile(s.path, s.file_bytes, size_now));
  }
  if (!s.trailer_intact || internal::GuardedMappingFaulted(file.guard_slot)) {
    return Report(s, SegmentFileStatus::kTruncated,
                  absl::StrFormat("%s lost its trailer (its last 8 bytes) while it was inspected: it was truncated "
                                  "and grown back, or overwritten; the processes using it get DataLoss",
                                  s.path));
  }
  s.status = SegmentFileStatus::kOk;
  return s;
}

}  // namespace

SegmentSnapshot InspectSegment(const SegmentName& name) { return Inspect(name.path()); }

SegmentSnapshot InspectSegmentFile(std::string_view listed_name) {
  if (listed_name.empty() || listed_name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
    SegmentSnapshot s;
    s.path = SegmentName::PathOf(listed_name);
    return Report(s, SegmentFileStatus::kMissing,
                  absl::StrFormat("no file %s: a name in %s is not empty and holds no '/' or NUL", s.path,
                                  kSegmentDirectory));
  }
  return Inspect(SegmentName::PathOf(listed_name));
}

absl::StatusOr<std::vector<std::string>> ListSegmentFiles() {
  DIR* dir = opendir(kSegmentDirectory);
  if (dir == nullptr) return absl::ErrnoToStatus(errno, absl::StrFormat("opendir(\"%s\")", kSegmentDirectory));
  constexpr std::size_t kPrefixLength = sizeof(kSegmentFilePrefix) - 1;
  std::vector<std::string> names;
  while (const dirent* entry = readdir(dir)) {
    const std::string_view file = entry->d_name;
    if (file.size() > kPrefixLength && file.starts_with(kSegmentFilePrefix)) {
      names.emplace_back(file.substr(kPrefixLength));
    }
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace eshm
