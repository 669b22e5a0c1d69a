// Copy of tests/channel_test_util.h (its target is private to //tests).
// Helpers shared by the channel tests (tests/channel_*_test.cc): pipes and barriers between a parent and
// its forked children, child-side checks, sequence-numbered messages, polling with a deadline, and a
// fixture that names segments uniquely and removes them even when a test fails.
//
// Forking rule: a Channel with use_threads=true owns a monitor thread, and a child forked from a
// multi-threaded parent may only call async-signal-safe functions (ThreadSanitizer refuses to start
// threads in it at all). So every test forks all of its children first, while it has no Channel open,
// and gates the ones that must start later (a restarted master, a second slave) on a pipe. StartChild
// checks the rule.
#ifndef ESHM_TESTS_RELIABILITY_CHANNEL_TEST_UTIL_H_
#define ESHM_TESTS_RELIABILITY_CHANNEL_TEST_UTIL_H_

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/reliability/fork_util.h"

namespace eshm_test {

// ---------------------------------------------------------------------------------------------------------
// Scale

inline double ChannelStressScale() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  double scale = 0.05;  // sanitized code is 5-20x slower; the env var still wins
#else
  double scale = 1.0;
#endif
  if (const char* text = std::getenv("ESHM_STRESS_SCALE"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    if (end != text && *end == '\0' && value > 0 && std::isfinite(value)) scale = value;
  }
  return scale;
}

// `base` scaled by ESHM_STRESS_SCALE, never below `floor`.
inline int ScaledCount(int base, int floor) {
  const double scaled = std::round(base * ChannelStressScale());
  return std::max(floor, static_cast<int>(std::min(scaled, 1e6)));
}

inline bool UnderSanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

// ---------------------------------------------------------------------------------------------------------
// Bytes and messages

inline std::span<const std::byte> Bytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

inline std::string Text(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A message of a stream: who wrote it (an incarnation of a writer) and its sequence number there,
// followed by `size - 16` filler bytes derived from both.
struct SeqMessage {
  std::uint32_t incarnation = 0;
  std::uint64_t seq = 0;
};

inline constexpr std::size_t kSeqHeaderBytes = 16;

inline std::vector<std::byte> MakeSeqMessage(std::uint32_t incarnation, std::uint64_t seq, std::size_t size) {
  size = std::max(size, kSeqHeaderBytes);
  std::vector<std::byte> out(size);
  const std::uint32_t magic = 0x5345514du;  // "MQES"
  std::memcpy(out.data(), &incarnation, 4);
  std::memcpy(out.data() + 4, &magic, 4);
  std::memcpy(out.data() + 8, &seq, 8);
  for (std::size_t i = kSeqHeaderBytes; i < size; ++i) {
    out[i] = static_cast<std::byte>((seq * 131 + incarnation * 7 + i) & 0xff);
  }
  return out;
}

// Decodes and verifies a message made by MakeSeqMessage; nullopt if it is not one (or its filler is wrong).
inline std::optional<SeqMessage> ParseSeqMessage(std::span<const std::byte> bytes) {
  if (bytes.size() < kSeqHeaderBytes) return std::nullopt;
  SeqMessage m;
  std::uint32_t magic = 0;
  std::memcpy(&m.incarnation, bytes.data(), 4);
  std::memcpy(&magic, bytes.data() + 4, 4);
  std::memcpy(&m.seq, bytes.data() + 8, 8);
  if (magic != 0x5345514du) return std::nullopt;
  for (std::size_t i = kSeqHeaderBytes; i < bytes.size(); ++i) {
    if (bytes[i] != static_cast<std::byte>((m.seq * 131 + m.incarnation * 7 + i) & 0xff)) return std::nullopt;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Child-side checks: no gtest in a child, just stderr and an exit code.

#define ESHM_CHILD_CHECK(cond)                                                                      \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      std::fprintf(stderr, "[child pid %d] %s:%d: check failed: %s\n", static_cast<int>(getpid()), \
                   __FILE__, __LINE__, #cond);                                                      \
      return 1;                                                                                     \
    }                                                                                               \
  } while (false)

#define ESHM_CHILD_CHECK_OK(expr)                                                                       \
  do {                                                                                                  \
    const ::absl::Status eshm_child_status_ = ::eshm_test::internal::AsStatus(expr);                    \
    if (!eshm_child_status_.ok()) {                                                                     \
      std::fprintf(stderr, "[child pid %d] %s:%d: %s failed: %s\n", static_cast<int>(getpid()), __FILE__, \
                   __LINE__, #expr, eshm_child_status_.ToString().c_str());                             \
      return 1;                                                                                         \
    }                                                                                                   \
  } while (false)

namespace internal {
inline absl::Status AsStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace internal

// ---------------------------------------------------------------------------------------------------------
// Pipes

// A one-way pipe carrying 64-bit values, created before fork and used by both processes.
class Pipe {
 public:
  Pipe() {
    if (pipe2(fds_, O_CLOEXEC) != 0) fds_[0] = fds_[1] = -1;
  }
  ~Pipe() {
    CloseRead();
    CloseWrite();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  bool ok() const { return fds_[0] >= 0 || fds_[1] >= 0; }

  bool Send(std::uint64_t value) {
    const char* p = reinterpret_cast<const char*>(&value);
    std::size_t left = sizeof(value);
    while (left > 0) {
      const ssize_t n = write(fds_[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    return true;
  }

  // The next value, or nullopt on timeout, EOF, or (if `sender` is given) once the sender has exited.
  std::optional<std::uint64_t> Receive(absl::Duration timeout, Child* sender = nullptr) {
    const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(timeout);
    std::uint64_t value = 0;
    char* p = reinterpret_cast<char*>(&value);
    std::size_t got = 0;
    while (got < sizeof(value)) {
      pollfd pfd{fds_[0], POLLIN, 0};
      const int r = poll(&pfd, 1, 10);
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (r > 0) {
        const ssize_t n = read(fds_[0], p + got, sizeof(value) - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;  // EOF or error
        got += static_cast<std::size_t>(n);
        continue;
      }
      // Nothing yet: give up on timeout, or when the sender is gone and nothing more can come.
      if (sender != nullptr && sender->Poll()) {
        pollfd again{fds_[0], POLLIN, 0};
        if (poll(&again, 1, 0) <= 0) return std::nullopt;
        continue;
      }
      if (NowNs() >= give_up) return std::nullopt;
    }
    return value;
  }

  void CloseRead() {
    if (fds_[0] >= 0) close(fds_[0]);
    fds_[0] = -1;
  }
  void CloseWrite() {
    if (fds_[1] >= 0) close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
};

// Releases any number of waiting children at the same instant: each child closes its copy of the write
// end and blocks reading; the parent closes the last write end, and every reader sees EOF at once. Every
// process that inherits the barrier must either wait on it or exit, or EOF never comes: use it only among
// children forked for it (a Pipe carries values to children that start later).
class Barrier {
 public:
  // Child side. False if the barrier did not open within `timeout`.
  bool Wait(absl::Duration timeout) {
    pipe_.CloseWrite();
    const std::int64_t start = NowNs();
    (void)pipe_.Receive(timeout);  // nullopt at EOF (opened) or on timeout
    return NowNs() - start < absl::ToInt64Nanoseconds(timeout);
  }
  // Parent side.
  void Open() { pipe_.CloseWrite(); }

 private:
  Pipe pipe_;
};

// ---------------------------------------------------------------------------------------------------------
// Time

// Polls `pred` until it holds or `timeout` passes. True if it held.
template <typename Pred>
bool WaitUntil(Pred&& pred, absl::Duration timeout, absl::Duration poll = absl::Microseconds(200)) {
  const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(timeout);
  const std::int64_t poll_ns = absl::ToInt64Nanoseconds(poll);
  for (;;) {
    if (pred()) return true;
    if (NowNs() >= give_up) return false;
    if (poll_ns > 0) {
      timespec ts{static_cast<time_t>(poll_ns / 1'000'000'000), static_cast<long>(poll_ns % 1'000'000'000)};
      nanosleep(&ts, nullptr);
    }
  }
}

inline double MsSince(std::int64_t start_ns) { return static_cast<double>(NowNs() - start_ns) / 1e6; }

// ---------------------------------------------------------------------------------------------------------
// Process state

inline int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

inline bool SegmentFileExists(const std::string& name) {
  struct stat st;
  return stat(eshm::Segment::PathFor(name).c_str(), &st) == 0;
}

inline ino_t SegmentInode(const std::string& name) {
  struct stat st;
  if (stat(eshm::Segment::PathFor(name).c_str(), &st) != 0) return 0;
  return st.st_ino;
}

// ---------------------------------------------------------------------------------------------------------
// Fixture

class ChannelTestBase : public ::testing::Test {
 public:
  void SetUp() override {
    // The thread count of a process that has no Channel open (sanitizer runtimes may add their own).
    static const int baseline = ThreadCount();
    baseline_threads_ = baseline;
  }

  void TearDown() override {
    for (const std::string& name : names_) unlink(eshm::Segment::PathFor(name).c_str());
  }

  // A fresh segment name, removed in TearDown.
  std::string NewName(const std::string& tag = "") {
    names_.push_back(UniqueSegmentName(tag));
    return names_.back();
  }

  // Forks a child running `body`; the parent must have no Channel (no monitor thread) open.
  template <typename Body>
  Child StartChild(Body&& body) {
#if !defined(__SANITIZE_THREAD__)
    // (ThreadSanitizer starts a thread of its own at the first fork, and enforces the rule itself: a child
    // of a multi-threaded parent that starts a thread dies.)
    const int threads = ThreadCount();
    EXPECT_EQ(threads, baseline_threads_) << "forking from a multi-threaded parent: open Channels after forking";
#endif
    return Child::Start(std::forward<Body>(body));
  }

  static eshm::ChannelOptions Options(eshm::ChannelRole role) {
    eshm::ChannelOptions o;
    o.role = role;
    return o;
  }

  std::vector<std::string> names_;
  int baseline_threads_ = -1;
};

inline ::testing::AssertionResult PeerStateBecomes(const eshm::Channel& channel, eshm::PeerState want,
                                                   absl::Duration timeout) {
  if (WaitUntil([&] { return channel.peer_state() == want; }, timeout)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "peer state of '" << channel.name() << "' is "
                                       << eshm::PeerStateName(channel.peer_state()) << " after "
                                       << absl::FormatDuration(timeout) << ", expected "
                                       << eshm::PeerStateName(want);
}

}  // namespace eshm_test

#endif  // ESHM_TESTS_RELIABILITY_CHANNEL_TEST_UTIL_H_
