// Ring-level transports: eshm_ring, eshm's RingProducer/RingConsumer without the Channel (no roles, heartbeat
// or moves), waiting as the eshm transport does, for what the Channel costs on top of the ring; minimal_ring,
// the baseline ring of benchmarks/minimal_ring.h (spin only: a blocking run is skipped), for what the ring costs
// on top of the simplest correct ring. Both map their memory before the fork, so neither opens anything:
// eshm_ring a Segment whose name it removes at once (nothing is left behind if the run is killed),
// minimal_ring an anonymous shared mapping of two rings (parent -> child, then child -> parent), each a
// control block followed by its data.
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"
#include "benchmarks/minimal_ring.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"

namespace eshm_bench {
namespace {

constexpr eshm::Direction kDown = eshm::Direction::kMasterToSlave;  // parent -> child
constexpr eshm::Direction kUp = eshm::Direction::kSlaveToMaster;

absl::Status NoCheck() { return absl::OkStatus(); }  // the watchdog is looked at between slices instead

class EshmRingEndpoint final : public PolledEndpoint {
 public:
  EshmRingEndpoint(const eshm::Segment& segment, bool parent, const TransportSpec& spec, Watchdog& watchdog)
      : PolledEndpoint("eshm_ring", spec.wait == Wait::kSpin, watchdog),
        segment_(segment),
        out_(segment.MakeProducer(parent ? kDown : kUp)),
        in_(segment.MakeConsumer(parent ? kUp : kDown)),
        wait_(EshmChannelOptions(spec, parent).wait),  // the eshm transport's
        publish_(spec.eshm_deferred ? eshm::Publish::kDeferred : eshm::Publish::kNow) {}

  absl::Status Send(std::span<const std::byte> message) override {
    if (spin_) return Poll(true, "TryWrite", [&] { return DoneIf(out_.TryWrite(message, publish_)); });
    return Poll(false, "Write", [&] { return Sliced(out_.Write(message, wait_, Slice(), publish_)); });
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    if (spin_) return Poll(true, "TryRead", [&] { return Done(in_.TryRead(buffer, size), "TryRead"); });
    return Poll(false, "Read", [&] { return Sliced(in_.Read(buffer, wait_, Slice()), size); });
  }

  absl::Status Flush() override {
    out_.Flush();
    return absl::OkStatus();
  }

  // In place, a blocking try that fails waits (a slice at most) for the ring to change before the next.
  absl::Status SendInPlace(std::size_t size, absl::FunctionRef<void(std::span<std::byte>)> fill) override {
    std::byte* data = nullptr;
    const absl::Status claimed = Poll(spin_, spin_ ? "TryClaim" : "WaitForSpace", [&]() -> Attempt {
      if ((data = out_.TryClaim(size)) != nullptr) return absl::OkStatus();
      return spin_ ? std::nullopt : Waited(out_.WaitForSpace(size, wait_, Slice(), NoCheck));
    });
    if (!claimed.ok()) return claimed;
    fill(std::span<std::byte>(data, size));
    out_.Commit(size, publish_);
    return absl::OkStatus();
  }

  absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> use) override {
    std::span<const std::byte> message;
    const absl::Status peeked = Poll(spin_, spin_ ? "TryPeek" : "WaitForData", [&]() -> Attempt {
      if (Attempt done = Done(in_.TryPeek(&message), "TryPeek")) return done;
      return spin_ ? std::nullopt : Waited(in_.WaitForData(wait_, Slice(), NoCheck));
    });
    if (!peeked.ok()) return peeked;
    if (absl::Status s = use(message); !s.ok()) return s;
    in_.Release();
    return absl::OkStatus();
  }

  std::optional<std::uint64_t> FutexCalls() const override {
    std::uint64_t calls = 0;
    for (const eshm::Direction d : {kDown, kUp}) {
      const auto& counters = segment_.ring_control(d)->wait;
      // Relaxed: counters for a report, read after the run.
      calls += counters.wake_syscalls.load(std::memory_order_relaxed) +
               counters.wait_syscalls.load(std::memory_order_relaxed);
    }
    return calls;
  }

 private:
  // kEmpty: again; anything but kOk: not a whole message.
  Attempt Done(eshm::ReadResult result, const char* call) const {
    if (result == eshm::ReadResult::kEmpty) return std::nullopt;
    if (result == eshm::ReadResult::kOk) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat(what_, " ", call, ": not a whole message"));
  }

  const eshm::Segment& segment_;
  eshm::RingProducer out_;
  eshm::RingConsumer in_;
  const eshm::WaitStrategy wait_;
  const eshm::Publish publish_;
};

class MinimalRingEndpoint final : public PolledEndpoint {
 public:
  // `out` and `in`: a ring each, its control block followed by `capacity` bytes of data.
  MinimalRingEndpoint(std::byte* out, std::byte* in, std::uint64_t capacity, Watchdog& watchdog)
      : PolledEndpoint("minimal_ring", /*spin=*/true, watchdog),
        out_(reinterpret_cast<MinimalRingControl*>(out), out + sizeof(MinimalRingControl), capacity),
        in_(reinterpret_cast<MinimalRingControl*>(in), in + sizeof(MinimalRingControl), capacity) {}

  absl::Status Send(std::span<const std::byte> message) override {
    return Poll(true, "TryWrite", [&] { return DoneIf(out_.TryWrite(message.data(), message.size())); });
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    return Poll(true, "TryRead", [&] { return DoneIf(in_.TryRead(buffer, size)); });
  }

  absl::Status SendInPlace(std::size_t size, absl::FunctionRef<void(std::span<std::byte>)> fill) override {
    std::byte* data = nullptr;
    const absl::Status claimed =
        Poll(true, "TryClaim", [&] { return DoneIf((data = out_.TryClaim(size)) != nullptr); });
    if (!claimed.ok()) return claimed;
    fill(std::span<std::byte>(data, size));
    out_.Commit(size);
    return absl::OkStatus();
  }

  absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> use) override {
    std::span<const std::byte> message;
    if (absl::Status s = Poll(true, "TryPeek", [&] { return DoneIf(in_.TryPeek(&message)); }); !s.ok()) return s;
    if (absl::Status s = use(message); !s.ok()) return s;
    in_.Release(message.size());
    return absl::OkStatus();
  }

 private:
  MinimalRingProducer out_;
  MinimalRingConsumer in_;
};

class RingTransport final : public Transport {
 public:
  explicit RingTransport(bool minimal) : minimal_(minimal) {}
  std::string name() const override { return minimal_ ? "minimal_ring" : "eshm_ring"; }
  bool zero_copy() const override { return true; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    capacity_ = RingBytesFor(spec);
    if (minimal_) {
      if (spec.wait != Wait::kSpin) return absl::UnimplementedError("minimal_ring has no blocking wait (spin only)");
      if (!rings_.emplace(2 * Stride()).ok()) return ErrnoError("mmap");
      for (int i = 0; i < 2; ++i) new (Ring(i)) MinimalRingControl{};
      return absl::OkStatus();
    }
    const std::string name = UniqueName();
    absl::StatusOr<eshm::Segment> segment = eshm::Segment::Create(name, eshm::SegmentOptions{capacity_, capacity_});
    if (!segment.ok()) return segment.status();
    (void)eshm::Segment::Unlink(name);  // the mapping is all the two processes need
    segment_.emplace(*std::move(segment));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    if (!minimal_) return std::make_unique<EshmRingEndpoint>(*segment_, parent, spec_, watchdog);
    return std::make_unique<MinimalRingEndpoint>(Ring(parent ? 0 : 1), Ring(parent ? 1 : 0), capacity_, watchdog);
  }

  void Cleanup() override {
    segment_.reset();
    rings_.reset();
  }

 private:
  std::size_t Stride() const { return sizeof(MinimalRingControl) + capacity_; }
  std::byte* Ring(int i) const { return rings_->data() + static_cast<std::size_t>(i) * Stride(); }

  const bool minimal_;
  TransportSpec spec_;
  std::uint64_t capacity_ = 0;
  std::optional<eshm::Segment> segment_;  // eshm_ring's
  std::optional<SharedMapping> rings_;    // minimal_ring's
};

}  // namespace

std::unique_ptr<Transport> MakeRingTransport(bool minimal) { return std::make_unique<RingTransport>(minimal); }

}  // namespace eshm_bench
