#include "eshm/internal/sigbus_guard.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>

namespace eshm::internal {
namespace {

// Chunk k holds kFirstChunkSlots << k slots, so the table grows geometrically: kMaxChunks chunks hold about
// two billion slots (every slot number fits an int), far more mappings than a process can have
// (vm.max_map_count). Chunk 0 is one page.
constexpr std::size_t kFirstChunkSlots = 64;
constexpr int kMaxChunks = 25;

struct Slot {
  std::atomic<std::uintptr_t> base{0};  // 0: free
  std::atomic<std::size_t> length{0};
  std::atomic<bool> faulted{false};
};

constexpr std::size_t ChunkSlots(int chunk) { return kFirstChunkSlots << chunk; }
constexpr std::size_t FirstSlotOf(int chunk) { return kFirstChunkSlots * ((std::size_t{1} << chunk) - 1); }
static_assert(FirstSlotOf(kMaxChunks) - 1 <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
              "slot numbers must fit an int");

// Written only under g_claim_mutex; read lock-free by the handler (see the header for the orders).
std::atomic<Slot*> g_chunks[kMaxChunks];
std::atomic<int> g_chunk_count{0};
// Handlers currently walking the table (UnguardMapping waits for them).
std::atomic<int> g_handlers_running{0};
std::mutex g_claim_mutex;
struct sigaction g_previous;

// The slot GuardMapping numbered `index`, or null if no such slot exists.
Slot* SlotAt(int index) {
  if (index < 0) return nullptr;
  const std::size_t s = static_cast<std::size_t>(index);
  const int chunk = std::bit_width(s / kFirstChunkSlots + 1) - 1;
  // Acquire: pairs with the releases in AddChunk.
  if (chunk >= g_chunk_count.load(std::memory_order_acquire)) return nullptr;
  return g_chunks[chunk].load(std::memory_order_acquire) + (s - FirstSlotOf(chunk));
}

// Maps and publishes chunk number g_chunk_count. Under g_claim_mutex. False if out of memory or chunks.
bool AddChunk() {
  const int chunk = g_chunk_count.load(std::memory_order_relaxed);
  if (chunk == kMaxChunks) return false;
  const std::size_t slots = ChunkSlots(chunk);
  void* memory = mmap(nullptr, slots * sizeof(Slot), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return false;
  Slot* table = static_cast<Slot*>(memory);
  for (std::size_t i = 0; i < slots; ++i) new (&table[i]) Slot();
  // Release, twice: a handler that sees the count sees the pointer, and one that sees the pointer sees the
  // constructed slots. Never unmapped: a handler may be reading it at any time.
  g_chunks[chunk].store(table, std::memory_order_release);
  g_chunk_count.store(chunk + 1, std::memory_order_release);
  return true;
}

void Chain(int signo, siginfo_t* info, void* context) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(signo, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(signo);
    return;
  }
  // Default action: restore it; returning re-executes the faulting access, which now terminates the
  // process with SIGBUS as if eshm had never been here.
  struct sigaction fallback = {};
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  sigaction(SIGBUS, &fallback, nullptr);
}

// Async-signal-safe: atomics and one raw system call. True if `address` lay in a guarded mapping, which
// now holds zero pages.
bool ReplaceFaultingMapping(std::uintptr_t address) {
  const int chunks = g_chunk_count.load(std::memory_order_acquire);
  for (int c = 0; c < chunks; ++c) {
    Slot* table = g_chunks[c].load(std::memory_order_acquire);
    const std::size_t slots = ChunkSlots(c);
    for (std::size_t i = 0; i < slots; ++i) {
      Slot& slot = table[i];
      // seq_cst: the Dekker pair with UnguardMapping (header); also acquire, pairing with the release in
      // GuardMapping, so the length belongs to this base.
      const std::uintptr_t base = slot.base.load(std::memory_order_seq_cst);
      if (base == 0) continue;
      const std::size_t length = slot.length.load(std::memory_order_relaxed);
      if (address - base >= length) continue;
      // The raw system call: async-signal-safe, and invisible to sanitizer interceptors (ThreadSanitizer
      // would otherwise model it as a write of the whole range racing with every other thread's access,
      // which by design are harmless: they fault and land here too, or touch the zero pages). MAP_FIXED
      // replaces the whole mapping atomically.
      const long replaced = syscall(SYS_mmap, base, length, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (replaced == -1) return false;
      // Release: pairs with the acquire in GuardedMappingFaulted and of GuardedMappingFaultFlag's readers.
      slot.faulted.store(true, std::memory_order_release);
      return true;
    }
  }
  return false;
}

void OnSigbus(int signo, siginfo_t* info, void* context) {
  // Only a fault on an address (BUS_ADRERR, what a page past the end of a file raises) is ours: a SIGBUS
  // sent with kill() carries no address, and alignment or hardware errors are not about truncation.
  if (info != nullptr && info->si_code == BUS_ADRERR) {
    const int saved_errno = errno;
    g_handlers_running.fetch_add(1, std::memory_order_seq_cst);
    const bool replaced = ReplaceFaultingMapping(reinterpret_cast<std::uintptr_t>(info->si_addr));
    // Release: UnguardMapping, once it sees the count drop, sees that we are done with its slot.
    g_handlers_running.fetch_sub(1, std::memory_order_release);
    errno = saved_errno;
    if (replaced) return;  // the faulting access is retried, on zeros
  }
  Chain(signo, info, context);
}

void InstallHandler() {
  struct sigaction action = {};
  action.sa_sigaction = OnSigbus;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, &g_previous);
}

}  // namespace

int GuardMapping(void* base, std::size_t length) {
  static std::once_flag installed;
  std::call_once(installed, InstallHandler);
  std::lock_guard<std::mutex> lock(g_claim_mutex);
  // The lowest free slot, so that slots are reused and the handler's walk stays short.
  for (int c = 0;; ++c) {
    if (c == g_chunk_count.load(std::memory_order_relaxed) && !AddChunk()) return -1;
    Slot* table = g_chunks[c].load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < ChunkSlots(c); ++i) {
      Slot& slot = table[i];
      if (slot.base.load(std::memory_order_relaxed) != 0) continue;
      slot.length.store(length, std::memory_order_relaxed);
      slot.faulted.store(false, std::memory_order_relaxed);
      // Release: a handler that loads this base sees the length (and the cleared flag) stored above.
      slot.base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
      return static_cast<int>(FirstSlotOf(c) + i);
    }
  }
}

void UnguardMapping(int slot) {
  std::lock_guard<std::mutex> lock(g_claim_mutex);
  Slot* s = SlotAt(slot);
  if (s == nullptr) return;
  // seq_cst store, then seq_cst loads of the handler count: the Dekker pair described in the header. A
  // handler still counted in may have seen the old base; wait for it (it only runs one system call).
  s->base.store(0, std::memory_order_seq_cst);
  while (g_handlers_running.load(std::memory_order_seq_cst) != 0) sched_yield();
}

bool GuardedMappingFaulted(int slot) {
  const Slot* s = SlotAt(slot);
  return s != nullptr && s->faulted.load(std::memory_order_acquire);
}

const std::atomic<bool>* GuardedMappingFaultFlag(int slot) {
  const Slot* s = SlotAt(slot);
  return s == nullptr ? nullptr : &s->faulted;
}

}  // namespace eshm::internal
