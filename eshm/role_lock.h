// Kernel evidence that a role's holder is alive: an open-file-description (OFD) lock on the segment file.
//
// Each role owns one byte of lock space on the segment file (byte 0 the master, byte 1 the slave), and
// replacement another (byte 3, below); the locks cover no data, the offsets mean nothing else. The holder
// takes a write lock on its byte with F_OFD_SETLK. The kernel drops the lock when the last descriptor of
// that open file description closes, which happens when the holder exits or is killed, so "the byte is
// unlocked" proves the holder is gone. Unlike a pid check this cannot be fooled by pid reuse or pid
// namespaces, and unlike a heartbeat it needs no waiting.
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

// The replace lock (byte 3): held by a process that found the segment at a name to be of another shape than
// it wants, while it decides whether to replace it and, if the master is gone, while it replaces it (until
// it closes the old segment). Only one process decides at a time; an opener that claimed a role on a
// segment whose replace lock another process holds lets go and looks at the name again (Segment::Acquire).
// (Byte 2 was the creator's lock of an eshm that created segments in place; it is no longer used.)
absl::StatusOr<bool> TryLockReplace(int fd);
void UnlockReplace(int fd);
// True if an open file description other than `fd`'s holds the replace lock; an error counts as held.
bool IsReplaceLockedByOther(int fd);

}  // namespace eshm

#endif  // ESHM_ROLE_LOCK_H_
