#include "eshm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eshm/internal/sigbus_guard.h"
#include "eshm/role_lock.h"

namespace eshm {
namespace {

std::string ShmName(std::string_view name) { return absl::StrCat("/eshm_", absl::string_view(name.data(), name.size())); }

absl::Status ErrnoError(int error, std::string_view call, std::string_view name) {
  return absl::ErrnoToStatus(error, absl::StrFormat("%s(\"%s\")", absl::string_view(call.data(), call.size()),
                                                    Segment::PathFor(name)));
}

std::uint64_t RealtimeNowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
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

void SleepBriefly() {
  const timespec pause{0, 1'000'000};  // 1 ms
  nanosleep(&pause, nullptr);
}

// Refusing a mapping we could not guard: a peer truncating the file would then kill this process.
absl::Status GuardError(std::string_view call, std::string_view name) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s(\"%s\"): no memory to guard the mapping against a truncation of the file (SIGBUS): this process is "
      "out of memory or address space; close channels it no longer uses, or raise its memory limit",
      absl::string_view(call.data(), call.size()), Segment::PathFor(name)));
}

// Closes the descriptor and, for a segment this process just created, removes the name again.
class CreationGuard {
 public:
  CreationGuard(int fd, std::string shm_name) : fd_(fd), shm_name_(std::move(shm_name)) {}
  ~CreationGuard() {
    if (fd_ < 0) return;
    shm_unlink(shm_name_.c_str());
    close(fd_);
  }
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
  std::string shm_name_;
};

// Checks the header of an initialized segment against the file it came from. `h` is a local copy.
absl::Status ValidateHeader(const SegmentHeader& h, std::uint64_t file_bytes, std::string_view name) {
  const std::string path = Segment::PathFor(name);
  if (h.header_bytes != kSegmentHeaderBytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: header size %d does not match this eshm's %d: the segment is corrupt", path, h.header_bytes,
        kSegmentHeaderBytes));
  }
  for (int d = 0; d < 2; ++d) {
    if (absl::Status s = ValidateRingCapacity(h.ring_capacity[d]); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(path, ": corrupt header: ", s.message()));
    }
  }
  const SegmentGeometry g = ComputeGeometry(h.ring_capacity[0], h.ring_capacity[1]);
  if (h.ring_offset[0] != g.ring_offset[0] || h.ring_offset[1] != g.ring_offset[1] ||
      h.segment_bytes != g.segment_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: corrupt header: ring offsets %d/%d and size %d do not match capacities %d/%d", path,
        h.ring_offset[0], h.ring_offset[1], h.segment_bytes, h.ring_capacity[0], h.ring_capacity[1]));
  }
  if (file_bytes != h.segment_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is %d bytes but its header says %d: the file was truncated or resized; remove it (rm %s) once no "
        "process uses it",
        path, file_bytes, h.segment_bytes, path));
  }
  const std::uint64_t limit = std::min(MaxPayloadForCapacity(h.ring_capacity[0]),
                                       MaxPayloadForCapacity(h.ring_capacity[1]));
  if (h.max_message_bytes == 0 || h.max_message_bytes > limit) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: corrupt header: maximum message size %d is outside 1..%d", path, h.max_message_bytes, limit));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Segment::ValidateName(std::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("segment name is empty: use 1 to 250 characters from [A-Za-z0-9._-]");
  }
  if (name.size() > kMaxSegmentNameLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "segment name is %d characters long; the limit is %d (the file /dev/shm/eshm_<name> must fit NAME_MAX)",
        name.size(), kMaxSegmentNameLength));
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "segment name has character 0x%02x at index %d; only [A-Za-z0-9._-] are allowed (no '/', spaces, "
          "NUL or non-ASCII)",
          c, i));
    }
  }
  return absl::OkStatus();
}

std::string Segment::PathFor(std::string_view name) {
  return absl::StrCat("/dev/shm/eshm_", absl::string_view(name.data(), name.size()));
}

absl::StatusOr<Segment> Segment::Create(std::string_view name, const SegmentOptions& options) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  for (const std::uint64_t capacity : {options.m2s_capacity, options.s2m_capacity}) {
    if (absl::Status s = ValidateRingCapacity(capacity); !s.ok()) return s;
  }
  const std::uint64_t limit =
      std::min(MaxPayloadForCapacity(options.m2s_capacity), MaxPayloadForCapacity(options.s2m_capacity));
  const std::uint64_t max_message = options.max_message_bytes == 0 ? limit : options.max_message_bytes;
  if (max_message > limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "maximum message size %d bytes does not fit rings of %d/%d bytes (limit %d: half the smaller ring "
        "less a %d-byte record header); use larger rings or a smaller maximum",
        max_message, options.m2s_capacity, options.s2m_capacity, limit, kRecordHeaderBytes));
  }
  if ((options.mode & ~mode_t{0777}) != 0 || (options.mode & 0600) != 0600) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "file mode 0%o is not allowed: use permission bits only (no setuid/sticky), including owner read and "
        "write (0600)",
        options.mode));
  }

  const std::string shm_name = ShmName(name);
  const int fd = shm_open(shm_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, options.mode);
  if (fd < 0) {
    const int error = errno;
    if (error == EEXIST) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "segment %s already exists: open it instead, or remove it if no process uses it", PathFor(name)));
    }
    return ErrnoError(error, "shm_open", name);
  }
  CreationGuard guard(fd, shm_name);
  // Held for as long as this segment stays open: an opener finding the file half-initialized can then tell
  // a creator still at work from one that died (IsAbandoned).
  if (absl::StatusOr<bool> locked = TryLockCreator(fd); !locked.ok()) return locked.status();
  // shm_open applies the umask; the caller's mode is what they asked for.
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
          geometry.rings_end + kTrailerBytes, PathFor(name)));
    }
    if (error != 0) return ErrnoError(error, "posix_fallocate", name);
  }
  void* base = mmap(nullptr, geometry.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return ErrnoError(errno, "mmap", name);
  Prefault(static_cast<std::byte*>(base), 0, geometry.rings_end);
  Prefault(static_cast<std::byte*>(base), geometry.trailer_offset, kTrailerBytes);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    munmap(base, geometry.segment_bytes);
    return ErrnoError(error, "fstat", name);
  }

  Segment segment;
  segment.base_ = static_cast<std::byte*>(base);
  segment.size_ = geometry.segment_bytes;
  if (!segment.Guard()) return GuardError("Segment::Create", name);  // unmaps; `guard` removes the name
  segment.name_ = std::string(name);
  segment.fd_ = guard.Release();
  segment.trailer_ = reinterpret_cast<const SegmentTrailer*>(segment.base_ + geometry.trailer_offset);
  segment.epoch_ns_ = RealtimeNowNs();
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
  // SYNC(layout-version): release pairs with the acquire in Open: the header and the trailer above are
  // complete before an opener trusts them.
  h->layout_version.store(kLayoutVersion, std::memory_order_release);
  return segment;
}

absl::StatusOr<Segment> Segment::Open(std::string_view name, Deadline deadline, bool allow_other_owner) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  const std::string path = PathFor(name);
  const int fd = shm_open(ShmName(name).c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrFormat("no segment %s: the side that creates it has not started", path));
    }
    if (error == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s is a symbolic link; eshm does not follow links at segment paths", path));
    }
    return ErrnoError(error, "shm_open", name);
  }

  Segment segment;  // owns fd (and any mapping) from here on, so every return below cleans up
  segment.name_ = std::string(name);
  segment.fd_ = fd;

  // Wait until the file is large enough and its creator has written the layout version.
  SegmentHeader copy;
  struct stat st;
  for (;;) {
    if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat", name);
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrFormat("%s is not a regular file, so not an eshm segment", path));
    }
    if (!allow_other_owner && st.st_uid != geteuid()) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "%s belongs to uid %d, not to this process's uid %d: another user may have created the name first to "
          "intercept the channel; it was left untouched. Use another name, or allow other owners explicitly "
          "(ChannelOptions::allow_other_owner) for a channel shared between users",
          path, st.st_uid, geteuid()));
    }
    const std::uint64_t file_bytes = static_cast<std::uint64_t>(st.st_size);
    if (file_bytes >= kSegmentHeaderBytes) {
      if (segment.base_ == nullptr || segment.size_ != file_bytes) {
        internal::UnguardMapping(std::exchange(segment.guard_slot_, -1));
        segment.fault_flag_ = &kNeverFaulted;
        if (segment.base_ != nullptr) munmap(segment.base_, segment.size_);
        segment.base_ = nullptr;
        void* base = mmap(nullptr, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) return ErrnoError(errno, "mmap", name);
        segment.base_ = static_cast<std::byte*>(base);
        segment.size_ = file_bytes;
        // Guarded from the first read on: the file may shrink between fstat and here.
        if (!segment.Guard()) return GuardError("Segment::Open", name);
      }
      const SegmentHeader* h = segment.header();
      // SYNC(layout-version): acquire pairs with the creator's release in Create.
      const std::uint32_t version = h->layout_version.load(std::memory_order_acquire);
      const std::uint64_t magic = h->magic;
      if (magic != 0 && magic != kSegmentMagic) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s is not an eshm segment (magic 0x%016x, expected 0x%016x); it was left untouched", path, magic,
            kSegmentMagic));
      }
      if (version != 0) {
        if (magic != kSegmentMagic) {
          return absl::FailedPreconditionError(
              absl::StrFormat("%s is not an eshm segment (no magic); it was left untouched", path));
        }
        if (version != kLayoutVersion) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "%s has layout version %d but this eshm reads version %d: run the same eshm release on both "
              "sides, or remove the old segment once no process uses it",
              path, version, kLayoutVersion));
        }
        std::memcpy(static_cast<void*>(&copy), h, sizeof(copy));
        break;
      }
    }
    if (deadline.Expired()) {
      if (file_bytes < kSegmentHeaderBytes) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s is %d bytes, too small for an eshm segment (at least %d): it is truncated, not ours, or its "
            "creator died while creating it; remove it once no process uses it",
            path, file_bytes, kSegmentHeaderBytes));
      }
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s was not initialized before the deadline: its creator died while creating it, or it is not an "
          "eshm segment; remove it once no process uses it",
          path));
    }
    SleepBriefly();
  }

  if (absl::Status s = ValidateHeader(copy, static_cast<std::uint64_t>(st.st_size), name); !s.ok()) return s;
  // The file is exactly the size the header says, so the trailer lies inside the mapping. Reading the
  // canary also maps its page now (see TrailerIntact in segment.h). The creator wrote it before the
  // version we acquired.
  segment.trailer_ =
      reinterpret_cast<const SegmentTrailer*>(segment.base_ + copy.segment_bytes - kTrailerBytes);
  if (!segment.TrailerIntact()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s has the right size but not eshm's trailer (its last 8 bytes): it was truncated and grown back, or "
        "overwritten; it was left untouched. Remove it once no process uses it",
        path));
  }
  segment.epoch_ns_ = copy.creation_epoch_ns;
  segment.max_message_bytes_ = copy.max_message_bytes;
  segment.offset_[0] = copy.ring_offset[0];
  segment.offset_[1] = copy.ring_offset[1];
  segment.capacity_[0] = copy.ring_capacity[0];
  segment.capacity_[1] = copy.ring_capacity[1];
  segment.device_ = st.st_dev;
  segment.inode_ = st.st_ino;
  return segment;
}

absl::Status Segment::Unlink(std::string_view name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (shm_unlink(ShmName(name).c_str()) != 0) {
    const int error = errno;
    if (error == ENOENT) return absl::NotFoundError(absl::StrFormat("no segment %s to remove", PathFor(name)));
    return ErrnoError(error, "shm_unlink", name);
  }
  return absl::OkStatus();
}

bool Segment::IsAbandoned(std::string_view name, ino_t* inode) {
  if (!ValidateName(name).ok()) return false;
  const int fd = shm_open(ShmName(name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0) return false;
  bool abandoned = false;
  struct stat st;
  // Only our own files: we may not remove another user's anyway (/dev/shm is sticky), so never try.
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) {
    *inode = st.st_ino;
    std::uint32_t version = 0;
    // pread, not mmap: the file may be shorter than its header, and this must not fault.
    const bool initialized =
        static_cast<std::uint64_t>(st.st_size) >= kSegmentHeaderBytes &&
        pread(fd, &version, sizeof(version), offsetof(SegmentHeader, layout_version)) ==
            static_cast<ssize_t>(sizeof(version)) &&
        version != 0;
    abandoned = !initialized && !IsCreatorLockedByOther(fd);
  }
  close(fd);
  return abandoned;
}

RingProducer Segment::MakeProducer(Direction d) const {
  return RingProducer(ring_control(d), ring_data(d), ring_capacity(d), max_message_bytes_);
}

RingConsumer Segment::MakeConsumer(Direction d) const {
  return RingConsumer(ring_control(d), ring_data(d), ring_capacity(d), max_message_bytes_);
}

Segment::Segment(Segment&& other) noexcept { *this = std::move(other); }

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    Reset();
    name_ = std::move(other.name_);
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
  return *this;
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
