#include "benchmarks/eshm_bench/runner.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/eshm_bench/timing.h"

namespace eshm_bench {
namespace {

void Put(std::span<std::byte> message, std::size_t offset, std::uint64_t value) {
  std::memcpy(message.data() + offset, &value, sizeof(value));
}
std::uint64_t Get(std::span<const std::byte> message, std::size_t offset) {
  std::uint64_t value;
  std::memcpy(&value, message.data() + offset, sizeof(value));
  return value;
}

absl::Status Mismatch(const char* what, std::uint64_t index, std::size_t size, std::size_t expected_size) {
  return absl::DataLossError(absl::StrFormat("%s: message %d arrived with %d bytes (expected %d) or a wrong sequence",
                                             what, index, size, expected_size));
}

// Pingpong: the sequence at the start and at the end of the message.
void StampPing(std::span<std::byte> message, std::uint64_t sequence) {
  Put(message, 0, sequence);
  if (message.size() >= 16) Put(message, message.size() - 8, sequence);
}
bool CheckPing(std::span<const std::byte> message, std::size_t size, std::size_t expected, std::uint64_t sequence) {
  return size == expected && Get(message, 0) == sequence && (size < 16 || Get(message, size - 8) == sequence);
}

// Stream: the send time first (0 when the message is not timestamped), then the sequence (twice) when there
// is room. Zero-copy streams (`whole` false) touch only the first two words, in place.
void StampStream(std::span<std::byte> message, std::uint64_t sequence, std::uint64_t ticks, bool whole) {
  Put(message, 0, ticks);
  if (message.size() >= 16) Put(message, 8, sequence);
  if (whole && message.size() >= 24) Put(message, message.size() - 8, sequence);
}
bool CheckStream(std::span<const std::byte> message, std::size_t size, std::size_t expected, std::uint64_t sequence,
                 bool whole) {
  return size == expected && (size < 16 || Get(message, 8) == sequence) &&
         (!whole || size < 24 || Get(message, size - 8) == sequence);
}

absl::StatusOr<std::unique_ptr<Endpoint>> OpenAndSignal(Transport& transport, bool parent, RunControl& control,
                                                        Watchdog& watchdog) {
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint = transport.Open(parent, control, watchdog);
  if (!endpoint.ok()) return endpoint.status();
  if (!parent) {
    // release: pairs with the parent's acquire load; the child's end is open.
    control.child_ready.value.store(1, std::memory_order_release);
  } else if (!watchdog.SleepUntil([&] { return control.child_ready.value.load(std::memory_order_acquire) != 0; })) {
    return watchdog.Error("waiting for the child's end");
  }
  return endpoint;
}

void FinishChild(RunControl& control) {
  // release: pairs with the parent's acquire load in FinishParent; the child's report is complete.
  control.child_done.value.store(1, std::memory_order_release);
}

// Has the sender said that `received` messages are all there is? acquire: pairs with the sender's release
// store of `total`, made before it sent the last message, so it is visible once that message arrived.
bool IsLast(const RunControl& control, std::uint64_t received) {
  return control.total.value.load(std::memory_order_acquire) == received;
}

struct Timed {
  Histogram* latency = nullptr;  // the parent's (pingpong)
  std::uint64_t messages = 0;
  std::uint64_t start_ticks = 0;
  std::uint64_t end_ticks = 0;
  std::uint64_t sent = 0;                   // messages (pingpong: round trips) of the whole run, warm-up too
  std::optional<std::uint64_t> futex_calls;  // of the whole run, where the transport counts them
};

// The parent waits for the child's report before closing its end (a stream's receiver may still be
// draining what the sender queued); then the transport's futex calls over the whole run.
absl::Status FinishParent(Endpoint& endpoint, RunControl& control, Watchdog& watchdog, std::uint64_t sent,
                          Timed& timed) {
  // acquire: pairs with the child's release store in FinishChild.
  if (!watchdog.SleepUntil([&] { return control.child_done.value.load(std::memory_order_acquire) != 0; })) {
    return watchdog.Error("waiting for the child to finish");
  }
  timed.sent = sent;
  timed.futex_calls = endpoint.FutexCalls();
  return absl::OkStatus();
}

absl::Status PingPongParent(Transport& transport, const RunSpec& spec, RunControl& control, Watchdog& watchdog,
                            Timed& timed) {
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint = OpenAndSignal(transport, true, control, watchdog);
  if (!endpoint.ok()) return endpoint.status();
  std::vector<std::byte> message(spec.size, std::byte{0x5a});
  std::vector<std::byte> reply(spec.size);
  LoadPlan plan(spec.load);
  std::uint64_t last = Clock::Ticks();
  plan.Start(last);
  const std::uint64_t deadline = watchdog.DeadlineTicks();
  std::uint64_t i = 0;
  for (;; ++i) {
    if (last >= deadline && watchdog.ExpiredNow()) return watchdog.Error("the run");
    const LoadPlan::Step step = plan.Next(last);
    if (step != LoadPlan::Step::kWarmup && timed.start_ticks == 0) timed.start_ticks = last;
    // release: pairs with IsLast in the child; stored before the last ping is sent.
    if (step == LoadPlan::Step::kLast) control.total.value.store(i + 1, std::memory_order_release);
    StampPing(message, i);
    if (absl::Status s = (*endpoint)->Send(message); !s.ok()) return s;
    std::size_t size = 0;
    if (absl::Status s = (*endpoint)->Receive(reply, &size); !s.ok()) return s;
    const std::uint64_t now = Clock::Ticks();  // one timestamp per round trip: it ends this one, starts the next
    if (step != LoadPlan::Step::kWarmup) timed.latency->Record(static_cast<std::uint64_t>(Clock::ToNs(now - last)));
    last = now;
    if (!CheckPing(reply, size, spec.size, i)) return Mismatch("pingpong reply", i, size, spec.size);
    if (step == LoadPlan::Step::kLast) break;
  }
  timed.end_ticks = last;
  timed.messages = plan.timed();
  return FinishParent(**endpoint, control, watchdog, i + 1, timed);
}

absl::Status PingPongChild(Transport& transport, const RunSpec& spec, RunControl& control, Watchdog& watchdog) {
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint = OpenAndSignal(transport, false, control, watchdog);
  if (!endpoint.ok()) return endpoint.status();
  std::vector<std::byte> buffer(spec.size);
  for (std::uint64_t i = 0;; ++i) {
    std::size_t size = 0;
    if (absl::Status s = (*endpoint)->Receive(buffer, &size); !s.ok()) return s;
    if (!CheckPing(buffer, size, spec.size, i)) return Mismatch("pingpong echo", i, size, spec.size);
    if (absl::Status s = (*endpoint)->Send(std::span<const std::byte>(buffer.data(), size)); !s.ok()) return s;
    if (IsLast(control, i + 1)) break;
  }
  if (absl::Status s = (*endpoint)->Flush(); !s.ok()) return s;
  FinishChild(control);
  return absl::OkStatus();
}

absl::Status StreamParent(Transport& transport, const RunSpec& spec, RunControl& control, Watchdog& watchdog,
                          Timed& timed) {
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint = OpenAndSignal(transport, true, control, watchdog);
  if (!endpoint.ok()) return endpoint.status();
  std::vector<std::byte> message(spec.size, std::byte{0x5a});
  const std::uint64_t every = static_cast<std::uint64_t>(TimestampEvery(spec));
  LoadPlan plan(spec.load);
  std::uint64_t now = Clock::Ticks();
  plan.Start(now);
  const std::uint64_t deadline = watchdog.DeadlineTicks();
  bool timing = false;
  std::uint64_t i = 0;
  for (;; ++i) {
    // Between samples the plan sees the last clock reading: a run may end up to `every` messages late.
    const bool periodic = i % every == 0;
    if (periodic) {
      now = Clock::Ticks();
      if (now >= deadline && watchdog.ExpiredNow()) return watchdog.Error("the run");
    }
    const LoadPlan::Step step = plan.Next(now);
    const bool first = step != LoadPlan::Step::kWarmup && !timing;
    if (first) {
      timing = true;
      // release: pairs with the child's acquire load; stored before message i is sent.
      control.first_timed.value.store(i, std::memory_order_release);
    }
    // release: pairs with IsLast in the child; stored before the last message is sent.
    if (step == LoadPlan::Step::kLast) control.total.value.store(i + 1, std::memory_order_release);
    // The first and the last timed messages always carry a timestamp: they bound the throughput.
    const bool stamp = periodic || first || step == LoadPlan::Step::kLast;
    if (stamp && !periodic) now = Clock::Ticks();
    const std::uint64_t ticks = stamp ? now : 0;
    if (spec.transport.zero_copy) {
      const absl::Status s = (*endpoint)->SendInPlace(
          spec.size, [&](std::span<std::byte> in_place) { StampStream(in_place, i, ticks, false); });
      if (!s.ok()) return s;
    } else {
      StampStream(message, i, ticks, true);
      if (absl::Status s = (*endpoint)->Send(message); !s.ok()) return s;
    }
    if (step == LoadPlan::Step::kLast) break;
  }
  if (absl::Status s = (*endpoint)->Flush(); !s.ok()) return s;
  return FinishParent(**endpoint, control, watchdog, i + 1, timed);
}

absl::Status StreamChild(Transport& transport, const RunSpec& spec, RunControl& control, Watchdog& watchdog) {
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint = OpenAndSignal(transport, false, control, watchdog);
  if (!endpoint.ok()) return endpoint.status();
  std::vector<std::byte> buffer(spec.size);
  // Recorded locally and copied into the shared report once, at the end.
  auto latency = std::make_unique<Histogram>();
  // Throughput runs from the first timestamped timed message to the receipt of the last one.
  std::uint64_t messages = 0, counted = 0, first_ticks = 0, last_ticks = 0;
  for (std::uint64_t i = 0;; ++i) {
    std::size_t size = 0;
    std::uint64_t sent = 0;  // 0: not timestamped (see TimestampEvery)
    if (spec.transport.zero_copy) {
      const absl::Status s = (*endpoint)->ReceiveInPlace([&](std::span<const std::byte> in_place) {
        size = in_place.size();
        if (!CheckStream(in_place, size, spec.size, i, false)) return Mismatch("zero-copy stream", i, size, spec.size);
        sent = Get(in_place, 0);
        return absl::OkStatus();
      });
      if (!s.ok()) return s;
    } else {
      if (absl::Status s = (*endpoint)->Receive(buffer, &size); !s.ok()) return s;
      if (!CheckStream(buffer, size, spec.size, i, true)) return Mismatch("stream", i, size, spec.size);
      sent = Get(buffer, 0);
    }
    const bool sampled = sent != 0;
    const std::uint64_t now = sampled ? Clock::Ticks() : 0;
    // acquire: pairs with the parent's release store, made before message first_timed was sent.
    if (i >= control.first_timed.value.load(std::memory_order_acquire)) {
      ++messages;
      if (sampled) {
        if (first_ticks == 0) first_ticks = sent;
        latency->Record(now > sent ? static_cast<std::uint64_t>(Clock::ToNs(now - sent)) : 0);
      }
      if (first_ticks != 0) ++counted;
    }
    if (IsLast(control, i + 1)) {
      last_ticks = sampled ? now : Clock::Ticks();
      break;
    }
  }
  control.report.latency = *latency;
  control.report.messages = messages;
  control.report.counted = counted;
  control.report.first_ticks = first_ticks;
  control.report.last_ticks = last_ticks;
  FinishChild(control);
  return absl::OkStatus();
}

}  // namespace

int TimestampEvery(const RunSpec& spec) {
  if (spec.timestamp_every > 0) return spec.timestamp_every;
  return spec.size >= 1024 ? 1 : 16;
}

absl::StatusOr<Result> RunOnce(Transport& transport, const RunSpec& spec, const PairConfig& pair) {
  if (spec.size < 8) return absl::InvalidArgumentError("messages carry at least 8 bytes (a sequence or a timestamp)");
  if (spec.transport.zero_copy && (spec.mode != Mode::kStream || !transport.zero_copy())) {
    return absl::UnimplementedError(absl::StrCat(transport.name(), " has no zero-copy stream"));
  }
  RunSpec effective = spec;
  effective.transport.max_message_bytes = spec.size;
  if (absl::Status s = transport.Prepare(effective.transport); !s.ok()) {
    transport.Cleanup();
    return s;
  }
  auto parent_latency = std::make_unique<Histogram>();
  Timed timed;
  timed.latency = parent_latency.get();
  auto report = std::make_unique<ChildReport>();
  const bool pingpong = spec.mode == Mode::kPingPong;
  const SideFn parent = [&](RunControl& control, Watchdog& watchdog) {
    return pingpong ? PingPongParent(transport, effective, control, watchdog, timed)
                    : StreamParent(transport, effective, control, watchdog, timed);
  };
  const SideFn child = [&](RunControl& control, Watchdog& watchdog) {
    return pingpong ? PingPongChild(transport, effective, control, watchdog)
                    : StreamChild(transport, effective, control, watchdog);
  };
  const CpuMeter meter;
  const absl::Status status = RunPair(pair, parent, child, report.get());
  const double others_cores = meter.OthersCores();
  transport.Cleanup();
  if (!status.ok()) return status;

  const std::uint64_t start = pingpong ? timed.start_ticks : report->first_ticks;
  const std::uint64_t end = pingpong ? timed.end_ticks : report->last_ticks;
  Result r = MakeResult(transport.name(), spec.mode, spec.transport.wait, spec.size,
                        pingpong ? timed.messages : report->messages, pingpong ? timed.messages : report->counted,
                        end > start ? Clock::ToNs(end - start) / 1e9 : 0,
                        pingpong ? *parent_latency : report->latency, others_cores);
  if (timed.futex_calls.has_value() && timed.sent > 0) {
    r.futex_calls_per_message = static_cast<double>(*timed.futex_calls) / static_cast<double>(timed.sent);
  }
  return r;
}

}  // namespace eshm_bench
