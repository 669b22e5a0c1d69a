// Byte-stream transports through the kernel: a pair of pipes, or an AF_UNIX stream socket pair. Messages
// are framed with an 8-byte length; the receiver buffers what one read() returns, so small streamed
// messages arrive many per system call, as any sensible framed reader does.
//
// spin: O_NONBLOCK descriptors, EAGAIN polled in a loop. blocking: blocking descriptors; sockets get
// SO_RCVTIMEO/SO_SNDTIMEO of 100 ms so the watchdog is consulted between slices; a pipe has no timeout
// option, so a blocked pipe call ends on the peer's death (EOF, EPIPE) or the alarm() backstop.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"

namespace eshm_bench {
namespace {

class FdEndpoint final : public PolledEndpoint {
 public:
  FdEndpoint(int in_fd, int out_fd, bool spin, const char* what, Watchdog& watchdog)
      : PolledEndpoint(what, spin, watchdog), in_(in_fd), out_(out_fd), buffer_(256 * 1024) {}

  absl::Status Send(std::span<const std::byte> message) override {
    std::uint64_t length = message.size();
    std::size_t done = 0;  // of the length and the message: a partial write can end anywhere
    return Move("writev", done, sizeof(length) + message.size(), [&] {
      iovec rest[2];
      int count = 0;
      if (done < sizeof(length)) rest[count++] = {reinterpret_cast<std::byte*>(&length) + done, sizeof(length) - done};
      const std::size_t from = done < sizeof(length) ? 0 : done - sizeof(length);
      rest[count++] = {const_cast<std::byte*>(message.data()) + from, message.size() - from};
      return writev(out_, rest, count);
    });
  }

  absl::Status Receive(std::span<std::byte> out, std::size_t* size) override {
    std::uint64_t length = 0;
    if (end_ - begin_ < sizeof(length)) {  // read the length, and as much more as the buffer takes
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      const absl::Status s = Move("read", end_, sizeof(length), [&] {
        return read(in_, buffer_.data() + end_, buffer_.size() - end_);
      });
      if (!s.ok()) return s;
    }
    std::memcpy(&length, buffer_.data() + begin_, sizeof(length));
    begin_ += sizeof(length);
    if (length > out.size()) {
      return absl::DataLossError(
          absl::StrCat(what_, ": a ", length, "-byte message for a ", out.size(), "-byte buffer"));
    }
    // What is buffered already, then the rest straight into the caller's buffer.
    std::size_t got = std::min<std::size_t>(length, end_ - begin_);
    std::memcpy(out.data(), buffer_.data() + begin_, got);
    begin_ += got;
    *size = length;
    return Move("read", got, length, [&] { return read(in_, out.data() + got, length - got); });
  }

 private:
  // Repeats `io` (`call` for what is left after `done` bytes) until `done` reaches `until`: at once after
  // progress or EINTR; on EAGAIN (spin: non-blocking descriptors; blocking: a socket's timeout) after the
  // watchdog's look.
  template <typename Io>
  absl::Status Move(const char* call, std::size_t& done, std::size_t until, Io&& io) {
    return Poll(spin_, call, [&]() -> Attempt {
      while (done < until) {
        const ssize_t n = io();
        if (n > 0) {
          done += static_cast<std::size_t>(n);
        } else if (n == 0) {
          return absl::UnavailableError(absl::StrCat(what_, ": the other process closed its end"));
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
          return std::nullopt;
        } else if (errno != EINTR) {
          return ErrnoError(absl::StrCat(what_, " ", call));
        }
      }
      return absl::OkStatus();
    });
  }

  const int in_;
  const int out_;
  std::vector<std::byte> buffer_;  // received bytes not yet returned are buffer_[begin_, end_)
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

class FdTransport final : public Transport {
 public:
  explicit FdTransport(bool socket) : socket_(socket) {}
  ~FdTransport() override { Cleanup(); }
  std::string name() const override { return socket_ ? "unix" : "pipe"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spin_ = spec.wait == Wait::kSpin;
    int a[2], b[2];
    if (!socket_) {
      const int flags = O_CLOEXEC | (spin_ ? O_NONBLOCK : 0);
      if (pipe2(a, flags) != 0) return ErrnoError("pipe2");
      fds_ = {-1, a[1], a[0], -1};  // a: parent -> child (Cleanup closes it if the second pipe fails)
      if (pipe2(b, flags) != 0) return ErrnoError("pipe2");
      fds_ = {b[0], a[1], a[0], b[1]};  // b: child -> parent
      return absl::OkStatus();
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (spin_ ? SOCK_NONBLOCK : 0), 0, a) != 0) {
      return ErrnoError("socketpair(AF_UNIX)");
    }
    fds_ = {a[0], a[0], a[1], a[1]};
    const timeval slice{0, kSliceMs * 1000};
    for (const int fd : a) {
      if (!spin_ && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice)) != 0 ||
                     setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof(slice)) != 0)) {
        return ErrnoError("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)");
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    // Close the other side's ends in this process, so the peer's death reads as EOF / EPIPE.
    const int in = fds_[parent ? 0 : 2];
    const int out = fds_[parent ? 1 : 3];
    for (const int fd : fds_) {
      if (fd != in && fd != out) Close(fd);
    }
    return std::make_unique<FdEndpoint>(in, out, spin_, socket_ ? "unix socket" : "pipe", watchdog);
  }

  void Cleanup() override {
    for (const int fd : fds_) Close(fd);
  }

 private:
  // Closes `fd` (if open) and forgets each copy of it in fds_.
  void Close(int fd) {
    if (fd >= 0) close(fd);
    std::replace(fds_.begin(), fds_.end(), fd, -1);
  }

  const bool socket_;
  bool spin_ = true;
  std::array<int, 4> fds_ = {-1, -1, -1, -1};  // the parent's in and out, the child's (a socket is both)
};

}  // namespace

std::unique_ptr<Transport> MakeFdTransport(bool socket) { return std::make_unique<FdTransport>(socket); }

}  // namespace eshm_bench
