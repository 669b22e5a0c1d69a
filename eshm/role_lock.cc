#include "eshm/role_lock.h"

#include <errno.h>
#include <fcntl.h>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace eshm {
namespace {

constexpr off_t kReplaceByte = 3;

struct flock ByteRange(off_t byte, short type) {
  struct flock lock = {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = byte;
  lock.l_len = 1;
  lock.l_pid = 0;  // required to be 0 for OFD locks
  return lock;
}

// Byte 0: master, byte 1: slave.
struct flock RoleRange(Role role, short type) { return ByteRange(static_cast<off_t>(role), type); }

}  // namespace

absl::StatusOr<bool> TryLockRole(int fd, Role role) {
  struct flock lock = RoleRange(role, F_WRLCK);
  if (fcntl(fd, F_OFD_SETLK, &lock) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  return absl::ErrnoToStatus(errno, absl::StrFormat("fcntl(F_OFD_SETLK) on the %s role byte",
                                                    role == Role::kMaster ? "master" : "slave"));
}

void UnlockRole(int fd, Role role) {
  struct flock lock = RoleRange(role, F_UNLCK);
  fcntl(fd, F_OFD_SETLK, &lock);
}

bool IsRoleLockedByOther(int fd, Role role) {
  struct flock lock = RoleRange(role, F_WRLCK);
  if (fcntl(fd, F_OFD_GETLK, &lock) != 0) return true;
  return lock.l_type != F_UNLCK;
}

absl::StatusOr<bool> TryLockReplace(int fd) {
  struct flock lock = ByteRange(kReplaceByte, F_WRLCK);
  if (fcntl(fd, F_OFD_SETLK, &lock) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  return absl::ErrnoToStatus(errno, "fcntl(F_OFD_SETLK) on the replace byte");
}

void UnlockReplace(int fd) {
  struct flock lock = ByteRange(kReplaceByte, F_UNLCK);
  fcntl(fd, F_OFD_SETLK, &lock);
}

bool IsReplaceLockedByOther(int fd) {
  struct flock lock = ByteRange(kReplaceByte, F_WRLCK);
  if (fcntl(fd, F_OFD_GETLK, &lock) != 0) return true;
  return lock.l_type != F_UNLCK;
}

}  // namespace eshm
