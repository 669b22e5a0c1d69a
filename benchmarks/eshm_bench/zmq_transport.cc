// Plain ZeroMQ between the two processes, for comparison with eshm-bridge: one PAIR socket each over
// tcp://127.0.0.1:<a free port> (the parent binds, the child connects), one ZeroMQ message per message.
// spin: zmq_send/zmq_recv with ZMQ_DONTWAIT polled in a loop; blocking: plain calls with 100 ms
// ZMQ_SNDTIMEO/ZMQ_RCVTIMEO slices, so the watchdog is consulted between slices. Each process makes its
// own context after the fork.
#include <zmq.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"

namespace eshm_bench {
namespace {

constexpr int kSliceMs = 100;

absl::Status ZmqError(const std::string& call) {
  return absl::InternalError(absl::StrCat("zmq ", call, ": ", zmq_strerror(zmq_errno())));
}

class ZmqEndpoint final : public Endpoint {
 public:
  ZmqEndpoint(void* context, void* socket, bool spin, Watchdog& watchdog)
      : context_(context), socket_(socket), spin_(spin), watchdog_(watchdog) {}
  ~ZmqEndpoint() override {
    zmq_close(socket_);
    zmq_ctx_term(context_);
  }

  absl::Status Send(std::span<const std::byte> message) override {
    for (;;) {
      if (zmq_send(socket_, message.data(), message.size(), spin_ ? ZMQ_DONTWAIT : 0) >= 0) return absl::OkStatus();
      if (zmq_errno() == EINTR) continue;
      if (zmq_errno() != EAGAIN) return ZmqError("send");
      if (spin_ ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) return watchdog_.Error("zmq send");
    }
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    for (;;) {
      const int n = zmq_recv(socket_, buffer.data(), buffer.size(), spin_ ? ZMQ_DONTWAIT : 0);
      if (n >= 0) {
        // zmq_recv truncates and returns the message's real size: a larger one is an error, not data.
        if (static_cast<std::size_t>(n) > buffer.size()) {
          return absl::DataLossError(absl::StrCat("zmq: a ", n, "-byte message for a ", buffer.size(), "-byte buffer"));
        }
        *size = static_cast<std::size_t>(n);
        return absl::OkStatus();
      }
      if (zmq_errno() == EINTR) continue;
      if (zmq_errno() != EAGAIN) return ZmqError("recv");
      if (spin_ ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) return watchdog_.Error("zmq recv");
    }
  }

 private:
  void* context_;
  void* socket_;
  const bool spin_;
  Watchdog& watchdog_;
};

class ZmqTransport final : public Transport {
 public:
  std::string name() const override { return "zmq"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    endpoint_ = absl::StrCat("tcp://127.0.0.1:", *port);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    void* context = zmq_ctx_new();
    if (context == nullptr) return ZmqError("ctx_new");
    void* socket = zmq_socket(context, ZMQ_PAIR);
    if (socket == nullptr) {
      zmq_ctx_term(context);
      return ZmqError("socket");
    }
    auto fail = [&](const std::string& call) {
      absl::Status status = ZmqError(absl::StrCat(call, " ", endpoint_));
      zmq_close(socket);
      zmq_ctx_term(context);
      return status;
    };
    // A pingpong's last echo may still be queued when the child closes its socket: linger long enough for
    // it to leave (zmq_ctx_term waits that long at most; 0 would drop it and fail the parent's last receive).
    const int linger = 5000;
    const int slice = kSliceMs;
    if (zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof(linger)) != 0) return fail("setsockopt(ZMQ_LINGER)");
    if (spec_.wait == Wait::kBlocking && (zmq_setsockopt(socket, ZMQ_SNDTIMEO, &slice, sizeof(slice)) != 0 ||
                                          zmq_setsockopt(socket, ZMQ_RCVTIMEO, &slice, sizeof(slice)) != 0)) {
      return fail("setsockopt(timeouts)");
    }
    // The parent binds (the port was free in Prepare); the child connects, and ZeroMQ retries until the
    // parent listens. Messages wait in ZeroMQ's queues meanwhile.
    if ((parent ? zmq_bind(socket, endpoint_.c_str()) : zmq_connect(socket, endpoint_.c_str())) != 0) {
      return fail(parent ? "bind" : "connect");
    }
    return std::unique_ptr<Endpoint>(new ZmqEndpoint(context, socket, spec_.wait == Wait::kSpin, watchdog));
  }

  void Cleanup() override {}

 private:
  TransportSpec spec_;
  std::string endpoint_;
};

}  // namespace

std::unique_ptr<Transport> MakeZmqTransport() { return std::make_unique<ZmqTransport>(); }

}  // namespace eshm_bench
