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
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/transport.h"

namespace eshm_bench {
namespace {

constexpr std::size_t kReceiveBufferBytes = 256 * 1024;

absl::Status ErrnoError(const std::string& call) {
  return absl::InternalError(absl::StrCat(call, ": ", std::strerror(errno)));
}

class FdEndpoint final : public Endpoint {
 public:
  FdEndpoint(int in_fd, int out_fd, bool spin, std::string what, Watchdog& watchdog)
      : in_(in_fd), out_(out_fd), spin_(spin), what_(std::move(what)), watchdog_(watchdog),
        buffer_(kReceiveBufferBytes) {}

  absl::Status Send(std::span<const std::byte> message) override {
    const std::uint64_t length = message.size();
    iovec parts[2] = {{const_cast<std::uint64_t*>(&length), sizeof(length)},
                      {const_cast<std::byte*>(message.data()), message.size()}};
    std::size_t done = 0;
    const std::size_t total = sizeof(length) + message.size();
    while (done < total) {
      // Skip what was written already (a partial write can end anywhere).
      iovec rest[2];
      int count = 0;
      std::size_t skip = done;
      for (const iovec& part : parts) {
        if (skip >= part.iov_len) {
          skip -= part.iov_len;
          continue;
        }
        rest[count++] = {static_cast<char*>(part.iov_base) + skip, part.iov_len - skip};
        skip = 0;
      }
      const ssize_t n = writev(out_, rest, count);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (spin_ ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) return watchdog_.Error(what_ + " write");
        continue;
      }
      return ErrnoError(what_ + " writev");
    }
    return absl::OkStatus();
  }

  absl::Status Receive(std::span<std::byte> out, std::size_t* size) override {
    std::uint64_t length = 0;
    if (absl::Status s = Fill(sizeof(length)); !s.ok()) return s;
    std::memcpy(&length, buffer_.data() + begin_, sizeof(length));
    begin_ += sizeof(length);
    if (length > out.size()) {
      return absl::DataLossError(absl::StrCat(what_, ": a ", length, "-byte message for a ", out.size(), "-byte buffer"));
    }
    // What is buffered already, then the rest straight into the caller's buffer.
    const std::size_t buffered = std::min<std::size_t>(length, end_ - begin_);
    std::memcpy(out.data(), buffer_.data() + begin_, buffered);
    begin_ += buffered;
    std::size_t got = buffered;
    while (got < length) {
      absl::StatusOr<std::size_t> n = ReadSome(out.data() + got, length - got);
      if (!n.ok()) return n.status();
      got += *n;
    }
    *size = length;
    return absl::OkStatus();
  }

 private:
  // Makes at least `want` bytes available at buffer_[begin_].
  absl::Status Fill(std::size_t want) {
    if (end_ - begin_ >= want) return absl::OkStatus();
    if (begin_ > 0) {
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    while (end_ < want) {
      absl::StatusOr<std::size_t> n = ReadSome(buffer_.data() + end_, buffer_.size() - end_);
      if (!n.ok()) return n.status();
      end_ += *n;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::size_t> ReadSome(std::byte* into, std::size_t max) {
    for (;;) {
      const ssize_t n = read(in_, into, max);
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) return absl::UnavailableError(absl::StrCat(what_, ": the other process closed its end"));
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return ErrnoError(what_ + " read");
      if (spin_ ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) return watchdog_.Error(what_ + " read");
    }
  }

  const int in_;
  const int out_;
  const bool spin_;
  const std::string what_;
  Watchdog& watchdog_;
  std::vector<std::byte> buffer_;
  std::size_t begin_ = 0;  // unread bytes are buffer_[begin_, end_)
  std::size_t end_ = 0;
};

absl::Status Configure(int fd, const TransportSpec& spec, bool socket) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoError("fcntl(F_GETFL)");
  const int wanted = spec.wait == Wait::kSpin ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, wanted) != 0) return ErrnoError("fcntl(F_SETFL)");
  if (socket && spec.wait == Wait::kBlocking) {
    const timeval slice{0, 100'000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof(slice)) != 0) {
      return ErrnoError("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)");
    }
  }
  return absl::OkStatus();
}

void CloseAll(std::vector<int>& fds) {
  for (int& fd : fds) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

// Two pipes: parent -> child and child -> parent.
class PipeTransport final : public Transport {
 public:
  ~PipeTransport() override { CloseAll(fds_); }
  std::string name() const override { return "pipe"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0) return ErrnoError("pipe2");
    if (pipe2(up, O_CLOEXEC) != 0) {
      close(down[0]);
      close(down[1]);
      return ErrnoError("pipe2");
    }
    fds_ = {down[0], down[1], up[0], up[1]};  // down: parent writes [1], child reads [0]
    for (const int fd : fds_) {
      if (absl::Status s = Configure(fd, spec, /*socket=*/false); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl& /*control*/, Watchdog& watchdog) override {
    // Close the other side's ends in this process, so the peer's death reads as EOF / EPIPE.
    const int in = parent ? fds_[2] : fds_[0];
    const int out = parent ? fds_[1] : fds_[3];
    for (int& fd : fds_) {
      if (fd != in && fd != out) {
        close(fd);
        fd = -1;
      }
    }
    return std::unique_ptr<Endpoint>(new FdEndpoint(in, out, spec_.wait == Wait::kSpin, "pipe", watchdog));
  }

  void Cleanup() override { CloseAll(fds_); }

 private:
  TransportSpec spec_;
  std::vector<int> fds_;
};

class UnixSocketTransport final : public Transport {
 public:
  ~UnixSocketTransport() override { CloseAll(fds_); }
  std::string name() const override { return "unix"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return ErrnoError("socketpair(AF_UNIX)");
    fds_ = {pair[0], pair[1]};
    for (const int fd : fds_) {
      if (absl::Status s = Configure(fd, spec, /*socket=*/true); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl& /*control*/, Watchdog& watchdog) override {
    const int mine = parent ? fds_[0] : fds_[1];
    int& theirs = parent ? fds_[1] : fds_[0];
    close(theirs);
    theirs = -1;
    return std::unique_ptr<Endpoint>(new FdEndpoint(mine, mine, spec_.wait == Wait::kSpin, "unix socket", watchdog));
  }

  void Cleanup() override { CloseAll(fds_); }

 private:
  TransportSpec spec_;
  std::vector<int> fds_;
};

}  // namespace

std::unique_ptr<Transport> MakePipeTransport() { return std::make_unique<PipeTransport>(); }
std::unique_ptr<Transport> MakeUnixSocketTransport() { return std::make_unique<UnixSocketTransport>(); }

}  // namespace eshm_bench
