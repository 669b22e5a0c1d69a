#include "eshm/internal/process_barrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace eshm::internal {
namespace {

long Membarrier(int command) { return syscall(__NR_membarrier, command, 0, 0); }

}  // namespace

bool ProcessWideBarrier() {
  // A process registers once before its first expedited barrier (a thread-safe static initializer).
  static const bool registered = Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
  // A child of fork() may find the registration gone (it belongs to the address space): the call then fails
  // and the caller falls back.
  return registered && Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0;
}

}  // namespace eshm::internal
