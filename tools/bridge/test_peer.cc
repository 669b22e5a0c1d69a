// bridge_test_peer: one application of the bridge tests. It opens NAME in --role, writes --count messages
// and reads --count messages concurrently, and checks every message it reads: its sequence number is the
// next one (or, at most --max_duplicates times, the one just received again: the bridge's at-least-once
// window, docs/bridge.md), its length and CRC-32C match, and its bytes are the ones the sequence number
// generates. Prints "progress received=K" every 1000 messages, and at the end
// "done sent=N received=N duplicates=D"; exits 1 with the reason on any violation or at --timeout_s.
// With --report_peer_state it prints "peer_state=STATE reconnects=N" whenever its channel's peer_state()
// changes (through a bridge: the far application's liveness); --linger_s keeps the channel open that long
// after "done" (SIGTERM ends it sooner). --read_pause_after/--read_pause_ms make a slow far reader, and
// --write_timeout_ms shows the writer being pushed back: "write_timeouts=K" is printed before "done".
//
// --progress_file=PATH makes the application restartable after a kill -9, as an application that must not
// lose its place would be: the reader peeks each message, checks it, stores its sequence number in PATH,
// and only then releases it; the writer stores the next sequence number after each write returned. A
// restarted peer with the same file resumes both streams where they were. What a kill can repeat, each
// right after its original (counted as duplicates, never a gap): the message the reader held (stored but
// not released: the ring delivers it again, channel.h), and the message the writer had written but not yet
// recorded (it writes it again). --crash_after_record and --crash_after_write make the process kill itself
// at exactly those two points, so that a test can check that each repeats one message.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "tools/bridge/crc32c.h"

ABSL_FLAG(std::string, role, "master", "master or slave");
ABSL_FLAG(std::uint64_t, count, 10000, "messages to send, and to receive");
ABSL_FLAG(int, interval_us, 0, "pause between two writes (spreads the traffic over time)");
ABSL_FLAG(std::uint64_t, max_duplicates, 0, "duplicates tolerated (each right after its original)");
ABSL_FLAG(int, timeout_s, 60, "give up after this long");
ABSL_FLAG(std::uint64_t, ring_bytes, 1 << 16, "ring size of each direction (master: creates the channel)");
ABSL_FLAG(bool, report_peer_state, false, "print each change of the channel's peer_state()");
ABSL_FLAG(int, linger_s, 0, "stay open this long after the traffic (SIGTERM ends it sooner)");
ABSL_FLAG(int, write_timeout_ms, 0,
          "give each write this long (0: until --timeout_s); a write that times out is counted and the same "
          "message written again, so the stream stays whole");
ABSL_FLAG(std::uint64_t, read_pause_after, 0, "stop reading after this many messages (0: never) ...");
ABSL_FLAG(int, read_pause_ms, 0, "... for this long, printing \"read_paused\" and \"read_resumed\"");
ABSL_FLAG(std::string, progress_file, "",
          "keep both streams' positions in this file and resume from it (a restart after kill -9)");
ABSL_FLAG(std::uint64_t, crash_after_record, 0,
          "tests: SIGKILL this process once message N is recorded as received and not yet released");
ABSL_FLAG(std::uint64_t, crash_after_write, 0,
          "tests: SIGKILL this process once message N is written and not yet recorded as written");

namespace {

volatile sig_atomic_t g_terminated = 0;
void OnTerm(int) { g_terminated = 1; }

// Message layout: seq u64, length u32 (whole message), crc u32 (of the bytes after the header), body.
constexpr std::size_t kHeaderBytes = 16;

std::size_t LengthOf(std::uint64_t seq) { return kHeaderBytes + (seq * 2654435761u) % 1000; }

void FillBody(std::uint64_t seq, std::span<std::byte> body) {
  std::uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
  for (std::byte& b : body) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
}

std::vector<std::byte> MakeMessage(std::uint64_t seq) {
  std::vector<std::byte> message(LengthOf(seq));
  const std::uint32_t length = static_cast<std::uint32_t>(message.size());
  FillBody(seq, std::span<std::byte>(message).subspan(kHeaderBytes));
  const std::uint32_t crc = eshm::bridge::Crc32c(std::span<const std::byte>(message).subspan(kHeaderBytes));
  std::memcpy(message.data(), &seq, 8);
  std::memcpy(message.data() + 8, &length, 4);
  std::memcpy(message.data() + 12, &crc, 4);
  return message;
}

// Empty if `message` is message `seq` exactly; otherwise what is wrong.
std::string Check(std::span<const std::byte> message, std::uint64_t* seq) {
  if (message.size() < kHeaderBytes) return absl::StrCat("a message of ", message.size(), " bytes");
  std::uint32_t length, crc;
  std::memcpy(seq, message.data(), 8);
  std::memcpy(&length, message.data() + 8, 4);
  std::memcpy(&crc, message.data() + 12, 4);
  if (length != message.size()) return absl::StrCat("message ", *seq, " says ", length, " bytes, has ", message.size());
  if (eshm::bridge::Crc32c(message.subspan(kHeaderBytes)) != crc) return absl::StrCat("message ", *seq, " fails its CRC");
  if (*seq == 0 || LengthOf(*seq) != length) return absl::StrCat("message ", *seq, " has the wrong length");
  std::vector<std::byte> expected(length - kHeaderBytes);
  FillBody(*seq, expected);
  if (!expected.empty() && std::memcmp(expected.data(), message.data() + kHeaderBytes, expected.size()) != 0) {
    return absl::StrCat("message ", *seq, " has the wrong bytes");
  }
  return "";
}

// Where a peer is in its two streams, in a small file mapped shared: the kernel keeps its page when the
// process is killed, so the next peer with the file reads what this one stored last. Each word has one
// writer thread; an aligned 8-byte store cannot be torn by a kill. Relaxed: no other thread reads the
// words while this process runs, and a successor reads them after this process is gone.
class Progress {
 public:
  // Opens (creating: all zero) the file; a peer without --progress_file keeps its progress in memory.
  bool Open(const std::string& path) {
    if (path.empty()) {
      words_ = local_;
      return true;
    }
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, sizeof local_) != 0) return false;
    void* mapped = mmap(nullptr, sizeof local_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (mapped == MAP_FAILED) return false;
    words_ = static_cast<std::uint64_t*>(mapped);
    return true;
  }
  std::uint64_t received() const { return Load(0); }  // the last message the reader took
  std::uint64_t duplicates() const { return Load(1); }
  std::uint64_t next_to_write() const { return std::max<std::uint64_t>(1, Load(2)); }
  void set_received(std::uint64_t seq) { Store(0, seq); }
  void set_duplicates(std::uint64_t n) { Store(1, n); }
  void set_next_to_write(std::uint64_t seq) { Store(2, seq); }

 private:
  std::uint64_t Load(int i) const { return std::atomic_ref<std::uint64_t>(words_[i]).load(std::memory_order_relaxed); }
  void Store(int i, std::uint64_t v) { std::atomic_ref<std::uint64_t>(words_[i]).store(v, std::memory_order_relaxed); }

  alignas(8) std::uint64_t local_[3] = {0, 0, 0};
  std::uint64_t* words_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    fprintf(stderr, "usage: bridge_test_peer NAME --role=master|slave [--count=N]\n");
    return 2;
  }
  const std::string name = args[1];
  const std::uint64_t count = absl::GetFlag(FLAGS_count);
  eshm::ChannelOptions options;
  options.role = absl::GetFlag(FLAGS_role) == "slave" ? eshm::ChannelRole::kSlave : eshm::ChannelRole::kMaster;
  options.disconnect_behavior = eshm::DisconnectBehavior::kNever;  // wait out a bridge's restart
  options.max_reconnect_attempts = 0;
  options.auto_cleanup = false;  // messages still queued at exit are the bridge's to take; the test removes the name
  options.m2s_capacity = absl::GetFlag(FLAGS_ring_bytes);
  options.s2m_capacity = absl::GetFlag(FLAGS_ring_bytes);
  const eshm::Deadline deadline = eshm::Deadline::After(absl::Seconds(absl::GetFlag(FLAGS_timeout_s)));
  absl::StatusOr<std::unique_ptr<eshm::Channel>> opened = eshm::Channel::Open(name, options);
  if (!opened.ok()) {
    fprintf(stderr, "open %s: %s\n", name.c_str(), opened.status().ToString().c_str());
    return 1;
  }
  eshm::Channel& channel = **opened;
  signal(SIGTERM, OnTerm);
  Progress progress;
  if (!progress.Open(absl::GetFlag(FLAGS_progress_file))) {
    fprintf(stderr, "cannot open the progress file %s: %s\n", absl::GetFlag(FLAGS_progress_file).c_str(), strerror(errno));
    return 1;
  }
  if (!absl::GetFlag(FLAGS_progress_file).empty()) {
    printf("resuming received=%llu duplicates=%llu next_to_write=%llu\n",
           static_cast<unsigned long long>(progress.received()), static_cast<unsigned long long>(progress.duplicates()),
           static_cast<unsigned long long>(progress.next_to_write()));
    fflush(stdout);
  }

  std::atomic<bool> finished{false};
  std::thread reporter;
  if (absl::GetFlag(FLAGS_report_peer_state)) {
    reporter = std::thread([&] {
      int last = -1;
      // relaxed: the flag only ends the loop.
      while (!finished.load(std::memory_order_relaxed)) {
        const eshm::PeerState state = channel.peer_state();
        if (static_cast<int>(state) != last) {
          last = static_cast<int>(state);
          printf("peer_state=%s reconnects=%llu\n", eshm::PeerStateName(state),
                 static_cast<unsigned long long>(channel.stats().reconnect_count));
          fflush(stdout);
        }
        usleep(1000);
      }
    });
  }

  std::atomic<bool> writer_failed{false};
  std::uint64_t write_timeouts = 0;  // the writer's; read after join
  std::thread writer([&] {
    const int interval_us = absl::GetFlag(FLAGS_interval_us);
    const int write_timeout_ms = absl::GetFlag(FLAGS_write_timeout_ms);
    for (std::uint64_t seq = progress.next_to_write(); seq <= count; ++seq) {
      const std::vector<std::byte> message = MakeMessage(seq);
      absl::Status written;
      while (true) {
        const eshm::Deadline attempt =
            write_timeout_ms > 0 ? deadline.CappedAfterNs(std::int64_t{write_timeout_ms} * 1000000) : deadline;
        written = channel.Write(message, attempt);
        if (!(absl::IsDeadlineExceeded(written) && write_timeout_ms > 0 && !deadline.Expired())) break;
        ++write_timeouts;
      }
      if (!written.ok()) {
        fprintf(stderr, "FAIL: write %llu: %s\n", static_cast<unsigned long long>(seq), written.ToString().c_str());
        writer_failed.store(true, std::memory_order_relaxed);  // relaxed: read after join
        return;
      }
      // Written (published): a restart goes on with the next. A kill before this store writes it again.
      if (seq == absl::GetFlag(FLAGS_crash_after_write)) raise(SIGKILL);
      progress.set_next_to_write(seq + 1);
      if (interval_us > 0) usleep(static_cast<useconds_t>(interval_us));
    }
  });

  std::uint64_t last = progress.received();
  std::uint64_t duplicates = progress.duplicates();
  int exit_code = 0;
  const std::uint64_t read_pause_after = absl::GetFlag(FLAGS_read_pause_after);
  while (last < count) {
    if (read_pause_after > 0 && last == read_pause_after) {
      printf("read_paused received=%llu\n", static_cast<unsigned long long>(last));
      fflush(stdout);
      usleep(static_cast<useconds_t>(absl::GetFlag(FLAGS_read_pause_ms)) * 1000);
      printf("read_resumed\n");
      fflush(stdout);
    }
    // Peek, check, record, release: a kill before the record leaves the message to be read again as new;
    // a kill after it and before the release makes it arrive again as a duplicate right after itself.
    absl::StatusOr<std::span<const std::byte>> peeked = channel.Peek(deadline);
    if (!peeked.ok()) {
      fprintf(stderr, "FAIL: read after message %llu: %s\n", static_cast<unsigned long long>(last),
              peeked.status().ToString().c_str());
      exit_code = 1;
      break;
    }
    std::uint64_t seq = 0;
    const std::string wrong = Check(*peeked, &seq);
    if (!wrong.empty()) {
      fprintf(stderr, "FAIL: %s\n", wrong.c_str());
      exit_code = 1;
      break;
    }
    bool duplicate = false;
    if (seq == last && duplicates < absl::GetFlag(FLAGS_max_duplicates)) {
      duplicate = true;
    } else if (seq != last + 1) {
      fprintf(stderr, "FAIL: message %llu after message %llu (%llu duplicates so far)\n",
              static_cast<unsigned long long>(seq), static_cast<unsigned long long>(last),
              static_cast<unsigned long long>(duplicates));
      exit_code = 1;
      break;
    }
    if (duplicate) {
      progress.set_duplicates(++duplicates);
    } else {
      last = seq;
      progress.set_received(last);
      if (last == absl::GetFlag(FLAGS_crash_after_record)) raise(SIGKILL);  // before the Release below
    }
    // The view was in shared memory: what Check saw counts only if the segment was intact meanwhile.
    const eshm::IoResult released = channel.Release();
    if (released != eshm::IoResult::kOk) {
      fprintf(stderr, "FAIL: release of message %llu: %s\n", static_cast<unsigned long long>(seq),
              channel.StatusOf(released).ToString().c_str());
      exit_code = 1;
      break;
    }
    if (!duplicate && last % 1000 == 0) {
      printf("progress received=%llu\n", static_cast<unsigned long long>(last));
      fflush(stdout);
    }
  }
  if (exit_code != 0) channel.Shutdown();  // ends the writer's wait
  writer.join();
  if (writer_failed.load(std::memory_order_relaxed)) exit_code = 1;
  if (absl::GetFlag(FLAGS_write_timeout_ms) > 0) {
    printf("write_timeouts=%llu\n", static_cast<unsigned long long>(write_timeouts));
  }
  printf("done sent=%llu received=%llu duplicates=%llu\n", static_cast<unsigned long long>(count),
         static_cast<unsigned long long>(last), static_cast<unsigned long long>(duplicates));
  fflush(stdout);
  const timespec linger_start = [] { timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts; }();
  while (exit_code == 0 && !g_terminated) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - linger_start.tv_sec >= absl::GetFlag(FLAGS_linger_s)) break;
    usleep(10'000);
  }
  finished.store(true, std::memory_order_relaxed);
  if (reporter.joinable()) reporter.join();
  return exit_code;
}
