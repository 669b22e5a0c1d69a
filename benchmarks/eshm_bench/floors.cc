#include "benchmarks/eshm_bench/floors.h"


#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/timing.h"
#include "eshm/deadline.h"
#include "eshm/futex.h"

namespace eshm_bench {
namespace {

constexpr std::size_t kSlotArea = 1 << 20;

// A ping line and a pong line, 128 bytes apart.
struct PingPongSlot {
  PaddedU64 ping;  // parent -> child
  PaddedU64 pong;  // child -> parent
};

// A forked child inherits shared mappings without page-table entries: touch every page before timing.
void Prefault(const std::byte* p, std::size_t bytes) {
  const volatile std::byte* v = p;
  for (std::size_t i = 0; i < bytes; i += 4096) (void)v[i];
}

// The bytes of a slot's line after its word: where the ping-pong carrying a payload puts it.
std::byte* PayloadOf(PaddedU64& word) { return reinterpret_cast<std::byte*>(&word) + sizeof(word.value); }

PingPongSlot& SlotFor(std::byte* area, std::uint64_t i) {
  return reinterpret_cast<PingPongSlot*>(area)[i % (kSlotArea / sizeof(PingPongSlot))];
}

void MarkChildReady(RunControl& control) {
  // release: pairs with the parent's acquire load in AwaitChildReady.
  control.child_ready.value.store(1, std::memory_order_release);
}
bool AwaitChildReady(RunControl& control, Watchdog& watchdog) {
  return watchdog.SleepUntil([&] { return control.child_ready.value.load(std::memory_order_acquire) != 0; });
}

// The parent's loop shared by both ping-pongs: `round_trip(i)` makes one; the plan decides how many.
template <typename RoundTrip>
absl::Status TimeRoundTrips(const LoadSpec& load, RunControl& control, Histogram& latency, Floor& floor,
                            RoundTrip&& round_trip) {
  LoadPlan plan(load);
  std::uint64_t last = Clock::Ticks();
  plan.Start(last);
  for (std::uint64_t i = 1;; ++i) {
    const LoadPlan::Step step = plan.Next(last);
    // release: pairs with the child's acquire load; the child stops after round trip `i`.
    if (step == LoadPlan::Step::kLast) control.total.value.store(i, std::memory_order_release);
    if (absl::Status s = round_trip(i); !s.ok()) return s;
    const std::uint64_t now = Clock::Ticks();
    if (step != LoadPlan::Step::kWarmup) latency.Record(static_cast<std::uint64_t>(Clock::ToNs(now - last)));
    last = now;
    if (step == LoadPlan::Step::kLast) break;
  }
  floor.messages = plan.timed();
  return absl::OkStatus();
}

bool ChildIsDone(const RunControl& control, std::uint64_t i) {
  // acquire: pairs with the parent's release store of `total`, made before round trip i began.
  return control.total.value.load(std::memory_order_acquire) == i;
}

}  // namespace

absl::StatusOr<Floor> MeasureAtomicPingPong(const LoadSpec& load, const PairConfig& pair, std::size_t payload) {
  if (payload > kMaxAtomicPayload) return absl::InvalidArgumentError("atomic ping-pong payload larger than a line");
  SharedMapping area(kSlotArea);
  if (!area.ok()) return absl::InternalError(absl::StrCat("mmap: ", std::strerror(errno)));
  new (area.data()) PingPongSlot[kSlotArea / sizeof(PingPongSlot)]();
  auto latency = std::make_unique<Histogram>();
  Floor floor;
  floor.name = kAtomicFloor;
  if (payload > 0) floor.size = payload;
  std::byte message[kMaxAtomicPayload] = {};
  const SideFn child = [&](RunControl& control, Watchdog& watchdog) -> absl::Status {
    Prefault(area.data(), kSlotArea);
    MarkChildReady(control);
    for (std::uint64_t i = 1;; ++i) {
      PingPongSlot& slot = SlotFor(area.data(), i);
      // acquire: pairs with the parent's release store of ping.
      if (!watchdog.SpinUntil([&] { return slot.ping.value.load(std::memory_order_acquire) == i; })) {
        return watchdog.Error("atomic ping-pong echo");
      }
      // Copied out and back in, as a transport's receiver and sender do.
      std::memcpy(message, PayloadOf(slot.ping), payload);
      std::memcpy(PayloadOf(slot.pong), message, payload);
      // release: pairs with the parent's acquire load of pong.
      slot.pong.value.store(i, std::memory_order_release);
      if (ChildIsDone(control, i)) return absl::OkStatus();
    }
  };
  const SideFn parent = [&](RunControl& control, Watchdog& watchdog) -> absl::Status {
    Prefault(area.data(), kSlotArea);
    if (!AwaitChildReady(control, watchdog)) return watchdog.Error("waiting for the child");
    return TimeRoundTrips(load, control, *latency, floor, [&](std::uint64_t i) -> absl::Status {
      PingPongSlot& slot = SlotFor(area.data(), i);
      std::memcpy(PayloadOf(slot.ping), message, payload);
      // release: pairs with the child's acquire load of ping.
      slot.ping.value.store(i, std::memory_order_release);
      // acquire: pairs with the child's release store of pong.
      if (!watchdog.SpinUntil([&] { return slot.pong.value.load(std::memory_order_acquire) == i; })) {
        return watchdog.Error("atomic ping-pong");
      }
      std::memcpy(message, PayloadOf(slot.pong), payload);
      return absl::OkStatus();
    });
  };
  if (absl::Status s = RunPair(pair, parent, child, nullptr); !s.ok()) return s;
  floor.latency = Summarize(*latency);
  return floor;
}

absl::StatusOr<Floor> MeasureFutexPingPong(const LoadSpec& load, const PairConfig& pair) {
  auto latency = std::make_unique<Histogram>();
  Floor floor;
  floor.name = kFutexFloor;
  // Waits in 100 ms slices so the watchdog runs between them. `word` holds the last round trip sent.
  const auto await = [](const std::atomic<std::uint32_t>& word, std::uint32_t want, Watchdog& watchdog) {
    for (;;) {
      // acquire: pairs with the other side's release store before its FutexWake.
      const std::uint32_t seen = word.load(std::memory_order_acquire);
      if (seen == want) return true;
      eshm::FutexWait(&word, seen, eshm::Deadline::AfterMs(100));
      if (word.load(std::memory_order_acquire) != want && watchdog.ExpiredNow()) return false;
    }
  };
  const SideFn child = [&](RunControl& control, Watchdog& watchdog) -> absl::Status {
    MarkChildReady(control);
    for (std::uint32_t i = 1;; ++i) {
      if (!await(control.futex_ping.value, i, watchdog)) return watchdog.Error("futex ping-pong echo");
      // release: pairs with the parent's acquire load in await().
      control.futex_pong.value.store(i, std::memory_order_release);
      eshm::FutexWake(&control.futex_pong.value, 1);
      if (ChildIsDone(control, i)) return absl::OkStatus();
    }
  };
  const SideFn parent = [&](RunControl& control, Watchdog& watchdog) -> absl::Status {
    if (!AwaitChildReady(control, watchdog)) return watchdog.Error("waiting for the child");
    return TimeRoundTrips(load, control, *latency, floor, [&](std::uint64_t i) -> absl::Status {
      const auto word = static_cast<std::uint32_t>(i);
      // release: pairs with the child's acquire load in await().
      control.futex_ping.value.store(word, std::memory_order_release);
      eshm::FutexWake(&control.futex_ping.value, 1);
      if (!await(control.futex_pong.value, word, watchdog)) return watchdog.Error("futex ping-pong");
      return absl::OkStatus();
    });
  };
  if (absl::Status s = RunPair(pair, parent, child, nullptr); !s.ok()) return s;
  floor.latency = Summarize(*latency);
  return floor;
}

absl::StatusOr<Floor> MeasureMemcpy(std::size_t size, const LoadSpec& load) {
  const std::size_t slots = std::max<std::size_t>(4, (std::size_t{4} << 20) / std::max<std::size_t>(size, 1));
  SharedMapping area(slots * size);
  if (!area.ok()) return absl::InternalError(absl::StrCat("mmap: ", std::strerror(errno)));
  std::vector<std::byte> source(size, std::byte{0x5a});
  Floor floor;
  floor.name = kMemcpyFloor;
  floor.size = size;
  // Copies in batches between clock reads, so reading the clock stays out of the small-message figure.
  const std::size_t batch = std::max<std::size_t>(1, (64 * 1024) / size);
  LoadPlan plan(load);
  plan.Start(Clock::Ticks());
  std::uint64_t copies = 0, start = 0, end = 0;
  for (std::size_t slot = 0;;) {
    const std::uint64_t now = Clock::Ticks();
    const LoadPlan::Step step = plan.Next(now);
    if (step != LoadPlan::Step::kWarmup && start == 0) start = now;
    for (std::size_t k = 0; k < batch; ++k) {
      source[0] = static_cast<std::byte>(slot);  // a different message each time
      std::memcpy(area.data() + slot * size, source.data(), size);
      slot = slot + 1 == slots ? 0 : slot + 1;
    }
    // Keep the copies: the compiler must not drop stores it can prove nobody reads.
    asm volatile("" : : "r"(area.data()) : "memory");
    if (step != LoadPlan::Step::kWarmup) copies += batch;
    if (step == LoadPlan::Step::kLast) {
      end = Clock::Ticks();
      break;
    }
  }
  const double seconds = end > start ? Clock::ToNs(end - start) / 1e9 : 0;
  floor.messages = copies;
  if (seconds > 0) floor.gb_per_s = static_cast<double>(copies) * static_cast<double>(size) / seconds / 1e9;
  return floor;
}

}  // namespace eshm_bench
