#include "eshm/internal/asymmetric_fence.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace eshm::internal {
namespace {

long Membarrier(int command) { return syscall(SYS_membarrier, command, 0, 0); }

// The pid that registered, or 0. Registration belongs to the address space; a forked child gets a new one, so
// a child registers again the first time it asks (a second registration is harmless).
std::atomic<pid_t> registered_pid{0};

}  // namespace

bool LightSideReady() {
  const pid_t self = getpid();
  // Relaxed: the flag only saves a system call; registering twice is harmless.
  if (registered_pid.load(std::memory_order_relaxed) == self) return true;
  const long supported = Membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0 ||
      (supported & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0) {
    return false;
  }
  if (Membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
  registered_pid.store(self, std::memory_order_relaxed);
  return true;
}

bool HeavyFence() {
  // The kernel orders the caller's own accesses around the call too (it issues a full barrier on entry and
  // exit). Without membarrier the light side is seq_cst (LightSideReady), and the caller's seq_cst store
  // and load then need no fence between them.
  return Membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

}  // namespace eshm::internal
