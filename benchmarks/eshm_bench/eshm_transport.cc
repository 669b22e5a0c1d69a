// eshm through its public API: the child opens the channel as master (creating the segment), the parent as
// slave. (The child is the master so that a signal handler in the parent, which kills the child before it
// removes the segment name, never races a master's monitor re-creating the name it removed.) spin polls
// TryWrite/TryRead; blocking calls Write/Read with WaitStrategy::Sleep() (Adaptive() with
// --eshm_wait=adaptive) in 100 ms slices, so the watchdog is consulted between slices. With
// --eshm_waitset=N each side receives through a WaitSet of N channels: N - 1 idle ones (masters of their
// own, no peer) and the measured one, added last (the worst place: past the words one kernel sleep takes
// when N > 127).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/segment.h"
#include "eshm/wait_set.h"
#include "eshm/wait_strategy.h"

namespace eshm_bench {
namespace {

constexpr std::int64_t kSliceMs = 100;

class EshmEndpoint final : public Endpoint {
 public:
  EshmEndpoint(std::unique_ptr<eshm::Channel> channel, const TransportSpec& spec, Watchdog& watchdog,
               std::vector<std::unique_ptr<eshm::Channel>> idle, std::unique_ptr<eshm::WaitSet> set)
      : channel_(std::move(channel)),
        spin_(spec.wait == Wait::kSpin),
        publish_(spec.eshm_deferred ? eshm::Publish::kDeferred : eshm::Publish::kNow),
        watchdog_(watchdog),
        idle_(std::move(idle)),
        set_(std::move(set)) {}
  ~EshmEndpoint() override {
    set_.reset();
    channel_->Close();
  }

  absl::Status Send(std::span<const std::byte> message) override {
    if (spin_) {
      for (;;) {
        const eshm::IoResult result = channel_->TryWrite(message, publish_);
        if (result == eshm::IoResult::kOk) return absl::OkStatus();
        if (result != eshm::IoResult::kWouldBlock) return channel_->StatusOf(result);
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm TryWrite");
      }
    }
    for (;;) {
      const absl::Status status = channel_->Write(message, eshm::Deadline::TimeoutMs(kSliceMs), publish_);
      if (status.code() != absl::StatusCode::kDeadlineExceeded) return status;
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm Write");
    }
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    if (set_ != nullptr) return ReceiveThroughSet(buffer, size);
    if (spin_) {
      for (;;) {
        const eshm::IoResult result = channel_->TryRead(buffer, size);
        if (result == eshm::IoResult::kOk) return absl::OkStatus();
        if (result != eshm::IoResult::kWouldBlock) return channel_->StatusOf(result);
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm TryRead");
      }
    }
    for (;;) {
      absl::StatusOr<std::size_t> read = channel_->Read(buffer, eshm::Deadline::TimeoutMs(kSliceMs));
      if (read.ok()) {
        *size = *read;
        return absl::OkStatus();
      }
      if (read.status().code() != absl::StatusCode::kDeadlineExceeded) return read.status();
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm Read");
    }
  }

  absl::Status Flush() override {
    channel_->Flush();
    return absl::OkStatus();
  }

  absl::Status SendInPlace(std::size_t size, absl::FunctionRef<void(std::span<std::byte>)> fill) override {
    std::byte* data = nullptr;
    if (spin_) {
      while ((data = channel_->TryClaim(size)) == nullptr) {
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm TryClaim");
      }
    } else {
      for (;;) {
        absl::StatusOr<std::byte*> claimed = channel_->Claim(size, eshm::Deadline::TimeoutMs(kSliceMs));
        if (claimed.ok()) {
          data = *claimed;
          break;
        }
        if (claimed.status().code() != absl::StatusCode::kDeadlineExceeded) return claimed.status();
        if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm Claim");
      }
    }
    fill(std::span<std::byte>(data, size));
    const eshm::IoResult result = channel_->Commit(size, publish_);
    return result == eshm::IoResult::kOk ? absl::OkStatus() : channel_->StatusOf(result);
  }

  absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> use) override {
    std::span<const std::byte> message;
    if (spin_) {
      for (;;) {
        const eshm::IoResult result = channel_->TryPeek(&message);
        if (result == eshm::IoResult::kOk) break;
        if (result != eshm::IoResult::kWouldBlock) return channel_->StatusOf(result);
        if (watchdog_.SpinExpired()) return watchdog_.Error("eshm TryPeek");
      }
    } else {
      for (;;) {
        absl::StatusOr<std::span<const std::byte>> peeked = channel_->Peek(eshm::Deadline::TimeoutMs(kSliceMs));
        if (peeked.ok()) {
          message = *peeked;
          break;
        }
        if (peeked.status().code() != absl::StatusCode::kDeadlineExceeded) return peeked.status();
        if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm Peek");
      }
    }
    if (absl::Status s = use(message); !s.ok()) return s;
    const eshm::IoResult released = channel_->Release();
    return released == eshm::IoResult::kOk ? absl::OkStatus() : channel_->StatusOf(released);
  }

  std::optional<std::uint64_t> FutexCalls() const override {
    if (!count_futex_) return std::nullopt;
    const eshm::ChannelStats stats = channel_->stats();  // both rings, both sides
    return stats.wake_syscalls + stats.wait_syscalls;
  }

  // This channel's futex calls are not the connection's (a bridge pair joins two channels).
  void DoNotCountFutexCalls() { count_futex_ = false; }

 private:
  absl::Status ReceiveThroughSet(std::span<std::byte> buffer, std::size_t* size) {
    for (;;) {
      const eshm::IoResult result = channel_->TryRead(buffer, size);
      if (result == eshm::IoResult::kOk) return absl::OkStatus();
      if (result != eshm::IoResult::kWouldBlock) return channel_->StatusOf(result);
      if (absl::Status s = set_->Wait(eshm::Deadline::TimeoutMs(kSliceMs), &ready_); !s.ok()) return s;
      if (watchdog_.ExpiredNow()) return watchdog_.Error("eshm WaitSet::Wait");
    }
  }

  std::unique_ptr<eshm::Channel> channel_;
  const bool spin_;
  const eshm::Publish publish_;
  Watchdog& watchdog_;
  std::vector<std::unique_ptr<eshm::Channel>> idle_;
  std::unique_ptr<eshm::WaitSet> set_;  // before channel_ and idle_ close: declared after them
  std::vector<eshm::WaitSet::Ready> ready_;
  bool count_futex_ = true;
};

class EshmTransport final : public Transport {
 public:
  std::string name() const override { return "eshm"; }
  bool zero_copy() const override { return true; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    name_ = UniqueName();
    cleanup_slot_ = RegisterCleanupPath(eshm::Segment::PathFor(name_));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl& control, Watchdog& watchdog) override {
    eshm::ChannelOptions options = EshmChannelOptions(spec_, parent);
    // The slave opens only after the master has created the segment, so it never retries; the master looks
    // at its name this rarely where no inotify tells it of a change.
    options.reconnect_retry_interval_ms = 1000;
    if (parent) {
      // acquire: pairs with the child's release store below; the segment exists.
      if (!watchdog.SleepUntil([&] { return control.master_ready.value.load(std::memory_order_acquire) != 0; })) {
        return watchdog.Error("waiting for the eshm master");
      }
    }
    absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(name_, options);
    if (!channel.ok()) return channel.status();
    // release: pairs with the parent's acquire load above.
    if (!parent) control.master_ready.value.store(1, std::memory_order_release);
    eshm::Channel* c = channel->get();
    if (!watchdog.SleepUntil([c] { return c->IsRemoteAlive(); })) return watchdog.Error("waiting for the eshm peer");
    std::vector<std::unique_ptr<eshm::Channel>> idle;
    std::unique_ptr<eshm::WaitSet> set;
    if (spec_.eshm_waitset > 0) {
      set = std::make_unique<eshm::WaitSet>(options.wait);
      eshm::ChannelOptions idle_options;
      idle_options.role = eshm::ChannelRole::kMaster;
      idle_options.m2s_capacity = idle_options.s2m_capacity = 4096;
      for (int i = 1; i < spec_.eshm_waitset; ++i) {
        const std::string idle_name = absl::StrCat(name_, parent ? "_p" : "_c", i);
        absl::StatusOr<std::unique_ptr<eshm::Channel>> extra = eshm::Channel::Open(idle_name, idle_options);
        if (!extra.ok()) return extra.status();
        if (absl::Status s = set->Add(extra->get(), eshm::WaitSet::kReadable); !s.ok()) return s;
        idle.push_back(*std::move(extra));
      }
      if (absl::Status s = set->Add(c, eshm::WaitSet::kReadable); !s.ok()) return s;
    }
    return std::unique_ptr<Endpoint>(
        new EshmEndpoint(*std::move(channel), spec_, watchdog, std::move(idle), std::move(set)));
  }

  void Cleanup() override {
    (void)eshm::Segment::Unlink(name_);  // the master removes it on Close; this covers a failed run
    for (int i = 1; i < spec_.eshm_waitset; ++i) {
      for (const char* side : {"_p", "_c"}) (void)eshm::Segment::Unlink(absl::StrCat(name_, side, i));
    }
    UnregisterCleanupPath(cleanup_slot_);
    cleanup_slot_ = -1;
  }

 private:
  TransportSpec spec_;
  std::string name_;
  int cleanup_slot_ = -1;
};

}  // namespace

std::unique_ptr<Transport> MakeEshmTransport() { return std::make_unique<EshmTransport>(); }

std::unique_ptr<Endpoint> MakeEshmChannelEndpoint(std::unique_ptr<eshm::Channel> channel, const TransportSpec& spec,
                                                  Watchdog& watchdog) {
  auto endpoint = std::make_unique<EshmEndpoint>(std::move(channel), spec, watchdog,
                                                 std::vector<std::unique_ptr<eshm::Channel>>{}, nullptr);
  endpoint->DoNotCountFutexCalls();
  return endpoint;
}

}  // namespace eshm_bench
