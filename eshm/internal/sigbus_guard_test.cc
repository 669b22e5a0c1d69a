#include "eshm/internal/sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/fork_util.h"

namespace eshm::internal {
namespace {

using eshm_test::Child;

constexpr absl::Duration kWatchdog = absl::Seconds(60);

// A fresh two-page anonymous file (memfd: no name to clean up). -1 on failure.
int NewFile(std::size_t bytes) {
  const int fd = memfd_create("eshm_sigbus_guard_test", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::byte* MapShared(int fd, std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
}

// One load that the compiler cannot drop.
std::byte Touch(const std::byte* p) { return *static_cast<const volatile std::byte*>(p); }

#define CHILD_CHECK(cond)                                                                 \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
      return 1;                                                                           \
    }                                                                                     \
  } while (false)

// Children come first in this file: the last test starts threads, and we fork only while single-threaded.

// A fixed table once held 1,024 mappings: past it a mapping went unguarded, and a truncation killed the
// process. Thousands of mappings (more than several table chunks) are all guarded.
TEST(SigbusGuardTest, GuardsMoreMappingsThanAnyFixedTable) {
  Child child = Child::Start([]() -> int {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const int fd = NewFile(2 * page);
    CHILD_CHECK(fd >= 0);
    constexpr int kMappings = 3000;
    std::vector<std::byte*> mappings;
    std::vector<int> slots;
    for (int i = 0; i < kMappings; ++i) {
      std::byte* p = MapShared(fd, 2 * page);
      CHILD_CHECK(p != nullptr);
      mappings.push_back(p);
      slots.push_back(GuardMapping(p, 2 * page));
    }
    // Inside the first page: a partial truncation, the second page is gone.
    CHILD_CHECK(ftruncate(fd, static_cast<off_t>(page / 2)) == 0);
    // The last mapping, and one in the middle: past the first table.
    for (const int i : {kMappings - 1, 1100}) {
      CHILD_CHECK(Touch(mappings[i] + page) == std::byte{0});  // would die of SIGBUS if unguarded
      CHILD_CHECK(GuardedMappingFaulted(slots[i]));
    }
    // A fault replaces only the mapping it hit.
    CHILD_CHECK(!GuardedMappingFaulted(slots[0]));
    CHILD_CHECK(!GuardedMappingFaulted(slots[kMappings - 2]));
    for (int i = 0; i < kMappings; ++i) {
      UnguardMapping(slots[i]);
      munmap(mappings[i], 2 * page);
    }
    return 0;
  });
  EXPECT_TRUE(eshm_test::WaitForChild(child, kWatchdog));
}

// Unguarding gives the slot back, so a process that opens and closes segments forever needs a bounded table.
TEST(SigbusGuardTest, UnguardedSlotsAreReused) {
  Child child = Child::Start([]() -> int {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const int fd = NewFile(page);
    CHILD_CHECK(fd >= 0);
    std::byte* p = MapShared(fd, page);
    CHILD_CHECK(p != nullptr);
    int highest = -1;
    for (int i = 0; i < 100'000; ++i) {
      const int slot = GuardMapping(p, page);
      CHILD_CHECK(slot >= 0);
      CHILD_CHECK(!GuardedMappingFaulted(slot));  // a reused slot starts clean
      highest = std::max(highest, slot);
      UnguardMapping(slot);
    }
    CHILD_CHECK(highest < 16);
    return 0;
  });
  EXPECT_TRUE(eshm_test::WaitForChild(child, kWatchdog));
}

// What the guard does not cover keeps the default action: an unguarded (or no longer guarded) mapping of
// a truncated file still raises a deadly SIGBUS.
TEST(SigbusGuardTest, FaultOutsideGuardedMappingsStillKills) {
  Child child = Child::Start([]() -> int {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const int fd = NewFile(page);
    if (fd < 0) return 1;
    std::byte* guarded = MapShared(fd, page);
    std::byte* unguarded = MapShared(fd, page);
    if (guarded == nullptr || unguarded == nullptr) return 1;
    const int slot = GuardMapping(guarded, page);
    const int gone = GuardMapping(unguarded, page);
    UnguardMapping(gone);
    if (ftruncate(fd, 0) != 0) return 1;
    (void)Touch(guarded);
    if (!GuardedMappingFaulted(slot)) return 1;
    (void)Touch(unguarded);  // dies here
    return 3;
  });
  const std::int64_t give_up = eshm_test::NowNs() + absl::ToInt64Nanoseconds(kWatchdog);
  while (!child.Poll() && eshm_test::NowNs() < give_up) eshm_test::SleepMs(2);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Our handler chains to the sanitizer's, which reports the fault and ends the process its own way.
  EXPECT_NE(child.Describe(), "exited with code 3");  // the access was survived
  EXPECT_NE(child.Describe(), "exited with code 1");  // the guarded mapping was not handled
  EXPECT_FALSE(child.succeeded());
#else
  EXPECT_EQ(child.Describe(), "killed by signal 7");
#endif
}

// The handler reads the table while other threads guard and unguard mappings (growing it, reusing slots);
// meaningful under ThreadSanitizer. A fault is always matched to the mapping it hit.
TEST(SigbusGuardTest, FaultsWhileOtherThreadsGuardAndUnguard) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::atomic<bool> stop{false};
  std::vector<std::thread> churners;
  for (int t = 0; t < 2; ++t) {
    churners.emplace_back([&, t] {
      std::vector<int> held;
      std::vector<std::byte*> maps;
      const int fd = NewFile(page);
      ASSERT_GE(fd, 0);
      for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        if (held.size() < static_cast<std::size_t>(200 + 300 * t) && i % 3 != 2) {
          std::byte* p = MapShared(fd, page);
          ASSERT_NE(p, nullptr);
          maps.push_back(p);
          held.push_back(GuardMapping(p, page));
          ASSERT_GE(held.back(), 0);
        } else if (!held.empty()) {
          UnguardMapping(held.back());
          munmap(maps.back(), page);
          held.pop_back();
          maps.pop_back();
        }
      }
      for (std::size_t i = 0; i < held.size(); ++i) {
        UnguardMapping(held[i]);
        munmap(maps[i], page);
      }
      close(fd);
    });
  }
  const int rounds = 2000;
  int faulted = 0;
  for (int i = 0; i < rounds; ++i) {
    const int fd = NewFile(page);
    ASSERT_GE(fd, 0);
    std::byte* p = MapShared(fd, page);
    ASSERT_NE(p, nullptr);
    const int slot = GuardMapping(p, page);
    ASSERT_GE(slot, 0);
    ASSERT_EQ(ftruncate(fd, 0), 0);
    if (Touch(p) == std::byte{0} && GuardedMappingFaulted(slot)) ++faulted;
    UnguardMapping(slot);
    munmap(p, page);
    close(fd);
  }
  stop.store(true);
  for (std::thread& t : churners) t.join();
  EXPECT_EQ(faulted, rounds);
}

}  // namespace
}  // namespace eshm::internal
