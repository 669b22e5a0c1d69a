#include "eshm/internal/sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace eshm::internal {
namespace {

// Slots are claimed under a mutex (never in the handler) and read lock-free by the handler.
constexpr int kSlots = 1024;

struct Slot {
  std::atomic<std::uintptr_t> base{0};  // 0: free
  std::atomic<std::size_t> length{0};
  std::atomic<bool> faulted{false};
};

Slot g_slots[kSlots];
std::mutex g_claim_mutex;
struct sigaction g_previous;

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

void OnSigbus(int signo, siginfo_t* info, void* context) {
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Slot& slot : g_slots) {
    // Acquire: pairs with the release in GuardMapping, so length belongs to base.
    const std::uintptr_t base = slot.base.load(std::memory_order_acquire);
    const std::size_t length = slot.length.load(std::memory_order_relaxed);
    if (base == 0 || address - base >= length) continue;
    // The raw system call: async-signal-safe, and invisible to sanitizer interceptors (ThreadSanitizer would
    // otherwise model it as a write of the whole range racing with every other thread's access, which by
    // design are harmless: they fault and land here too, or touch the zero pages). MAP_FIXED replaces the
    // whole mapping atomically.
    const long replaced = syscall(SYS_mmap, base, length, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (replaced != -1) {
      slot.faulted.store(true, std::memory_order_release);
      return;  // the faulting access is retried, on zeros
    }
    break;
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
  for (int i = 0; i < kSlots; ++i) {
    Slot& slot = g_slots[i];
    if (slot.base.load(std::memory_order_relaxed) != 0) continue;
    slot.length.store(length, std::memory_order_relaxed);
    slot.faulted.store(false, std::memory_order_relaxed);
    slot.base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
    return i;
  }
  return -1;
}

void UnguardMapping(int slot) {
  if (slot < 0 || slot >= kSlots) return;
  std::lock_guard<std::mutex> lock(g_claim_mutex);
  g_slots[slot].base.store(0, std::memory_order_release);
}

bool GuardedMappingFaulted(int slot) {
  if (slot < 0 || slot >= kSlots) return false;
  return g_slots[slot].faulted.load(std::memory_order_acquire);
}

}  // namespace eshm::internal
