// An asymmetric store-load fence between processes: free on the frequent side, a system call on the rare one.
//
// A Dekker handshake (each side stores its own word, then loads the other's) needs a store-load fence on
// both sides, or both loads can miss both stores. The ring's consumer makes one such store on every message
// (its head) and the producer only when it is about to sleep for space, so the fence belongs on the
// producer: LightSideReady() registers this process once with membarrier(2); HeavyFence() then forces every
// running thread of every registered process through a full memory barrier (MEMBARRIER_CMD_GLOBAL_EXPEDITED),
// which is as if each of those threads had executed a seq_cst fence at some point during the call. So after
// HeavyFence() returns, either the light side's store is visible to the heavy side's next load, or the light
// side's next load sees the heavy side's store made before the call.
//
// Where the kernel lacks MEMBARRIER_CMD_GLOBAL_EXPEDITED (Linux < 4.16, or a seccomp filter), LightSideReady()
// returns false and the light side must make its store and load seq_cst instead, as must the heavy side
// (ThreadSanitizer has no model of fences, so there is no plain fence here).
#ifndef ESHM_INTERNAL_ASYMMETRIC_FENCE_H_
#define ESHM_INTERNAL_ASYMMETRIC_FENCE_H_

namespace eshm::internal {

// Registers this process as a light side (once per process; cheap afterwards). False if the kernel cannot
// fence it from outside: the caller must then use seq_cst stores where it relied on HeavyFence().
bool LightSideReady();

// A full barrier on every running thread of every registered process, and on the caller. Returns false if
// the kernel refused (then nothing was fenced: see above).
bool HeavyFence();

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_ASYMMETRIC_FENCE_H_
