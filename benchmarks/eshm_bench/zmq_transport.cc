// Plain ZeroMQ between the two processes, for comparison with eshm-bridge: one PAIR socket each over
// tcp://127.0.0.1:<a free port> (the parent binds, the child connects), one ZeroMQ message per message.
// spin: ZMQ_DONTWAIT; blocking: 100 ms ZMQ_SNDTIMEO/ZMQ_RCVTIMEO slices. Each process makes its own context
// after the fork.
#include <zmq.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"

namespace eshm_bench {
namespace {

absl::Status ZmqError(const std::string& call) {
  return absl::InternalError(absl::StrCat("zmq ", call, ": ", zmq_strerror(zmq_errno())));
}

class ZmqEndpoint final : public PolledEndpoint {
 public:
  ZmqEndpoint(void* context, void* socket, bool spin, Watchdog& watchdog)
      : PolledEndpoint("zmq", spin, watchdog), context_(context), socket_(socket) {}
  ~ZmqEndpoint() override {
    zmq_close(socket_);
    zmq_ctx_term(context_);
  }

  absl::Status Send(std::span<const std::byte> message) override {
    return Poll(spin_, "send", [&] {
      return Done(zmq_send(socket_, message.data(), message.size(), spin_ ? ZMQ_DONTWAIT : 0), "send");
    });
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    int n = 0;
    const absl::Status status = Poll(spin_, "recv", [&] {
      n = zmq_recv(socket_, buffer.data(), buffer.size(), spin_ ? ZMQ_DONTWAIT : 0);
      return Done(n, "recv");
    });
    if (!status.ok()) return status;
    // zmq_recv truncates and returns the message's real size: a larger one is an error, not data.
    if (static_cast<std::size_t>(n) > buffer.size()) {
      return absl::DataLossError(absl::StrCat("zmq: a ", n, "-byte message for a ", buffer.size(), "-byte buffer"));
    }
    *size = static_cast<std::size_t>(n);
    return absl::OkStatus();
  }

 private:
  // Again on EINTR and EAGAIN (nothing yet, or a slice ended).
  static Attempt Done(int result, const char* call) {
    if (result >= 0) return absl::OkStatus();
    if (zmq_errno() == EINTR || zmq_errno() == EAGAIN) return std::nullopt;
    return ZmqError(call);
  }

  void* context_;
  void* socket_;
};

class ZmqTransport final : public Transport {
 public:
  std::string name() const override { return "zmq"; }
  void Cleanup() override {}  // each process's endpoint closes its socket and context

  absl::Status Prepare(const TransportSpec& spec) override {
    spin_ = spec.wait == Wait::kSpin;
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    address_ = absl::StrCat("tcp://127.0.0.1:", *port);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    void* context = zmq_ctx_new();
    if (context == nullptr) return ZmqError("ctx_new");
    void* socket = zmq_socket(context, ZMQ_PAIR);
    const absl::Status made = socket != nullptr ? absl::OkStatus() : ZmqError("socket");
    auto endpoint = std::make_unique<ZmqEndpoint>(context, socket, spin_, watchdog);  // an error below closes both
    if (!made.ok()) return made;
    // A pingpong's last echo may still be queued when the child closes its socket: linger long enough for
    // it to leave (zmq_ctx_term waits that long at most; 0 would drop it and fail the parent's last receive).
    const auto set = [socket](int option, int value) { return zmq_setsockopt(socket, option, &value, sizeof(value)); };
    if (set(ZMQ_LINGER, 5000) != 0) return ZmqError(absl::StrCat("setsockopt(ZMQ_LINGER) ", address_));
    if (!spin_ && (set(ZMQ_SNDTIMEO, kSliceMs) != 0 || set(ZMQ_RCVTIMEO, kSliceMs) != 0)) {
      return ZmqError(absl::StrCat("setsockopt(timeouts) ", address_));
    }
    // The parent binds (the port was free in Prepare); the child connects, and ZeroMQ retries until the
    // parent listens. Messages wait in ZeroMQ's queues meanwhile.
    if ((parent ? zmq_bind(socket, address_.c_str()) : zmq_connect(socket, address_.c_str())) != 0) {
      return ZmqError(absl::StrCat(parent ? "bind " : "connect ", address_));
    }
    return endpoint;
  }

 private:
  bool spin_ = true;
  std::string address_;
};

}  // namespace

std::unique_ptr<Transport> MakeZmqTransport() { return std::make_unique<ZmqTransport>(); }

}  // namespace eshm_bench
