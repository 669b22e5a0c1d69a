// In-process microbenchmarks of eshm's ring (RingProducer/RingConsumer over a heap buffer).
//
//   BM_Ring_WriteReadCycle/msg_bytes:N   one thread: TryWrite(kNow) then TryRead. The cost of the two
//                                        operations with every line hot in one core's cache (kNow
//                                        includes the publication's seq_cst store, a full barrier).
//   BM_Ring_BatchCycle/msg_bytes:N       one thread: 32 x TryWrite(kDeferred), Flush, 32 x TryRead; the
//                                        per-message instruction cost of the streaming path.
//   BM_MinimalRing_BatchCycle/...        the same over minimal_ring.h, ipc_benchmark's baseline ring.
//   BM_Ring_Throughput/msg_bytes:N       two threads: the benchmark thread writes with Publish::kDeferred
//                                        (the ring publishes every 16 KiB; Flush at the end), a consumer
//                                        thread spins on TryRead and checks a sequence number.
//   BM_Ring_ThroughputPublishNow/...     the same with Publish::kNow: one publication per message.
//   BM_MinimalRing_Throughput/...        the same stream over minimal_ring.h (ipc_benchmark's baseline).
//
// The threaded variants pin the two threads to the first two allowed CPUs when there are two, and count
// the time until the consumer has read the last message, so a full ring left unread is not free.
// Cross-process numbers, with baselines, come from ipc_benchmark.cc.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "benchmarks/minimal_ring.h"
#include "eshm/layout.h"
#include "eshm/ring.h"

namespace {

constexpr std::uint64_t kSmallRingBytes = 1 << 20;
constexpr std::uint64_t kLargeRingBytes = 4 << 20;

std::uint64_t CapacityFor(std::size_t message_bytes) {
  return message_bytes > 4096 ? kLargeRingBytes : kSmallRingBytes;
}

// A ring in a 128-aligned heap buffer: RingControl, then `capacity` bytes of data.
class HeapRing {
 public:
  explicit HeapRing(std::uint64_t capacity) : capacity_(capacity) {
    memory_ = static_cast<std::byte*>(
        std::aligned_alloc(eshm::kFalseSharingRange, sizeof(eshm::RingControl) + capacity));
    if (memory_ == nullptr) throw std::bad_alloc();
    eshm::InitializeRing(control());
    // Zeroed (and so faulted in) up front: page faults are not what these benchmarks measure.
    std::memset(data(), 0, capacity_);
  }
  ~HeapRing() { std::free(memory_); }
  HeapRing(const HeapRing&) = delete;
  HeapRing& operator=(const HeapRing&) = delete;

  eshm::RingProducer MakeProducer() {
    return eshm::RingProducer(control(), data(), capacity_, eshm::MaxPayloadForCapacity(capacity_));
  }
  eshm::RingConsumer MakeConsumer() {
    return eshm::RingConsumer(control(), data(), capacity_, eshm::MaxPayloadForCapacity(capacity_));
  }

 private:
  eshm::RingControl* control() { return reinterpret_cast<eshm::RingControl*>(memory_); }
  std::byte* data() { return memory_ + sizeof(eshm::RingControl); }

  std::uint64_t capacity_;
  std::byte* memory_;
};

void StampSequence(std::vector<std::byte>& message, std::uint64_t sequence) {
  std::memcpy(message.data(), &sequence, sizeof(sequence));
}

std::uint64_t ReadSequence(const std::byte* message) {
  std::uint64_t sequence;
  std::memcpy(&sequence, message, sizeof(sequence));
  return sequence;
}

void ReportBytes(benchmark::State& state, std::size_t message_bytes) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(message_bytes));
}

// Pins the calling thread to the `index`-th CPU it may run on, if there are at least two.
void PinToAllowedCpu(int index) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
  for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == index) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
      return;
    }
  }
}

// A minimal_ring.h ring on the heap, for the same benchmarks.
class MinimalHeapRing {
 public:
  explicit MinimalHeapRing(std::uint64_t capacity)
      : control_(new eshm_bench::MinimalRingControl{}), data_(capacity), capacity_(capacity) {}
  eshm_bench::MinimalRingProducer<> MakeProducer() { return {control_.get(), data_.data(), capacity_}; }
  eshm_bench::MinimalRingConsumer<> MakeConsumer() { return {control_.get(), data_.data(), capacity_}; }
  // Read from the consumer thread only (the head is its own).
  bool Drained() const {
    // acquire: pairs with the producer's release store of tail. relaxed: head is the consumer's own store.
    return control_->tail.load(std::memory_order_acquire) == control_->head.load(std::memory_order_relaxed);
  }

 private:
  std::unique_ptr<eshm_bench::MinimalRingControl> control_;
  std::vector<std::byte> data_;  // zeroed, so faulted in
  std::uint64_t capacity_;
};

// One thread writes `batch` messages, then reads them back, per iteration. `try_write(message)` and
// `try_read(buffer, &size)` (true on a message) are the ring under test; `flush()` publishes staged writes.
template <typename TryWrite, typename Flush, typename TryRead>
void RunCycle(benchmark::State& state, std::size_t message_bytes, int batch, TryWrite try_write, Flush flush,
              TryRead try_read) {
  std::vector<std::byte> message(message_bytes, std::byte{0x5a});
  std::vector<std::byte> received(message_bytes);
  std::uint64_t written = 0, read = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      StampSequence(message, written++);
      if (!try_write(message)) {
        state.SkipWithError("TryWrite failed on an empty ring");
        return;
      }
    }
    flush();
    for (int i = 0; i < batch; ++i) {
      std::size_t size = 0;
      if (!try_read(received, &size) || size != message_bytes || ReadSequence(received.data()) != read++) {
        state.SkipWithError("TryRead did not return the message just written");
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * static_cast<std::int64_t>(message_bytes));
}

constexpr int kCycleBatch = 32;

void RunEshmCycle(benchmark::State& state, eshm::Publish publish, int batch) {
  const std::size_t message_bytes = static_cast<std::size_t>(state.range(0));
  HeapRing ring(CapacityFor(message_bytes));
  eshm::RingProducer producer = ring.MakeProducer();
  eshm::RingConsumer consumer = ring.MakeConsumer();
  RunCycle(
      state, message_bytes, batch,
      [&](const std::vector<std::byte>& message) { return producer.TryWrite(message.data(), message.size(), publish); },
      [&] { producer.Flush(); },
      [&](std::span<std::byte> buffer, std::size_t* size) {
        return consumer.TryRead(buffer, size) == eshm::ReadResult::kOk;
      });
}

void BM_Ring_WriteReadCycle(benchmark::State& state) { RunEshmCycle(state, eshm::Publish::kNow, 1); }
void BM_Ring_BatchCycle(benchmark::State& state) { RunEshmCycle(state, eshm::Publish::kDeferred, kCycleBatch); }

void BM_MinimalRing_BatchCycle(benchmark::State& state) {
  const std::size_t message_bytes = static_cast<std::size_t>(state.range(0));
  MinimalHeapRing ring(CapacityFor(message_bytes));
  eshm_bench::MinimalRingProducer<> producer = ring.MakeProducer();
  eshm_bench::MinimalRingConsumer<> consumer = ring.MakeConsumer();
  RunCycle(
      state, message_bytes, kCycleBatch,
      [&](const std::vector<std::byte>& message) { return producer.TryWrite(message.data(), message.size()); }, [] {},
      [&](std::span<std::byte> buffer, std::size_t* size) { return consumer.TryRead(buffer, size); });
}

// The consumer side of the threaded benchmarks: reads until told to stop and the ring is drained.
struct alignas(eshm::kFalseSharingRange) ConsumerShared {
  std::atomic<std::uint64_t> consumed{0};  // written by the consumer only
  // Relaxed everywhere: it only stops loops early, and the final check follows join().
  std::atomic<bool> failed{false};
};
struct alignas(eshm::kFalseSharingRange) StopFlag {
  std::atomic<bool> stop{false};  // written by the producer only
};

// `try_read(buffer, &size)` returns a ReadResult; `drained()` is true once nothing is left to read.
template <typename TryRead, typename Drained>
void ConsumeUntilStopped(std::size_t message_bytes, ConsumerShared& shared, const StopFlag& stop, TryRead try_read,
                         Drained drained) {
  PinToAllowedCpu(1);
  std::vector<std::byte> received(message_bytes);
  std::uint64_t expected = 0;
  for (;;) {
    std::size_t size = 0;
    const eshm::ReadResult result = try_read(received, &size);
    if (result == eshm::ReadResult::kOk) {
      if (size != message_bytes || ReadSequence(received.data()) != expected) {
        shared.failed.store(true, std::memory_order_relaxed);
        return;
      }
      ++expected;
      // release: pairs with the producer's acquire when it waits for the last message.
      shared.consumed.store(expected, std::memory_order_release);
      continue;
    }
    if (result != eshm::ReadResult::kEmpty) {
      shared.failed.store(true, std::memory_order_relaxed);
      return;
    }
    // acquire: pairs with the producer's release of stop, made after its final Flush, so an empty ring
    // seen after it really is drained.
    if (stop.stop.load(std::memory_order_acquire) && drained()) return;
  }
}

// Streams one message per iteration from the benchmark thread to a consumer thread. `try_write(message)`
// copies a message in (false if full), `flush()` publishes anything staged; the consumer side is `consume`.
template <typename TryWrite, typename Flush, typename Consume>
void RunStream(benchmark::State& state, std::size_t message_bytes, TryWrite try_write, Flush flush,
               Consume consume) {
  ConsumerShared shared;
  StopFlag stop;
  std::thread consumer_thread([&] { consume(shared, stop); });
  cpu_set_t original;
  const bool restore = pthread_getaffinity_np(pthread_self(), sizeof(original), &original) == 0;
  PinToAllowedCpu(0);
  std::vector<std::byte> message(message_bytes, std::byte{0x5a});
  std::uint64_t sequence = 0;
  for (auto _ : state) {
    StampSequence(message, sequence);
    while (!try_write(message)) {
      if (shared.failed.load(std::memory_order_relaxed)) break;
    }
    ++sequence;
    // The last iteration stays timed until the consumer has everything: the rate is end to end.
    if (sequence == static_cast<std::uint64_t>(state.max_iterations)) {
      flush();
      // acquire: pairs with the consumer's release of its count.
      while (shared.consumed.load(std::memory_order_acquire) != sequence &&
             !shared.failed.load(std::memory_order_relaxed)) {
      }
    }
  }
  flush();
  // release: pairs with the consumer's acquire; every message is published before stop is seen.
  stop.stop.store(true, std::memory_order_release);
  consumer_thread.join();
  if (restore) pthread_setaffinity_np(pthread_self(), sizeof(original), &original);
  if (shared.failed.load(std::memory_order_relaxed)) {
    state.SkipWithError("consumer saw a wrong size or sequence number");
    return;
  }
  ReportBytes(state, message_bytes);
}

void RunEshmThroughput(benchmark::State& state, eshm::Publish publish) {
  const std::size_t message_bytes = static_cast<std::size_t>(state.range(0));
  HeapRing ring(CapacityFor(message_bytes));
  eshm::RingProducer producer = ring.MakeProducer();
  eshm::RingConsumer consumer = ring.MakeConsumer();
  RunStream(
      state, message_bytes,
      [&](const std::vector<std::byte>& message) { return producer.TryWrite(message.data(), message.size(), publish); },
      [&] { producer.Flush(); },
      [&](ConsumerShared& shared, const StopFlag& stop) {
        ConsumeUntilStopped(
            message_bytes, shared, stop,
            [&](std::span<std::byte> buffer, std::size_t* size) { return consumer.TryRead(buffer, size); },
            [&] { return !consumer.HasData(); });
      });
}

void BM_Ring_Throughput(benchmark::State& state) { RunEshmThroughput(state, eshm::Publish::kDeferred); }
void BM_Ring_ThroughputPublishNow(benchmark::State& state) { RunEshmThroughput(state, eshm::Publish::kNow); }

// The same stream over minimal_ring.h, the baseline ipc_benchmark compares eshm with, for quick in-process
// comparisons while tuning.
void BM_MinimalRing_Throughput(benchmark::State& state) {
  const std::size_t message_bytes = static_cast<std::size_t>(state.range(0));
  MinimalHeapRing ring(CapacityFor(message_bytes));
  eshm_bench::MinimalRingProducer<> producer = ring.MakeProducer();
  eshm_bench::MinimalRingConsumer<> consumer = ring.MakeConsumer();
  RunStream(
      state, message_bytes,
      [&](const std::vector<std::byte>& message) { return producer.TryWrite(message.data(), message.size()); },
      [] {},
      [&](ConsumerShared& shared, const StopFlag& stop) {
        ConsumeUntilStopped(
            message_bytes, shared, stop,
            [&](std::span<std::byte> buffer, std::size_t* size) {
              return consumer.TryRead(buffer, size) ? eshm::ReadResult::kOk : eshm::ReadResult::kEmpty;
            },
            [&] { return ring.Drained(); });
      });
}

void MessageSizes(benchmark::internal::Benchmark* b) {
  b->ArgName("msg_bytes");
  for (const std::int64_t bytes : {8, 64, 512, 4096, 65536}) b->Arg(bytes);
}

BENCHMARK(BM_Ring_WriteReadCycle)->Apply(MessageSizes);
BENCHMARK(BM_Ring_BatchCycle)->Apply(MessageSizes);
BENCHMARK(BM_MinimalRing_BatchCycle)->Apply(MessageSizes);
BENCHMARK(BM_Ring_Throughput)->Apply(MessageSizes)->UseRealTime();
BENCHMARK(BM_Ring_ThroughputPublishNow)->Apply(MessageSizes)->UseRealTime();
BENCHMARK(BM_MinimalRing_Throughput)->Apply(MessageSizes)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
