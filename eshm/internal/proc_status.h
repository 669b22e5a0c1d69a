// What /proc says about processes and threads, for liveness: the pid namespace a published pid is valid in,
// and a thread's count of voluntary context switches (the kernel heartbeat, layout.h RoleControl::monitor_tid).
#ifndef ESHM_INTERNAL_PROC_STATUS_H_
#define ESHM_INTERNAL_PROC_STATUS_H_

#include <sys/types.h>

#include <cstdint>

namespace eshm::internal {

// Inode of this process's pid namespace (/proc/self/ns/pid): a peer's published pid names a process here
// only if the peer published the same one. 0 if /proc cannot say.
std::uint64_t OwnPidNamespace();

// Opens /proc/PID/task/TID/status (read-only, close-on-exec): -1 if there is no such thread of that process.
int OpenThreadStatus(pid_t pid, pid_t tid);

// The thread's count of voluntary context switches, read from the start of its open status file: false if
// the file can no longer be read (the thread exited) or does not say.
bool ReadVoluntarySwitches(int status_fd, std::uint64_t* switches);

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_PROC_STATUS_H_
