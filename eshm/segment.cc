#include "eshm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eshm/internal/name_watch.h"
#include "eshm/internal/segment_file_check.h"
#include "eshm/internal/sigbus_guard.h"
#include "eshm/internal/status_macros.h"
#include "eshm/role_lock.h"

namespace eshm {
namespace {

absl::Status ErrnoError(int error, std::string_view call, const SegmentName& name) {
  return absl::ErrnoToStatus(error, absl::StrFormat("%s(\"%s\")", absl::string_view(call.data(), call.size()),
                                                    name.path()));
}

// Maps the pages of [offset, offset + length) now rather than at their first touch: what MAP_POPULATE did
// when the whole file was one range, but the gap before the trailer must stay unallocated. Best effort.
void Prefault(std::byte* base, std::uint64_t offset, std::uint64_t length) {
  const std::uint64_t page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::uint64_t begin = offset & ~(page - 1);
  if (madvise(base + begin, offset + length - begin, MADV_POPULATE_READ) == 0) return;
  // Before Linux 5.14: touch each page.
  for (std::uint64_t at = begin; at < offset + length; at += page) {
    (void)*static_cast<const volatile std::byte*>(base + at);
  }
}

// Refusing a mapping we could not guard: a peer truncating the file would then kill this process.
absl::Status GuardError(std::string_view call, const SegmentName& name) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s(\"%s\"): no memory to guard the mapping against a truncation of the file (SIGBUS): this process is "
      "out of memory or address space; close channels it no longer uses, or raise its memory limit",
      absl::string_view(call.data(), call.size()), name.path()));
}

// Sleeps `ns`, or less if `deadline` comes first.
void SleepAtMost(std::int64_t ns, Deadline deadline) {
  deadline = deadline.Started();
  const std::int64_t left = deadline.CappedAfterNs(ns).monotonic_ns() - MonotonicNowNs();
  if (left <= 0) return;
  const timespec pause{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
  nanosleep(&pause, nullptr);
}

// "uid 1000 (alice), gid 1001 (eshm), mode 0640": who may open a file, for permission errors. Names are
// looked up only on this error path; an id without a name is printed alone.
std::string DescribeOwnership(const struct stat& st) {
  std::string out = absl::StrFormat("uid %d", st.st_uid);
  std::vector<char> buffer(16384);
  struct passwd pw;
  struct passwd* pw_found = nullptr;
  if (getpwuid_r(st.st_uid, &pw, buffer.data(), buffer.size(), &pw_found) == 0 && pw_found != nullptr) {
    absl::StrAppend(&out, " (", pw_found->pw_name, ")");
  }
  absl::StrAppendFormat(&out, ", gid %d", st.st_gid);
  struct group gr;
  struct group* gr_found = nullptr;
  if (getgrgid_r(st.st_gid, &gr, buffer.data(), buffer.size(), &gr_found) == 0 && gr_found != nullptr) {
    absl::StrAppend(&out, " (", gr_found->gr_name, ")");
  }
  absl::StrAppendFormat(&out, ", mode 0%03o", st.st_mode & 07777);
  return out;
}

// "uid 1001, gids 1001 27": who this process is, beside DescribeOwnership in permission errors.
std::string DescribeThisProcess() {
  std::string out = absl::StrFormat("uid %d, gids %d", geteuid(), getegid());
  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(getgroups(0, nullptr), 0)));
  const int count = getgroups(static_cast<int>(groups.size()), groups.data());
  for (int i = 0; i < count; ++i) {
    if (groups[i] != getegid()) absl::StrAppendFormat(&out, " %d", groups[i]);
  }
  return out;
}

// How to share a channel between users, for the errors that a missing step of that recipe causes.
constexpr char kSharingRecipe[] =
    "to share a channel between users, put them in one group, create the channel with that group as the "
    "creator's effective group and with mode 0660, and open it from the other users with allow_other_owner "
    "(docs/operations.md, \"Permissions\")";

// Checks the shape a segment would be created with; sets `*max_message` to its maximum message size.
absl::Status ValidateShape(const SegmentOptions& options, std::uint64_t* max_message) {
  for (const std::uint64_t capacity : {options.m2s_capacity, options.s2m_capacity}) {
    ESHM_RETURN_IF_ERROR(ValidateRingCapacity(capacity));
  }
  const std::uint64_t limit =
      std::min(MaxPayloadForCapacity(options.m2s_capacity), MaxPayloadForCapacity(options.s2m_capacity));
  *max_message = options.max_message_bytes == 0 ? limit : options.max_message_bytes;
  if (*max_message > limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "maximum message size %d bytes does not fit rings of %d/%d bytes (limit %d: half the smaller ring "
        "less a %d-byte record header); use larger rings or a smaller maximum",
        *max_message, options.m2s_capacity, options.s2m_capacity, limit, kRecordHeaderBytes));
  }
  if ((options.mode & ~mode_t{0777}) != 0 || (options.mode & 0600) != 0600) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "file mode 0%o is not allowed: use permission bits only (no setuid/sticky), including owner read and "
        "write (0600)",
        options.mode));
  }
  return absl::OkStatus();
}

// True if `segment` is what a creator asking for `shape` would have made (a maximum message size of 0
// accepts any).
bool HasShape(const Segment& segment, const SegmentOptions& shape) {
  return segment.ring_capacity(Direction::kMasterToSlave) == shape.m2s_capacity &&
         segment.ring_capacity(Direction::kSlaveToMaster) == shape.s2m_capacity &&
         (shape.max_message_bytes == 0 || segment.max_message_bytes() == shape.max_message_bytes);
}

}  // namespace

absl::Status Segment::ValidateName(std::string_view name) { return SegmentName::Create(name).status(); }

std::string Segment::PathFor(std::string_view name) { return SegmentName::PathOf(name); }

absl::StatusOr<Segment> Segment::CreateUnnamed(const SegmentName& name, const SegmentOptions& options) {
  std::uint64_t max_message = 0;
  ESHM_RETURN_IF_ERROR(ValidateShape(options, &max_message));

  // An unnamed file: nobody can see it until Publish() links it, and it vanishes with its last descriptor
  // if this process fails or is killed first, so no failure leaves anything behind.
  const int fd = open(kSegmentDirectory, O_TMPFILE | O_RDWR | O_CLOEXEC, options.mode);
  if (fd < 0) {
    const int error = errno;
    if (error == EOPNOTSUPP || error == EISDIR) {
      return absl::UnimplementedError(absl::StrFormat(
          "open(\"%s\", O_TMPFILE) for segment %s: %s; eshm creates segments as unnamed files, which needs "
          "Linux 3.11 or later with %s on tmpfs",
          kSegmentDirectory, name.path(), std::strerror(error), kSegmentDirectory));
    }
    return absl::ErrnoToStatus(error, absl::StrFormat("open(\"%s\", O_TMPFILE) for segment %s", kSegmentDirectory,
                                                      name.path()));
  }
  Segment segment(name);  // owns fd (and the mapping) from here on, so every return below cleans up
  segment.fd_ = fd;
  // open applies the umask; the caller's mode is what they asked for.
  if (fchmod(fd, options.mode) != 0) return ErrnoError(errno, "fchmod", name);

  const SegmentGeometry geometry = ComputeGeometry(options.m2s_capacity, options.s2m_capacity);
  // Reserve every page that will be used now: on tmpfs an ftruncate'd file would only fail when a page is
  // first touched, with SIGBUS. The trailer first, which sets the file's size; the gap between the rings
  // and the trailer stays a hole (nothing ever touches it). posix_fallocate returns the error number
  // instead of setting errno.
  const std::uint64_t ranges[2][2] = {{geometry.trailer_offset, kTrailerBytes}, {0, geometry.rings_end}};
  for (const auto& [offset, length] : ranges) {
    const int error = posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(length));
    if (error == ENOSPC) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "not enough space in /dev/shm for the %d-byte segment %s: free space there (df -h /dev/shm), use "
          "smaller ring capacities, or give the container more shared memory (docker run --shm-size=256m)",
          geometry.rings_end + kTrailerBytes, name.path()));
    }
    if (error != 0) return ErrnoError(error, "posix_fallocate", name);
  }
  void* base = mmap(nullptr, geometry.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return ErrnoError(errno, "mmap", name);
  segment.base_ = static_cast<std::byte*>(base);
  segment.size_ = geometry.segment_bytes;
  Prefault(segment.base_, 0, geometry.rings_end);
  Prefault(segment.base_, geometry.trailer_offset, kTrailerBytes);
  if (!segment.Guard()) return GuardError("Segment::Create", name);
  segment.trailer_ = reinterpret_cast<const SegmentTrailer*>(segment.base_ + geometry.trailer_offset);
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat", name);
  segment.epoch_ns_ = static_cast<std::uint64_t>(RealtimeNowNs());
  segment.max_message_bytes_ = max_message;
  segment.offset_[0] = geometry.ring_offset[0];
  segment.offset_[1] = geometry.ring_offset[1];
  segment.capacity_[0] = options.m2s_capacity;
  segment.capacity_[1] = options.s2m_capacity;
  segment.device_ = st.st_dev;
  segment.inode_ = st.st_ino;

  // The file is fresh from posix_fallocate, hence zero: role and ring control blocks start vacant/empty.
  SegmentHeader* h = segment.header();
  h->magic = kSegmentMagic;
  h->header_bytes = kSegmentHeaderBytes;
  h->segment_bytes = geometry.segment_bytes;
  h->creation_epoch_ns = segment.epoch_ns_;
  h->ring_offset[0] = geometry.ring_offset[0];
  h->ring_offset[1] = geometry.ring_offset[1];
  h->ring_capacity[0] = options.m2s_capacity;
  h->ring_capacity[1] = options.s2m_capacity;
  h->max_message_bytes = static_cast<std::uint32_t>(max_message);
  h->creator_pid = static_cast<std::uint32_t>(getpid());
  // Relaxed: published by the release below. Never written again.
  reinterpret_cast<SegmentTrailer*>(segment.base_ + geometry.trailer_offset)
      ->canary.store(kTrailerCanary, std::memory_order_relaxed);
  // SYNC(layout-version): release pairs with the acquire in internal::CheckMappedFile (OpenOnce, and
  // InspectSegment): the header and the trailer above are
  // complete before an opener trusts them. (No opener can see the file before Publish() anyway; the version
  // is still written last so that the header means the same whoever reads it.)
  h->layout_version.store(kLayoutVersion, std::memory_order_release);
  return segment;
}

absl::Status Segment::Publish() {
  // linkat of an unnamed file: through /proc/self/fd (any user), or AT_EMPTY_PATH (needs
  // CAP_DAC_READ_SEARCH) where /proc is not mounted. Either fails with EEXIST if anything has the name.
  const std::string& path = name_.path();
  const std::string self = absl::StrCat("/proc/self/fd/", fd_);
  if (linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0) return absl::OkStatus();
  int error = errno;
  if (error == ENOENT && access("/proc/self/fd", F_OK) != 0) {
    if (linkat(fd_, "", AT_FDCWD, path.c_str(), AT_EMPTY_PATH) == 0) return absl::OkStatus();
    error = errno;
    if (error != EEXIST) {
      return absl::ErrnoToStatus(error, absl::StrFormat(
          "linkat(AT_EMPTY_PATH, \"%s\"): eshm gives a complete segment its name through /proc/self/fd; "
          "mount /proc, or run with CAP_DAC_READ_SEARCH",
          path));
    }
  }
  if (error == EEXIST) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "segment %s already exists: open it instead, or remove it if no process uses it", path));
  }
  return absl::ErrnoToStatus(error, absl::StrFormat("linkat(\"%s\", \"%s\")", self, path));
}

absl::StatusOr<Segment> Segment::Create(const SegmentName& name, const SegmentOptions& options) {
  ESHM_ASSIGN_OR_RETURN(Segment segment, CreateUnnamed(name, options));
  ESHM_RETURN_IF_ERROR(segment.Publish());
  return segment;
}

absl::StatusOr<Segment> Segment::Create(std::string_view name, const SegmentOptions& options) {
  ESHM_ASSIGN_OR_RETURN(const SegmentName valid, SegmentName::Create(name));
  return Create(valid, options);
}

absl::StatusOr<Segment> Segment::OpenOnce(const SegmentName& name, bool allow_other_owner) {
  const std::string& path = name.path();
  // Look before opening: a FIFO, a socket or a device is never opened (opening a FIFO could block, or
  // wake a process waiting on it). O_NONBLOCK and the fstat below cover a file swapped in between.
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrFormat("no segment %s: the side that creates it has not started", path));
    }
    return ErrnoError(error, "lstat", name);
  }
  if (!S_ISREG(st.st_mode)) return internal::CheckFileType(path, st.st_mode).OpenError();
  // O_NONBLOCK has no effect on a regular file.
  const int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrFormat("no segment %s: the side that creates it has not started", path));
    }
    if (lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      return internal::CheckFileType(path, st.st_mode).OpenError();
    }
    if (error == EACCES) {
      // Both sides need read and write: the slave writes its ring's head, its heartbeat and its role lock.
      return absl::PermissionDeniedError(absl::StrFormat(
          "%s cannot be opened for reading and writing by this process (%s): it is %s; %s", path,
          DescribeThisProcess(), DescribeOwnership(st), kSharingRecipe));
    }
    return ErrnoError(error, "open", name);
  }

  Segment segment(name);  // owns fd (and any mapping) from here on, so every return below cleans up
  segment.fd_ = fd;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat", name);
  if (!S_ISREG(st.st_mode)) return internal::CheckFileType(path, st.st_mode).OpenError();
  if (!allow_other_owner && st.st_uid != geteuid()) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s belongs to another user (%s; this process: %s): another user may have created the name first to "
        "intercept the channel, so it was refused and left untouched. Use another name, or, if the channel is "
        "shared between users on purpose, open it with allow_other_owner; %s",
        path, DescribeOwnership(st), DescribeThisProcess(), kSharingRecipe));
  }

  // eshm publishes a segment at its name only once it is complete, so there is nothing to wait for: what
  // is not a complete segment now never becomes one.
  const std::uint64_t file_bytes = static_cast<std::uint64_t>(st.st_size);
  if (file_bytes < kSegmentHeaderBytes) return internal::CheckShortFile(fd, file_bytes, path).OpenError();
  void* base = mmap(nullptr, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return ErrnoError(errno, "mmap", name);
  segment.base_ = static_cast<std::byte*>(base);
  segment.size_ = file_bytes;
  // Guarded from the first read on: the file may shrink between fstat and here.
  if (!segment.Guard()) return GuardError("Segment::Open", name);
  const internal::SegmentFileCheck check = internal::CheckMappedFile(segment.base_, file_bytes, path);
  if (!check.ok()) return check.OpenError();
  const internal::SegmentFileShape& shape = check.shape;
  segment.trailer_ = reinterpret_cast<const SegmentTrailer*>(segment.base_ + shape.segment_bytes - kTrailerBytes);
  segment.epoch_ns_ = shape.creation_epoch_ns;
  segment.max_message_bytes_ = shape.max_message_bytes;
  segment.offset_[0] = shape.ring_offset[0];
  segment.offset_[1] = shape.ring_offset[1];
  segment.capacity_[0] = shape.ring_capacity[0];
  segment.capacity_[1] = shape.ring_capacity[1];
  segment.device_ = st.st_dev;
  segment.inode_ = st.st_ino;
  return segment;
}

absl::StatusOr<Segment> Segment::Open(const SegmentName& name, Deadline deadline, bool allow_other_owner) {
  deadline = deadline.Started();
  for (;;) {
    absl::StatusOr<Segment> segment = OpenOnce(name, allow_other_owner);
    if (!absl::IsNotFound(segment.status()) || deadline.Expired()) return segment;
    SleepAtMost(1'000'000, deadline);
  }
}

absl::StatusOr<Segment> Segment::Open(std::string_view name, Deadline deadline, bool allow_other_owner) {
  ESHM_ASSIGN_OR_RETURN(const SegmentName valid, SegmentName::Create(name));
  return Open(valid, deadline, allow_other_owner);
}

namespace {

// Takes the role `wanted` asks for on `segment`, or says who holds it.
absl::StatusOr<Role> ClaimRole(const Segment& segment, AcquireRole wanted) {
  const SegmentHeader* h = segment.header();
  auto holder = [&](Role r) { return h->roles[static_cast<int>(r)].pid.load(std::memory_order_acquire); };
  if (wanted != AcquireRole::kSlave) {
    ESHM_ASSIGN_OR_RETURN(const bool got_master, TryLockRole(segment.fd(), Role::kMaster));
    if (got_master) return Role::kMaster;
    if (wanted == AcquireRole::kMaster) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "channel '%s' already has a live master (pid %d): only one master per name", segment.name(),
          holder(Role::kMaster)));
    }
  }
  ESHM_ASSIGN_OR_RETURN(const bool got_slave, TryLockRole(segment.fd(), Role::kSlave));
  if (got_slave) return Role::kSlave;
  if (wanted == AcquireRole::kSlave) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "channel '%s' already has a live slave (pid %d): only one slave per name", segment.name(),
        holder(Role::kSlave)));
  }
  return absl::AlreadyExistsError(absl::StrFormat(
      "channel '%s' already has a live master (pid %d) and a live slave (pid %d)", segment.name(),
      holder(Role::kMaster), holder(Role::kSlave)));
}

}  // namespace

// The decision about the file at a name, in one place.
//
//  * Nothing there: a slave waits (until options.deadline) for a segment to appear; a master or AUTO creates
//    one, complete and with its master lock already held, and links it to the name unless another process
//    linked one first (then it looks again). So exactly one creator wins, and it is the master.
//  * Not a complete eshm segment of this layout (a FIFO, a directory, foreign bytes, zeros, another layout
//    version, a corrupt header, another user's file): refused at once, left untouched. eshm never leaves a
//    half-made file at a name, so nothing of this kind can be a segment it should clean up.
//  * A segment of the shape asked for (or any segment, for a slave): claim the role on it. A master whose
//    predecessor died takes its segment over in place, messages included.
//  * A segment of another shape, asked for by a master or AUTO: decide under the segment's replace lock,
//    one process at a time. If its master lock is free, the master is gone: make the new segment, take the
//    master lock, check that the name still points at the old segment, remove the name and link the new
//    segment there (the old segment's slave follows by inode). If a live master holds it, an AUTO joins it
//    as slave (adopting its shape) and a master is refused, as on a segment of its own shape.
//
// Why removing the name is safe: every process that removes or replaces a segment's name holds that
// segment's master lock while it does (replacement here, auto_cleanup in Channel::Close), and a name that
// points at a file can only be given to a new one by linking, which fails while the old one is there. So
// while this process holds the master lock, the name keeps pointing at the segment it checked.
//
// Why openers end up together: after claiming its role, an opener checks that the name still points at
// its segment and that nobody else holds the segment's replace lock; if not, it lets go and looks again. A
// replacer takes the replace lock before the master lock, so an opener either sees the replacement coming
// or claimed its role before it began, like any slave of a segment that is later replaced.
absl::StatusOr<AcquiredSegment> Segment::Acquire(const SegmentName& name, const AcquireOptions& options) {
  const bool may_create = options.role != AcquireRole::kSlave;
  if (options.create_only && options.role != AcquireRole::kMaster) {
    return absl::InvalidArgumentError("Segment::Acquire: create_only needs AcquireRole::kMaster");
  }
  if (may_create) {
    std::uint64_t max_message = 0;
    ESHM_RETURN_IF_ERROR(ValidateShape(options.shape, &max_message));
  }
  const std::string& path = name.path();
  const Deadline deadline = options.deadline.Started();
  const std::int64_t retry_ns = std::int64_t{std::max(options.retry_interval_ms, 1)} * 1'000'000;
  // A slave waiting for the name: watched from its first miss on, so it looks again as soon as it appears.
  std::optional<internal::NameWatch> name_watch;
  // Sleeps `ns` (not past the deadline) in slices, asking options.check between them; with `watch`, ends
  // early once the watched name appears.
  auto pause = [&](std::int64_t ns, internal::NameWatch* watch = nullptr) -> absl::Status {
    constexpr std::int64_t kSliceNs = std::int64_t{kAcquireCheckIntervalMs} * 1'000'000;
    for (std::int64_t left = ns;;) {
      const std::int64_t slice = std::min(left, kSliceNs);
      bool appeared = false;
      if (watch != nullptr) {
        appeared = watch->Wait(slice, deadline);
      } else {
        SleepAtMost(slice, deadline);
      }
      left -= slice;
      if (options.check) ESHM_RETURN_IF_ERROR(options.check());
      if (appeared || left <= 0 || deadline.Expired()) return absl::OkStatus();
    }
  };
  // A segment this call created, master-locked and not yet named; kept across attempts.
  std::optional<Segment> fresh;
  auto make_fresh = [&]() -> absl::Status {
    if (fresh.has_value()) return absl::OkStatus();
    ESHM_ASSIGN_OR_RETURN(Segment made, CreateUnnamed(name, options.shape));
    // Nobody else can see the file yet, so this lock is ours: whoever links it to the name is its master.
    ESHM_ASSIGN_OR_RETURN(const bool locked, TryLockRole(made.fd(), Role::kMaster));
    if (!locked) return absl::InternalError(absl::StrCat("a new, unnamed segment for ", path, " was already locked"));
    fresh = std::move(made);
    return absl::OkStatus();
  };

  for (;;) {
    absl::StatusOr<Segment> existing = OpenOnce(name, options.allow_other_owner);
    if (absl::IsNotFound(existing.status())) {
      if (!may_create) {
        if (deadline.Expired()) return existing.status();
        if (!name_watch.has_value()) {
          // Watch first, then look again: a name created between the look and the watch is found now.
          name_watch.emplace(name.file_name());
          continue;
        }
        ESHM_RETURN_IF_ERROR(pause(retry_ns, &*name_watch));
        continue;
      }
      if (absl::Status made = make_fresh(); !made.ok()) {
        // Racing creators each reserve a segment; one that ran out of space may find the winner's now.
        if (absl::IsResourceExhausted(made) && !absl::IsNotFound(OpenOnce(name, true).status())) continue;
        return made;
      }
      absl::Status published = fresh->Publish();
      if (published.ok()) return AcquiredSegment{*std::move(fresh), Role::kMaster};
      if (!absl::IsAlreadyExists(published)) return published;
      continue;  // another creator linked its segment first: look at it
    }
    if (options.create_only) {
      return absl::AlreadyExistsError(absl::StrFormat("%s exists: another process created it", path));
    }
    if (!existing.ok()) return existing.status();
    Segment& segment = *existing;

    // Another process holds the segment's replace lock: it is deciding about it, or replacing it. Let go,
    // wait a moment and look again (up to the deadline).
    auto wait_for_replacer = [&]() -> absl::Status {
      segment.Reset();
      if (deadline.Expired()) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "%s: another process was still deciding whether to replace this segment, or replacing it (it "
            "holds the segment's replace lock), when the deadline passed; the segment was left as it is",
            path));
      }
      return pause(1'000'000);
    };

    const bool other_shape = may_create && !HasShape(segment, options.shape);
    if (other_shape) {
      ESHM_ASSIGN_OR_RETURN(const bool deciding, TryLockReplace(segment.fd()));
      if (!deciding) {
        ESHM_RETURN_IF_ERROR(wait_for_replacer());
        continue;
      }
      // Its master looks gone: make the replacement first (it may take a while for large rings), holding
      // only the replace lock, so that its slave sees its master dead meanwhile, not unresponsive.
      if (!IsRoleLockedByOther(segment.fd(), Role::kMaster)) ESHM_RETURN_IF_ERROR(make_fresh());
      ESHM_ASSIGN_OR_RETURN(const bool master_gone, TryLockRole(segment.fd(), Role::kMaster));
      if (master_gone) {
        // Proven replaceable: a complete eshm segment of this layout, of another shape, whose master is
        // gone; and with its master lock held, its name cannot change under us (see above).
        if (segment.name_state() != NameState::kThis) continue;  // replaced already: look again
        ESHM_RETURN_IF_ERROR(make_fresh());
        if (unlink(path.c_str()) != 0) {
          const int error = errno;
          if (error == ENOENT) continue;
          if (error == EPERM || error == EACCES) {
            return absl::PermissionDeniedError(absl::StrFormat(
                "%s belongs to another user and has other ring capacities (%d/%d) than asked for (%d/%d); its "
                "master is gone, but this process cannot replace it (/dev/shm is sticky): ask its owner to "
                "remove it, or ask for its shape",
                path, segment.ring_capacity(Direction::kMasterToSlave),
                segment.ring_capacity(Direction::kSlaveToMaster), options.shape.m2s_capacity,
                options.shape.s2m_capacity));
          }
          return ErrnoError(error, "unlink", name);
        }
        absl::Status published = fresh->Publish();
        if (published.ok()) return AcquiredSegment{*std::move(fresh), Role::kMaster};
        if (!absl::IsAlreadyExists(published)) return published;
        continue;  // a creator linked its segment into the gap: look at it
      }
      // A live master of another shape: claim a role below while still deciding, so no replacer starts.
    }

    absl::StatusOr<Role> role = ClaimRole(segment, options.role);
    if (!role.ok()) return role.status();
    // A master lock won on a segment of another shape: its master died just now. Let go; the next look
    // replaces it.
    if (other_shape && *role == Role::kMaster) continue;
    // Still the segment at the name, and nobody about to replace it? Otherwise let go and look again.
    if (IsReplaceLockedByOther(segment.fd())) {
      ESHM_RETURN_IF_ERROR(wait_for_replacer());
      continue;
    }
    if (segment.name_state() != NameState::kThis) continue;
    if (other_shape) UnlockReplace(segment.fd());
    return AcquiredSegment{std::move(segment), *role};
  }
}

absl::StatusOr<AcquiredSegment> Segment::Acquire(std::string_view name, const AcquireOptions& options) {
  ESHM_ASSIGN_OR_RETURN(const SegmentName valid, SegmentName::Create(name));
  return Acquire(valid, options);
}

absl::Status Segment::Unlink(std::string_view name) {
  ESHM_ASSIGN_OR_RETURN(const SegmentName valid, SegmentName::Create(name));
  if (unlink(valid.path().c_str()) != 0) {
    const int error = errno;
    if (error == ENOENT) return absl::NotFoundError(absl::StrFormat("no segment %s to remove", valid.path()));
    return ErrnoError(error, "unlink", valid);
  }
  return absl::OkStatus();
}

Segment::NameState Segment::name_state() const {
  struct stat st;
  if (lstat(name_.path().c_str(), &st) != 0) return errno == ENOENT ? NameState::kAbsent : NameState::kOther;
  return st.st_dev == device_ && st.st_ino == inode_ ? NameState::kThis : NameState::kOther;
}

void Segment::UnlinkNameIfThis() const {
  if (name_state() == NameState::kThis) unlink(name_.path().c_str());
}

RingProducer Segment::MakeProducer(Direction d) const {
  return RingProducer(ring_control(d), ring_data(d), ring_capacity(d), max_message_bytes_);
}

RingConsumer Segment::MakeConsumer(Direction d) const {
  return RingConsumer(ring_control(d), ring_data(d), ring_capacity(d), max_message_bytes_);
}

Segment::Segment(Segment&& other) noexcept : name_(std::move(other.name_)) { TakeMappingFrom(other); }

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    Reset();
    name_ = std::move(other.name_);
    TakeMappingFrom(other);
  }
  return *this;
}

void Segment::TakeMappingFrom(Segment& other) noexcept {
  fd_ = std::exchange(other.fd_, -1);
  guard_slot_ = std::exchange(other.guard_slot_, -1);
  fault_flag_ = std::exchange(other.fault_flag_, &kNeverFaulted);
  // Relaxed: a Segment is moved only before it is shared with other threads.
  lost_.store(other.lost_.exchange(false, std::memory_order_relaxed), std::memory_order_relaxed);
  trailer_ = std::exchange(other.trailer_, nullptr);
  base_ = std::exchange(other.base_, nullptr);
  size_ = std::exchange(other.size_, 0);
  epoch_ns_ = other.epoch_ns_;
  max_message_bytes_ = other.max_message_bytes_;
  offset_[0] = other.offset_[0];
  offset_[1] = other.offset_[1];
  capacity_[0] = other.capacity_[0];
  capacity_[1] = other.capacity_[1];
  device_ = other.device_;
  inode_ = other.inode_;
}

Segment::~Segment() { Reset(); }

const std::atomic<bool> Segment::kNeverFaulted{false};

bool Segment::Guard() {
  guard_slot_ = internal::GuardMapping(base_, size_);
  if (guard_slot_ < 0) return false;
  fault_flag_ = internal::GuardedMappingFaultFlag(guard_slot_);
  return true;
}

bool Segment::CheckTruncation() const {
  if (truncated()) return true;
  struct stat st;
  if (fstat(fd_, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < size_) {
    lost_.store(true, std::memory_order_release);  // pairs with the acquire in truncated()
    return true;
  }
  return !TrailerIntact();
}

void Segment::Reset() {
  internal::UnguardMapping(std::exchange(guard_slot_, -1));
  fault_flag_ = &kNeverFaulted;
  trailer_ = nullptr;
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
  base_ = nullptr;
  fd_ = -1;
}

}  // namespace eshm
