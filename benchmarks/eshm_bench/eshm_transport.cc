// eshm through its public API: the child opens the channel as master (creating the segment), the parent as
// slave (EshmChannelOptions says why). spin polls TryWrite/TryRead; blocking calls Write/Read with
// WaitStrategy::Sleep() (Adaptive() with --eshm_wait=adaptive) in 100 ms slices, consulting the watchdog
// between them. With --eshm_waitset=N each side receives through a WaitSet of N channels: N - 1 idle ones
// (masters of their own, no peer) and the measured one, added last (the worst place: past the words one
// kernel sleep takes when N > 127).
#include <array>

#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"
#include "eshm/segment.h"
#include "eshm/wait_set.h"

namespace eshm_bench {
namespace {

class EshmEndpoint final : public PolledEndpoint {
 public:
  // `count_futex`: false where this channel's futex calls are not the connection's (a bridge joins two).
  EshmEndpoint(std::unique_ptr<eshm::Channel> channel, const TransportSpec& spec, Watchdog& watchdog, bool count_futex)
      : PolledEndpoint("eshm", spec.wait == Wait::kSpin, watchdog),
        channel_(std::move(channel)),
        count_futex_(count_futex),
        publish_(spec.eshm_deferred ? eshm::Publish::kDeferred : eshm::Publish::kNow) {}

  // From now on receives through a WaitSet (see above) of `n` channels: idle ones named `prefix`1..., then this.
  absl::Status ReceiveThroughWaitSet(int n, const std::string& prefix, eshm::WaitStrategy wait) {
    set_ = std::make_unique<eshm::WaitSet>(wait);
    eshm::ChannelOptions options;
    options.role = eshm::ChannelRole::kMaster;
    options.m2s_capacity = options.s2m_capacity = 4096;
    for (int i = 1; i < n; ++i) {
      absl::StatusOr<std::unique_ptr<eshm::Channel>> idle = eshm::Channel::Open(absl::StrCat(prefix, i), options);
      if (!idle.ok()) return idle.status();
      idle_.push_back(*std::move(idle));
      if (absl::Status s = set_->Add(idle_.back().get(), eshm::WaitSet::kReadable); !s.ok()) return s;
    }
    return set_->Add(channel_.get(), eshm::WaitSet::kReadable);
  }

  absl::Status Send(std::span<const std::byte> message) override {
    if (spin_) return Poll(true, "TryWrite", [&] { return Done(channel_->TryWrite(message, publish_)); });
    return Poll(false, "Write", [&] { return Sliced(channel_->Write(message, Slice(), publish_)); });
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    if (set_ != nullptr) {
      return Poll(false, "WaitSet::Wait", [&] {
        if (Attempt done = Done(channel_->TryRead(buffer, size))) return done;
        return Waited(set_->Wait(Slice(), &ready_));
      });
    }
    if (spin_) return Poll(true, "TryRead", [&] { return Done(channel_->TryRead(buffer, size)); });
    return Poll(false, "Read", [&] { return Sliced(channel_->Read(buffer, Slice()), size); });
  }

  absl::Status Flush() override {
    channel_->Flush();
    return absl::OkStatus();
  }

  absl::Status SendInPlace(std::size_t size, absl::FunctionRef<void(std::span<std::byte>)> fill) override {
    std::byte* data = nullptr;
    const absl::Status claimed =
        spin_ ? Poll(true, "TryClaim", [&] { return DoneIf((data = channel_->TryClaim(size)) != nullptr); })
              : Poll(false, "Claim", [&] { return Sliced(channel_->Claim(size, Slice()), &data); });
    if (!claimed.ok()) return claimed;
    fill(std::span<std::byte>(data, size));
    return StatusOf(channel_->Commit(size, publish_));
  }

  absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> use) override {
    std::span<const std::byte> message;
    const absl::Status peeked =
        set_ != nullptr ? Poll(false, "WaitSet::Wait", [&] {
          if (Attempt done = Done(channel_->TryPeek(&message))) return done;
          return Waited(set_->Wait(Slice(), &ready_));
        })
        : spin_ ? Poll(true, "TryPeek", [&] { return Done(channel_->TryPeek(&message)); })
                : Poll(false, "Peek", [&] { return Sliced(channel_->Peek(Slice()), &message); });
    if (!peeked.ok()) return peeked;
    if (absl::Status s = use(message); !s.ok()) return s;
    return StatusOf(channel_->Release());
  }

  std::optional<std::uint64_t> FutexCalls() const override {
    if (!count_futex_) return std::nullopt;
    const eshm::ChannelStats stats = channel_->stats();  // both rings, both sides
    return stats.wake_syscalls + stats.wait_syscalls;
  }

 private:
  absl::Status StatusOf(eshm::IoResult result) const {
    return result == eshm::IoResult::kOk ? absl::OkStatus() : channel_->StatusOf(result);
  }
  Attempt Done(eshm::IoResult result) const {
    if (result == eshm::IoResult::kWouldBlock) return std::nullopt;
    return StatusOf(result);
  }

  std::unique_ptr<eshm::Channel> channel_;
  const bool count_futex_;
  const eshm::Publish publish_;
  std::vector<std::unique_ptr<eshm::Channel>> idle_;
  std::unique_ptr<eshm::WaitSet> set_;  // destroyed before the channels close: declared after them
  std::vector<eshm::WaitSet::Ready> ready_;
};

class EshmTransport final : public Transport {
 public:
  std::string name() const override { return "eshm"; }
  bool zero_copy() const override { return true; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    name_ = UniqueName();
    slots_[0] = RegisterCleanupPath(eshm::Segment::PathFor(name_));
    if (spec.eshm_waitset > 1) {  // each side's idle WaitSet channels: `name_`_p1, ... and _c1, ...
      slots_[1] = RegisterCleanupPath(eshm::Segment::PathFor(name_ + "_p"), 1, spec.eshm_waitset - 1);
      slots_[2] = RegisterCleanupPath(eshm::Segment::PathFor(name_ + "_c"), 1, spec.eshm_waitset - 1);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl& control, Watchdog& watchdog) override {
    eshm::ChannelOptions options = EshmChannelOptions(spec_, parent);
    // The slave opens only after the master has created the segment, so it never retries; the master looks
    // at its name this rarely where no inotify tells it of a change.
    options.reconnect_retry_interval_ms = 1000;
    // acquire: pairs with the child's release store below; the segment exists.
    const auto master_ready = [&] { return control.master_ready.value.load(std::memory_order_acquire) != 0; };
    if (parent && !watchdog.SleepUntil(master_ready)) return watchdog.Error("waiting for the eshm master");
    absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(name_, options);
    if (!channel.ok()) return channel.status();
    // release: pairs with the parent's acquire load above.
    if (!parent) control.master_ready.value.store(1, std::memory_order_release);
    eshm::Channel* c = channel->get();
    if (!watchdog.SleepUntil([c] { return c->IsRemoteAlive(); })) return watchdog.Error("waiting for the eshm peer");
    auto endpoint = std::make_unique<EshmEndpoint>(*std::move(channel), spec_, watchdog, /*count_futex=*/true);
    if (spec_.eshm_waitset > 0) {
      const std::string prefix = absl::StrCat(name_, parent ? "_p" : "_c");
      if (absl::Status s = endpoint->ReceiveThroughWaitSet(spec_.eshm_waitset, prefix, options.wait); !s.ok()) return s;
    }
    return endpoint;
  }

  void Cleanup() override {
    for (int& slot : slots_) {  // the masters remove theirs on Close; this covers a failed run
      RemoveCleanupPath(slot);
      slot = -1;
    }
  }

 private:
  TransportSpec spec_;
  std::string name_;
  std::array<int, 3> slots_ = {-1, -1, -1};
};

}  // namespace

std::unique_ptr<Transport> MakeEshmTransport() { return std::make_unique<EshmTransport>(); }

std::unique_ptr<Endpoint> MakeEshmChannelEndpoint(std::unique_ptr<eshm::Channel> channel, const TransportSpec& spec,
                                                  Watchdog& watchdog) {
  return std::make_unique<EshmEndpoint>(std::move(channel), spec, watchdog, /*count_futex=*/false);
}

}  // namespace eshm_bench
