// ProcessWideBarrier: a full memory barrier on every running thread of this process, paid by the caller
// alone (membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED, Linux 4.14 and later).
//
// It lets a hot path order a store before a later load with no fence of its own (a compiler-only
// std::atomic_signal_fence between them), as long as the rare side that needs the order calls this between
// its own store and load. Whichever thread stored first, one of the two loads sees the other's store: the
// Dekker pattern, with the whole cost on the rare side (folly calls this an asymmetric fence).
//
// Memory ordering, for a hot thread H and a caller C:
//   H: a.store(1, relaxed); atomic_signal_fence(seq_cst); r1 = b.load(relaxed);
//   C: b.store(1, relaxed); ProcessWideBarrier() == true; r2 = a.load(relaxed);
// never ends with r1 == 0 and r2 == 0.
//
// Returns false, having ordered nothing, where the kernel does not offer the call (older kernels, some
// sandboxes and seccomp profiles); callers must then fall back to something slower.
//
// Threading: thread-safe. It costs a system call and an interprocessor interrupt to each CPU running one of
// this process's threads: for rare events only.
#ifndef ESHM_INTERNAL_PROCESS_BARRIER_H_
#define ESHM_INTERNAL_PROCESS_BARRIER_H_

namespace eshm::internal {

bool ProcessWideBarrier();

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_PROCESS_BARRIER_H_
