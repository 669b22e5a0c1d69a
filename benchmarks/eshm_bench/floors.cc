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

// A ping-pong between the pair: the child answers ping i with `echo(i, control, watchdog)` for i = 1, 2, ...
// until the parent's last; the parent times each `round_trip(i, control, watchdog)` as the plan says.
// `prepare` runs first on both sides.
template <typename Prepare, typename Echo, typename RoundTrip>
absl::StatusOr<Floor> MeasurePingPong(Floor floor, const LoadSpec& load, const PairConfig& pair, Prepare prepare,
                                      Echo echo, RoundTrip round_trip) {
  auto latency = std::make_unique<Histogram>();
  const SideFn child = [&](RunControl& control, Watchdog& watchdog) -> absl::Status {
    prepare();
    // release: pairs with the parent's acquire load below.
    control.child_ready.value.store(1, std::memory_order_release);
    for (std::uint64_t i = 1;; ++i) {
      if (!echo(i, control, watchdog)) return watchdog.Error(absl::StrCat(floor.name, " echo"));
      // acquire: pairs with the parent's release store of `total`, made before round trip i began.
      if (control.total.value.load(std::memory_order_acquire) == i) return absl::OkStatus();
    }
  };
  const SideFn parent = [&](RunControl& control, Watchdog& watchdog) -> absl::Status {
    prepare();
    if (!watchdog.SleepUntil([&] { return control.child_ready.value.load(std::memory_order_acquire) != 0; })) {
      return watchdog.Error("waiting for the child");
    }
    LoadPlan plan(load);
    std::uint64_t last = Clock::Ticks();
    plan.Start(last);
    const std::uint64_t deadline = watchdog.DeadlineTicks();
    for (std::uint64_t i = 1;; ++i) {
      if (last >= deadline && watchdog.ExpiredNow()) return watchdog.Error(floor.name);
      const LoadPlan::Step step = plan.Next(last);
      // release: pairs with the child's acquire load; the child stops after round trip `i`.
      if (step == LoadPlan::Step::kLast) control.total.value.store(i, std::memory_order_release);
      if (!round_trip(i, control, watchdog)) return watchdog.Error(floor.name);
      const std::uint64_t now = Clock::Ticks();
      if (step != LoadPlan::Step::kWarmup) latency->Record(static_cast<std::uint64_t>(Clock::ToNs(now - last)));
      last = now;
      if (step == LoadPlan::Step::kLast) break;
    }
    floor.messages = plan.timed();
    return absl::OkStatus();
  };
  if (absl::Status s = RunPair(pair, parent, child, nullptr); !s.ok()) return s;
  floor.latency = Summarize(*latency);
  return floor;
}

}  // namespace

absl::StatusOr<Floor> MeasureAtomicPingPong(const LoadSpec& load, const PairConfig& pair, std::size_t payload) {
  if (payload > kMaxAtomicPayload) return absl::InvalidArgumentError("atomic ping-pong payload larger than a line");
  SharedMapping area(kSlotArea);
  if (!area.ok()) return absl::InternalError(absl::StrCat("mmap: ", std::strerror(errno)));
  new (area.data()) PingPongSlot[kSlotArea / sizeof(PingPongSlot)]();
  Floor floor;
  floor.name = kAtomicFloor;
  if (payload > 0) floor.size = payload;
  std::byte message[kMaxAtomicPayload] = {};
  const auto prefault = [&] { Prefault(area.data(), kSlotArea); };
  const auto echo = [&](std::uint64_t i, RunControl&, Watchdog& watchdog) {
    PingPongSlot& slot = SlotFor(area.data(), i);
    // acquire: pairs with the parent's release store of ping.
    if (!watchdog.SpinUntil([&] { return slot.ping.value.load(std::memory_order_acquire) == i; })) return false;
    // Copied out and back in, as a transport's receiver and sender do.
    std::memcpy(message, PayloadOf(slot.ping), payload);
    std::memcpy(PayloadOf(slot.pong), message, payload);
    // release: pairs with the parent's acquire load of pong.
    slot.pong.value.store(i, std::memory_order_release);
    return true;
  };
  const auto round_trip = [&](std::uint64_t i, RunControl&, Watchdog& watchdog) {
    PingPongSlot& slot = SlotFor(area.data(), i);
    std::memcpy(PayloadOf(slot.ping), message, payload);
    // release: pairs with the child's acquire load of ping.
    slot.ping.value.store(i, std::memory_order_release);
    // acquire: pairs with the child's release store of pong.
    if (!watchdog.SpinUntil([&] { return slot.pong.value.load(std::memory_order_acquire) == i; })) return false;
    std::memcpy(message, PayloadOf(slot.pong), payload);
    return true;
  };
  return MeasurePingPong(floor, load, pair, prefault, echo, round_trip);
}

absl::StatusOr<Floor> MeasureFutexPingPong(const LoadSpec& load, const PairConfig& pair) {
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
  // Each side stores its word (release: pairs with the other's acquire load in await()), then wakes it.
  const auto send = [](std::atomic<std::uint32_t>& word, std::uint64_t i) {
    word.store(static_cast<std::uint32_t>(i), std::memory_order_release);
    eshm::FutexWake(&word, 1);
  };
  const auto echo = [&](std::uint64_t i, RunControl& control, Watchdog& watchdog) {
    if (!await(control.futex_ping.value, static_cast<std::uint32_t>(i), watchdog)) return false;
    send(control.futex_pong.value, i);
    return true;
  };
  const auto round_trip = [&](std::uint64_t i, RunControl& control, Watchdog& watchdog) {
    send(control.futex_ping.value, i);
    return await(control.futex_pong.value, static_cast<std::uint32_t>(i), watchdog);
  };
  return MeasurePingPong(floor, load, pair, [] {}, echo, round_trip);
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
