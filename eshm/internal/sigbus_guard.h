// Survives a peer truncating a shared-memory file under our mapping.
//
// Touching a page of a MAP_SHARED mapping beyond the end of its file raises SIGBUS, and any process that can
// open a segment can ftruncate it. A guarded mapping is listed in a process-wide table; a SIGBUS handler
// (installed once, chaining to whatever handler was there before for faults elsewhere) replaces a faulting
// guarded mapping in place with private zero pages and marks it faulted, so the faulting access completes
// on zeros instead of killing the process. A ring reads zeros as "nothing committed"; the owner notices
// the mark (GuardedMappingFaulted) and reports the segment as lost.
//
// Any number of mappings can be guarded: the table grows in chunks, each twice the size of the one before,
// mapped outside the signal handler and never unmapped, so the handler (which only reads the table) can
// never touch freed table memory. Unguarded slots are reused.
//
// Memory ordering, between GuardMapping/UnguardMapping (any thread, serialized by a mutex) and the handler
// (any thread, at any instruction):
//  * A new chunk is published with a release store of its pointer, then of the chunk count; the handler
//    loads the count and each pointer with acquire, so it only walks initialized slots.
//  * A slot's length is stored before its base (release); the handler loads the base first (acquire), so a
//    nonzero base comes with its own length.
//  * The handler counts itself in (seq_cst) before it loads any base (seq_cst); UnguardMapping clears the
//    base (seq_cst) and then waits until no handler is counted in (seq_cst). Dekker: either the handler sees
//    the cleared base, or UnguardMapping sees the handler and waits for it. So once UnguardMapping returns,
//    no handler can replace that range any more (the caller may munmap it and the address space may be
//    reused), and the slot, reused only after that, is never read half-written by a handler that saw its
//    previous mapping.
//
// Threading: thread-safe; GuardMapping and UnguardMapping must not be called from a signal handler.
#ifndef ESHM_INTERNAL_SIGBUS_GUARD_H_
#define ESHM_INTERNAL_SIGBUS_GUARD_H_

#include <atomic>
#include <cstddef>

namespace eshm::internal {

// Guards [base, base + length). Returns a slot for the calls below, or -1 if memory for the table could not
// be mapped (ENOMEM; the mapping is then unguarded: a caller should refuse to use it).
int GuardMapping(void* base, std::size_t length);

// Stops guarding; call before munmap. On return no signal handler acts on the range any more. Ignores -1.
void UnguardMapping(int slot);

// True once a SIGBUS inside the mapping replaced it with zero pages.
bool GuardedMappingFaulted(int slot);

// The flag GuardedMappingFaulted(slot) reads (true once faulted; acquire pairs with the handler's release),
// for callers that test it on a hot path without a call. Its address stays valid forever (table memory is
// never freed), but once `slot` is unguarded it belongs to whichever mapping reuses the slot. Null for -1.
const std::atomic<bool>* GuardedMappingFaultFlag(int slot);

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_SIGBUS_GUARD_H_
