// A transport: how the two processes of a run exchange length-delimited messages (eshm's Channel, and the
// others it is compared with: Transport::name). One that cannot run a combination (the minimal ring cannot
// block) says so with Unimplemented from Prepare, and that combination is skipped. In one run: Prepare() in
// the parent before the fork (names, fds, queues), Open() in each process after it, Cleanup() in the parent
// after the child is reaped (and after errors). Every wait inside an Endpoint is bounded by the Watchdog
// given to Open.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_TRANSPORT_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"

namespace eshm_bench {

// spin: non-blocking calls polled in a loop (one core busy per waiting side); blocking: the transport's
// own sleeping wait (eshm: WaitStrategy::Sleep(), a futex at once; fds: blocking read/write).
enum class Wait { kSpin, kBlocking };
const char* WaitName(Wait wait);

struct TransportSpec {
  std::size_t max_message_bytes = 0;
  Wait wait = Wait::kSpin;
  bool eshm_deferred = false;  // eshm streams publish with Publish::kDeferred (and Flush at the end)
  bool eshm_adaptive = false;  // eshm blocking waits spin, yield, then sleep (WaitStrategy::Adaptive())
  bool zero_copy = false;      // streams send and receive in place (Endpoint::SendInPlace, ReceiveInPlace)
  int eshm_waitset = 0;        // eshm: receive through a WaitSet of this many channels (0: directly)
};

// One process's end: sends to and receives from the other process.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // Sends the whole message, waiting (per the spec's Wait) while the transport is full.
  virtual absl::Status Send(std::span<const std::byte> message) = 0;
  // Receives the next whole message into `buffer`, waiting while none is there.
  virtual absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) = 0;
  // Makes everything sent visible to the receiver (eshm with deferred publication).
  virtual absl::Status Flush() { return absl::OkStatus(); }
  // Zero-copy streams (--zero_copy): `fill` writes the message of `size` bytes in the transport's own memory,
  // which is then sent; `use` looks at the next message where it lies, which is then released. Only
  // transports whose zero_copy() is true implement them.
  virtual absl::Status SendInPlace(std::size_t /*size*/, absl::FunctionRef<void(std::span<std::byte>)> /*fill*/) {
    return absl::UnimplementedError("this transport cannot send in place");
  }
  virtual absl::Status ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)> /*use*/) {
    return absl::UnimplementedError("this transport cannot receive in place");
  }
  // Futex system calls (waits and wakes) both processes have made on this connection so far, where the
  // transport counts them in shared memory (eshm); nullopt otherwise.
  virtual std::optional<std::uint64_t> FutexCalls() const { return std::nullopt; }
};

class Transport {
 public:
  virtual ~Transport() = default;
  // The name used in flags, tables and JSON: eshm; eshm_ring, minimal_ring (ring_transports.cc); pipe, unix
  // (fd_transport.cc); across hosts over loopback, bridge (eshm-bridge) and zmq (ZeroMQ).
  virtual std::string name() const = 0;
  virtual absl::Status Prepare(const TransportSpec& spec) = 0;
  // Whether its endpoints can send and receive in place (claim/commit, peek/release).
  virtual bool zero_copy() const { return false; }
  // `parent` says which end. May wait (bounded by `watchdog`) for the other end to get ready first.
  virtual absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl& control, Watchdog& watchdog) = 0;
  virtual void Cleanup() = 0;
};

// The endpoints' wait loops. A try returns the call's status once it is done (or failed); nullopt: try again.
using Attempt = std::optional<absl::Status>;

// A blocking try waits up to a slice; the watchdog is consulted between slices.
inline constexpr std::int64_t kSliceMs = 100;
inline eshm::Deadline Slice() { return eshm::Deadline::TimeoutMs(kSliceMs); }

inline Attempt DoneIf(bool ok) { return ok ? Attempt(absl::OkStatus()) : std::nullopt; }
// A call that waits up to a slice: again if the slice ran out, else its status (and its value into `*out`).
inline Attempt Sliced(absl::Status status) {
  if (status.code() == absl::StatusCode::kDeadlineExceeded) return std::nullopt;
  return status;
}
template <typename T, typename Out>
Attempt Sliced(absl::StatusOr<T> result, Out* out) {
  if (!result.ok()) return Sliced(result.status());
  *out = *std::move(result);
  return absl::OkStatus();
}
// A wait before the next try (a ring's WaitForSpace/WaitForData, WaitSet::Wait): its error, else again.
inline Attempt Waited(absl::Status status) {
  if (status.ok() || status.code() == absl::StatusCode::kDeadlineExceeded) return std::nullopt;
  return status;
}

class PolledEndpoint : public Endpoint {
 protected:
  // `what` names the transport in errors; `spin`: the spec's Wait is kSpin.
  PolledEndpoint(const char* what, bool spin, Watchdog& watchdog) : what_(what), spin_(spin), watchdog_(watchdog) {}

  // Repeats `attempt` until it returns a status. Between tries a spin loop steps the watchdog (SpinExpired
  // looks at the clock every 1024 steps); a blocking loop, whose tries sleep up to a slice each, reads the
  // clock (ExpiredNow). A template, so each measured call inlines its loop. `call` names it in the error.
  template <typename AttemptFn>
  absl::Status Poll(bool spin, const char* call, AttemptFn&& attempt) {
    for (;;) {
      if (Attempt done = attempt()) return *std::move(done);
      if (spin ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) {
        return watchdog_.Error(absl::StrCat(what_, " ", call));
      }
    }
  }

  const char* const what_;
  const bool spin_;
  Watchdog& watchdog_;
};

// The ring size every ring transport uses each way: at least 1 MiB, and at least four of the largest
// message (a ring holds messages of up to half its capacity).
std::uint64_t RingBytesFor(const TransportSpec& spec);

// The Channel options of an eshm endpoint of a run (eshm, bridge): the child is the master (a master in
// the parent would have its monitor re-create a name the signal handler just removed), rings of
// RingBytesFor, the spec's wait, and a stale threshold a stalled VM does not trip.
eshm::ChannelOptions EshmChannelOptions(const TransportSpec& spec, bool parent);

// Transports by name; an error names the unknown or unavailable one.
absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const std::string& name);
// The network comparison --compare=net stands for (not part of all: it needs the bridge binary and TCP).
std::vector<std::string> NetworkTransportNames();

// An Endpoint on an open channel, as the eshm transport's (no WaitSet; its futex calls not counted, since
// they are one channel's of several). For transports built on channels.
std::unique_ptr<Endpoint> MakeEshmChannelEndpoint(std::unique_ptr<eshm::Channel> channel, const TransportSpec& spec,
                                                  Watchdog& watchdog);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released): for a listener that
// another process starts.
absl::StatusOr<int> FreeLoopbackPort();

// A name no other run (of this or a concurrent process) uses, and nobody can guess:
// "eshmbench_<pid>_<random, 8 hex digits>_<counter>".
std::string UniqueName();

// InternalError "`call`: strerror(errno)", for a failed system call.
absl::Status ErrnoError(const std::string& call);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_TRANSPORT_H_
