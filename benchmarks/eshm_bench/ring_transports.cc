// Ring-level transports, for what the Channel costs on top of the ring and what the ring costs on top of the
// simplest correct ring:
//
//   eshm_ring     eshm's RingProducer/RingConsumer on a Segment, without the Channel (no roles, heartbeat or
//                 moves): spin polls TryWrite/TryRead; blocking waits as the eshm transport does
//                 (WaitStrategy::Sleep(), or Adaptive() with --eshm_wait=adaptive).
//   minimal_ring  the baseline ring of benchmarks/minimal_ring.h (publishes every message; no blocking wait:
//                 spin only, a blocking run is skipped).
//
// Both map their memory before the fork (the segment's name is removed at once: nothing is left behind if
// the run is killed), so parent and child share the pages and neither opens anything.
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"
#include "benchmarks/minimal_ring.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"
#include "eshm/wait_strategy.h"

namespace eshm_bench {
namespace {

constexpr std::int64_t kSliceMs = 100;

absl::Status NoCheck() { return absl::OkStatus(); }  // the watchdog is looked at between slices instead


// ---- eshm_ring ----

class EshmRingEndpoint final : public Endpoint {
 public:
  EshmRingEndpoint(const eshm::Segment& segment, bool parent, const TransportSpec& spec, Watchdog& watchdog)
      : out_(segment.MakeProducer(parent ? eshm::Direction::kMasterToSlave : eshm::Direction::kSlaveToMaster)),
        in_(segment.MakeConsumer(parent ? eshm::Direction::kSlaveToMaster : eshm::Direction::kMasterToSlave)),
        spin_(spec.wait == Wait::kSpin),
        wait_(spin_ ? eshm::WaitStrategy::Spin() : spec.eshm_adaptive ? eshm::WaitStrategy::Adaptive() : eshm::WaitStrategy::Sleep()),
        publish_(spec.eshm_deferred ? eshm::Publish::kDeferred : eshm::Publish::kNow),
        control_(segment.ring_control(parent ? eshm::Direction::kMasterToSlave : eshm::Direction::kSlaveToMaster)),
        in_control_(segment.ring_control(parent ? eshm::Direction::kSlaveToMaster : eshm::Direction::kMasterToSlave)),
        watchdog_(watchdog) {}

  absl::Status Send(std::span<const std::byte> message) override {
    if (spin_) {
      while (!out_.TryWrite(message, publish_)) {
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm_ring TryWrite");
      }
      return absl::OkStatus();
    }
    for (;;) {
      const absl::Status status = out_.Write(message, wait_, eshm::Deadline::TimeoutMs(kSliceMs), publish_);
      if (status.code() != absl::StatusCode::kDeadlineExceeded) return status;
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm_ring Write");
    }
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    if (spin_) {
      for (;;) {
        const eshm::ReadResult result = in_.TryRead(buffer, size);
        if (result == eshm::ReadResult::kOk) return absl::OkStatus();
        if (result != eshm::ReadResult::kEmpty) return absl::DataLossError("eshm_ring TryRead: not a whole message");
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm_ring TryRead");
      }
    }
    for (;;) {
      absl::StatusOr<std::size_t> read = in_.Read(buffer, wait_, eshm::Deadline::TimeoutMs(kSliceMs));
      if (read.ok()) {
        *size = *read;
        return absl::OkStatus();
      }
      if (read.status().code() != absl::StatusCode::kDeadlineExceeded) return read.status();
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm_ring Read");
    }
  }

  absl::Status Flush() override {
    out_.Flush();
    return absl::OkStatus();
  }

  absl::Status SendInPlace(std::size_t size, absl::FunctionRef<void(std::span<std::byte>)> fill) override {
    std::byte* data;
    while ((data = out_.TryClaim(size)) == nullptr) {
      if (spin_) {
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm_ring TryClaim");
        continue;
      }
      absl::Status status = out_.WaitForSpace(size, wait_, eshm::Deadline::TimeoutMs(kSliceMs), NoCheck);
      if (!status.ok() && status.code() != absl::StatusCode::kDeadlineExceeded) return status;
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm_ring WaitForSpace");
    }
    fill(std::span<std::byte>(data, size));
    out_.Commit(size, publish_);
    return absl::OkStatus();
  }

  absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> use) override {
    std::span<const std::byte> message;
    for (;;) {
      const eshm::ReadResult result = in_.TryPeek(&message);
      if (result == eshm::ReadResult::kOk) break;
      if (result != eshm::ReadResult::kEmpty) return absl::DataLossError("eshm_ring TryPeek: not a whole message");
      if (spin_) {
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm_ring TryPeek");
        continue;
      }
      absl::Status status = in_.WaitForData(wait_, eshm::Deadline::TimeoutMs(kSliceMs), NoCheck);
      if (!status.ok() && status.code() != absl::StatusCode::kDeadlineExceeded) return status;
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm_ring WaitForData");
    }
    if (absl::Status s = use(message); !s.ok()) return s;
    in_.Release();
    return absl::OkStatus();
  }

  std::optional<std::uint64_t> FutexCalls() const override {
    // Relaxed: counters for a report, read after the run.
    std::uint64_t calls = 0;
    for (const eshm::RingControl* c : {control_, in_control_}) {
      calls += c->wait.wake_syscalls.load(std::memory_order_relaxed) + c->wait.wait_syscalls.load(std::memory_order_relaxed);
    }
    return calls;
  }

 private:
  eshm::RingProducer out_;
  eshm::RingConsumer in_;
  const bool spin_;
  const eshm::WaitStrategy wait_;
  const eshm::Publish publish_;
  const eshm::RingControl* control_;
  const eshm::RingControl* in_control_;
  Watchdog& watchdog_;
};

class EshmRingTransport final : public Transport {
 public:
  std::string name() const override { return "eshm_ring"; }
  bool zero_copy() const override { return true; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    const std::string name = UniqueName();
    const std::uint64_t bytes = RingBytesFor(spec);
    absl::StatusOr<eshm::Segment> segment = eshm::Segment::Create(name, eshm::SegmentOptions{bytes, bytes});
    if (!segment.ok()) return segment.status();
    (void)eshm::Segment::Unlink(name);  // the mapping is all the two processes need
    segment_.emplace(*std::move(segment));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    return std::unique_ptr<Endpoint>(new EshmRingEndpoint(*segment_, parent, spec_, watchdog));
  }

  void Cleanup() override { segment_.reset(); }

 private:
  TransportSpec spec_;
  std::optional<eshm::Segment> segment_;
};

// ---- minimal_ring ----

// Two rings (parent -> child, child -> parent), each a control block followed by its data, in one shared
// anonymous mapping.
struct MinimalRings {
  std::uint64_t capacity = 0;
  std::byte* base = nullptr;
  std::size_t bytes = 0;

  std::size_t RingStride() const { return sizeof(MinimalRingControl) + capacity; }
  MinimalRingControl* control(int ring) const {
    return reinterpret_cast<MinimalRingControl*>(base + static_cast<std::size_t>(ring) * RingStride());
  }
  std::byte* data(int ring) const { return base + static_cast<std::size_t>(ring) * RingStride() + sizeof(MinimalRingControl); }
};

class MinimalRingEndpoint final : public Endpoint {
 public:
  MinimalRingEndpoint(const MinimalRings& rings, bool parent, Watchdog& watchdog)
      : out_(rings.control(parent ? 0 : 1), rings.data(parent ? 0 : 1), rings.capacity),
        in_(rings.control(parent ? 1 : 0), rings.data(parent ? 1 : 0), rings.capacity),
        watchdog_(watchdog) {}

  absl::Status Send(std::span<const std::byte> message) override {
    while (!out_.TryWrite(message.data(), message.size())) {
      if (watchdog_.SpinExpired()) return watchdog_.Error("minimal_ring TryWrite");
    }
    return absl::OkStatus();
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    while (!in_.TryRead(buffer, size)) {
      if (watchdog_.SpinExpired()) return watchdog_.Error("minimal_ring TryRead");
    }
    return absl::OkStatus();
  }

  absl::Status SendInPlace(std::size_t size, absl::FunctionRef<void(std::span<std::byte>)> fill) override {
    std::byte* data;
    while ((data = out_.TryClaim(size)) == nullptr) {
      if (watchdog_.SpinExpired()) return watchdog_.Error("minimal_ring TryClaim");
    }
    fill(std::span<std::byte>(data, size));
    out_.Commit(size);
    return absl::OkStatus();
  }

  absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> use) override {
    std::span<const std::byte> message;
    while (!in_.TryPeek(&message)) {
      if (watchdog_.SpinExpired()) return watchdog_.Error("minimal_ring TryPeek");
    }
    if (absl::Status s = use(message); !s.ok()) return s;
    in_.Release(message.size());
    return absl::OkStatus();
  }

 private:
  MinimalRingProducer out_;
  MinimalRingConsumer in_;
  Watchdog& watchdog_;
};

class MinimalRingTransport final : public Transport {
 public:
  std::string name() const override { return "minimal_ring"; }
  bool zero_copy() const override { return true; }

  absl::Status Prepare(const TransportSpec& spec) override {
    if (spec.wait != Wait::kSpin) {
      return absl::UnimplementedError("minimal_ring has no blocking wait (spin only)");
    }
    rings_.capacity = RingBytesFor(spec);
    rings_.bytes = 2 * rings_.RingStride();
    void* base = mmap(nullptr, rings_.bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (base == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap: ", std::strerror(errno)));
    rings_.base = static_cast<std::byte*>(base);
    for (int ring = 0; ring < 2; ++ring) new (rings_.control(ring)) MinimalRingControl{};
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    return std::unique_ptr<Endpoint>(new MinimalRingEndpoint(rings_, parent, watchdog));
  }

  void Cleanup() override {
    if (rings_.base != nullptr) munmap(rings_.base, rings_.bytes);
    rings_.base = nullptr;
  }

 private:
  MinimalRings rings_;
};

}  // namespace

std::unique_ptr<Transport> MakeEshmRingTransport() { return std::make_unique<EshmRingTransport>(); }
std::unique_ptr<Transport> MakeMinimalRingTransport() { return std::make_unique<MinimalRingTransport>(); }

}  // namespace eshm_bench
