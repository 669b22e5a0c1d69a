// Kernel evidence that a role's holder is alive: an open-file-description (OFD) lock on the segment file.
//
// Each role owns one byte of lock space on the segment file (and the creator a third, below) (the locks cover no data; the byte offsets are
// beyond nothing in particular). The holder takes a write lock on its byte with F_OFD_SETLK. The kernel
// drops the lock when the last descriptor of that open file description closes, which happens when the
// holder exits or is killed, so "the byte is unlocked" proves the holder is gone. Unlike a pid check this
// cannot be fooled by pid reuse or pid namespaces, and unlike a heartbeat it needs no waiting.
//
// Caveat: an OFD lock belongs to the open file description, which fork() shares with the child. A child
// that keeps the descriptor keeps the role's lock alive after the parent dies.
#ifndef ESHM_ROLE_LOCK_H_
#define ESHM_ROLE_LOCK_H_

#include "absl/status/statusor.h"
#include "eshm/layout.h"

namespace eshm {

// Tries to take `role`'s lock on the segment open as `fd`. True if taken (or already held through this
// same open file description); false if another open file description holds it.
absl::StatusOr<bool> TryLockRole(int fd, Role role);

// Releases `role`'s lock held through `fd`.
void UnlockRole(int fd, Role role);

// True if an open file description other than `fd`'s holds `role`'s lock. An error (rare: EBADF, ENOLCK)
// is reported as "held", the cautious answer: a role is never declared vacant without proof.
bool IsRoleLockedByOther(int fd, Role role);

// The creator's lock (byte 2): taken by Segment::Create before it initializes the file and held while the
// segment stays open, so an opener that finds a half-initialized file can tell a creator still at work from
// one that died.
absl::StatusOr<bool> TryLockCreator(int fd);
bool IsCreatorLockedByOther(int fd);

}  // namespace eshm

#endif  // ESHM_ROLE_LOCK_H_
