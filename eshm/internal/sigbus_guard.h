// Survives a peer truncating a shared-memory file under our mapping.
//
// Touching a page of a MAP_SHARED mapping beyond the end of its file raises SIGBUS, and any process that can
// open a segment can ftruncate it. A guarded mapping is listed in a process-wide table; a SIGBUS handler
// (installed once, chaining to whatever handler was there before for faults elsewhere) replaces a faulting
// guarded mapping in place with private zero pages and marks it faulted, so the faulting access completes
// on zeros instead of killing the process. A ring reads zeros as "nothing committed"; the owner notices
// the mark (GuardedMappingFaulted) and reports the segment as lost.
#ifndef ESHM_INTERNAL_SIGBUS_GUARD_H_
#define ESHM_INTERNAL_SIGBUS_GUARD_H_

#include <cstddef>

namespace eshm::internal {

// Guards [base, base + length). Returns a slot for the calls below, or -1 if the table is full (the mapping
// is then unguarded: a truncation kills the process as it would without eshm).
int GuardMapping(void* base, std::size_t length);

// Stops guarding; call before munmap. Ignores -1.
void UnguardMapping(int slot);

// True once a SIGBUS inside the mapping replaced it with zero pages.
bool GuardedMappingFaulted(int slot);

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_SIGBUS_GUARD_H_
