// Crash suite: a long-lived survivor endpoint and a series of victim peers, each SIGKILLed at a random
// moment (during attach and role election, mid-stream, mid-claim, mid-read, during reconnection).
//
// Process structure (see channel_test_util.h for the forking rule): the test process never opens a Channel.
// It forks the survivor first, then the victims one after another, each after the previous one is reaped.
// Everything the processes tell each other goes through an anonymous shared mapping made before any fork.
//
// What is asserted, exactly:
//  * Survivor as reader: every message parses and its filler matches (a checksum of incarnation and seq);
//    incarnations never go backwards; within an incarnation seqs are 0, 1, 2, ... with no gap, duplicate
//    or reordering (victims publish with Publish::kNow, so every message a victim published is delivered,
//    and it never reads again after a writer crash); once a later incarnation shows up, the survivor has
//    seen every message the earlier victim recorded as published (and at most one more: the kill can land
//    between the publication and the record).
//  * Victims as readers of the survivor's stream: contiguous within the incarnation; the first message a
//    victim reads is at most one past what its predecessors read (no loss) and at most
//    RingConsumer::kMaxRedeliveredMessages before it (the documented at-least-once redelivery).
//  * The survivor keeps exchanging with every next victim by itself; the final victim and the survivor
//    exchange both ways and shut down cleanly; no process hangs (watchdogs); no segment file is left.
//
// ESHM_CRASH_KILLS (default 200, or max(20, 200 * ESHM_STRESS_SCALE)) sets the kills per run, split
// between the two phases (master victims, slave victims). ESHM_CRASH_SEED fixes the random choices.
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace {

using eshm::Channel;
using eshm::ChannelOptions;
using eshm::ChannelRole;
using eshm::Deadline;
using eshm::DisconnectBehavior;
using eshm_test::Child;
using eshm_test::MakeSeqMessage;
using eshm_test::NowNs;
using eshm_test::ParseSeqMessage;
using eshm_test::SleepMs;

constexpr int kMaxVictims = 8192;
constexpr std::uint32_t kSurvivorIncarnation = 0;  // victims are 1, 2, ...

// Payload sizes derived from (incarnation, seq): varied, and known to every reader, so redelivered bytes
// can be counted exactly.
std::size_t SurvivorSize(std::uint64_t seq) { return 16 + (seq * 37) % 240; }
std::size_t VictimSize(std::uint32_t inc, std::uint64_t seq) { return 16 + (seq * 53 + inc * 11) % 480; }

struct Shared {
  std::atomic<int> survivor_attached;
  std::atomic<int> stop;           // parent -> survivor: the final victim is running, finish with it
  std::atomic<int> final_done;     // final victim -> survivor: it has written and read enough
  std::atomic<int> survivor_done;  // survivor -> final victim: everything checked, close
  std::atomic<int> failed;
  std::atomic<std::uint64_t> survivor_read;
  std::atomic<std::uint64_t> survivor_written;
  std::atomic<std::uint64_t> survivor_incarnations_seen;
  std::atomic<std::uint64_t> redelivered_messages;
  std::atomic<std::uint64_t> redelivered_bytes_max;
  std::atomic<std::uint64_t> victims_reading;  // victims that read at least one message
  std::atomic<std::uint64_t> published[kMaxVictims];
  std::atomic<std::int64_t> read_high[kMaxVictims];  // highest survivor seq the victim read, -1 if none
  std::atomic<std::int64_t> read_first[kMaxVictims];
  // The highest survivor seq the victim may have consumed: stored before each Read, since a kill can land
  // after a Read consumed a message and before read_high records it (one message per victim, and a run of
  // victims each killed in their first Read adds up). -1 if it never read.
  std::atomic<std::int64_t> read_bound[kMaxVictims];
  std::atomic<std::uint64_t> seen[kMaxVictims];  // messages of this incarnation the survivor read
  std::atomic<int> opened[kMaxVictims];
  char error[1024];
};

Shared* g_shared = nullptr;

// Records the first failure (any process) and returns a nonzero exit code.
int Fail(const std::string& what) {
  int expected = 0;
  if (g_shared->failed.compare_exchange_strong(expected, 1)) {
    std::snprintf(g_shared->error, sizeof(g_shared->error), "[pid %d] %s", static_cast<int>(getpid()), what.c_str());
  }
  std::fprintf(stderr, "[crash_test pid %d] %s\n", static_cast<int>(getpid()), what.c_str());
  return 1;
}

int CrashKills() {
  int base = 200;
  if (const char* text = std::getenv("ESHM_CRASH_KILLS"); text != nullptr && *text != '\0') {
    base = std::max(2, std::atoi(text));
    return std::min(base, kMaxVictims - 16);
  }
  return std::min(eshm_test::ScaledCount(base, 20), kMaxVictims - 16);
}

std::uint64_t Seed() {
  if (const char* text = std::getenv("ESHM_CRASH_SEED"); text != nullptr && *text != '\0') {
    return std::strtoull(text, nullptr, 10);
  }
  return static_cast<std::uint64_t>(NowNs()) ^ static_cast<std::uint64_t>(getpid());
}

ChannelOptions Opts(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.disconnect_behavior = DisconnectBehavior::kNever;
  o.reconnect_retry_interval_ms = 10;
  o.max_reconnect_attempts = 0;
  // Small rings: backpressure and wrap-around happen often.
  o.m2s_capacity = 64 * 1024;
  o.s2m_capacity = 64 * 1024;
  // A starved sanitizer build may miss heartbeats; liveness by the role lock is what matters here.
  o.stale_threshold_ms = eshm_test::UnderSanitizer() ? 2000 : 500;
  return o;
}

// Bytes of records of the survivor's stream in [from, to].
std::uint64_t SurvivorBytes(std::int64_t from, std::int64_t to) {
  std::uint64_t bytes = 0;
  for (std::int64_t s = std::max<std::int64_t>(from, 0); s <= to; ++s) {
    bytes += eshm::RecordBytes(SurvivorSize(static_cast<std::uint64_t>(s)));
  }
  return bytes;
}

// ---- Victim ----

enum VictimMode { kWriter = 0, kClaimer = 1, kReader = 2, kBoth = 3, kModes = 4 };
const char* ModeName(int mode) {
  switch (mode) {
    case kWriter: return "writer";
    case kClaimer: return "claimer";
    case kReader: return "reader";
    default: return "both";
  }
}

// Reads the survivor's stream and checks it against what earlier victims read.
int VictimRead(Channel& ch, std::uint32_t inc, const std::atomic<bool>& stop_reading, std::uint64_t want_final) {
  std::vector<std::byte> buffer(4096);
  std::int64_t prev_high = -1;   // recorded as read by a predecessor
  std::int64_t prev_bound = -1;  // possibly consumed by a predecessor
  for (std::uint32_t j = 1; j < inc; ++j) {
    prev_high = std::max(prev_high, g_shared->read_high[j].load());
    prev_bound = std::max(prev_bound, g_shared->read_bound[j].load());
  }
  std::int64_t next = -1;
  // Our first Read may consume at most the message after everything a predecessor may have consumed.
  g_shared->read_bound[inc].store(prev_bound + 1);
  std::uint64_t count = 0;
  while (!stop_reading.load(std::memory_order_relaxed)) {
    absl::StatusOr<std::size_t> n = ch.Read(buffer, Deadline::AfterMs(50));
    if (!n.ok()) {
      if (absl::IsDeadlineExceeded(n.status()) || absl::IsUnavailable(n.status())) continue;
      return Fail(absl::StrCat("victim ", inc, " read: ", n.status().ToString()));
    }
    auto m = ParseSeqMessage(std::span<const std::byte>(buffer.data(), *n));
    if (!m || m->incarnation != kSurvivorIncarnation || *n != SurvivorSize(m->seq)) {
      return Fail(absl::StrCat("victim ", inc, ": corrupt message of ", *n, " bytes from the survivor"));
    }
    const std::int64_t seq = static_cast<std::int64_t>(m->seq);
    if (next < 0) {
      // First message of this incarnation: nothing past what the predecessors may have consumed.
      if (seq > prev_bound + 1) {
        return Fail(absl::StrCat("victim ", inc, ": survivor messages lost: first read ", seq,
                                 " after predecessors consumed at most up to ", prev_bound, " (recorded up to ",
                                 prev_high, ")"));
      }
      if (seq <= prev_high) {
        const std::uint64_t bytes = SurvivorBytes(seq, prev_high);
        if (static_cast<std::uint64_t>(prev_high - seq + 1) > eshm::RingConsumer::kMaxRedeliveredMessages) {
          return Fail(absl::StrCat("victim ", inc, ": redelivered ", bytes, " bytes (seq ", seq, "..", prev_high,
                                   "), more than the at-least-once window"));
        }
        g_shared->redelivered_messages.fetch_add(static_cast<std::uint64_t>(prev_high - seq + 1));
        std::uint64_t old = g_shared->redelivered_bytes_max.load();
        while (bytes > old && !g_shared->redelivered_bytes_max.compare_exchange_weak(old, bytes)) {
        }
      }
      g_shared->read_first[inc].store(seq);
      g_shared->victims_reading.fetch_add(1);
    } else if (seq != next) {
      return Fail(absl::StrCat("victim ", inc, ": survivor stream out of order: got ", seq, ", expected ", next));
    }
    next = seq + 1;
    g_shared->read_high[inc].store(seq);
    g_shared->read_bound[inc].store(seq + 1);  // what the next Read may consume
    ++count;
    if (want_final != 0 && count >= want_final) break;
  }
  return 0;
}

int VictimWrite(Channel& ch, std::uint32_t inc, int mode, std::uint64_t limit) {
  for (std::uint64_t seq = 0; limit == 0 || seq < limit; ++seq) {
    const std::vector<std::byte> msg = MakeSeqMessage(inc, seq, VictimSize(inc, seq));
    if (mode == kClaimer) {
      std::byte* p = nullptr;
      while ((p = ch.TryClaim(msg.size())) == nullptr) SleepMs(1);
      // Fill it in two halves with a pause, so a kill can land with a half-written claim.
      std::memcpy(p, msg.data(), msg.size() / 2);
      if (seq % 4 == 0) sched_yield();
      std::memcpy(p + msg.size() / 2, msg.data() + msg.size() / 2, msg.size() - msg.size() / 2);
      ch.Commit(msg.size(), eshm::Publish::kNow);
    } else {
      for (;;) {
        const absl::Status s = ch.Write(msg, Deadline::AfterMs(50));
        if (s.ok()) break;
        if (absl::IsDeadlineExceeded(s) || absl::IsUnavailable(s)) continue;
        return Fail(absl::StrCat("victim ", inc, " write: ", s.ToString()));
      }
    }
    g_shared->published[inc].store(seq + 1);
  }
  return 0;
}

int RunVictim(const std::string& name, ChannelRole role, std::uint32_t inc, int mode, bool final) {
  auto opened = Channel::Open(name, Opts(role));
  if (!opened.ok()) return Fail(absl::StrCat("victim ", inc, " (", ModeName(mode), ") open: ", opened.status().ToString()));
  g_shared->opened[inc].store(1);
  Channel& ch = **opened;
  if (!final) {
    std::atomic<bool> never{false};
    if (mode == kReader) return VictimRead(ch, inc, never, 0);
    if (mode != kBoth) return VictimWrite(ch, inc, mode, 0);
    std::atomic<int> read_code{0};
    std::thread reader([&] { read_code = VictimRead(ch, inc, never, 0); });
    const int code = VictimWrite(ch, inc, kWriter, 0);
    reader.join();  // only if the writer failed: the reader runs until the kill
    return code != 0 ? code : read_code.load();
  }
  // The final victim: write a known count, read some of the survivor's stream, then close cleanly.
  std::atomic<bool> never{false};
  int read_code = 0;
  std::thread reader([&] { read_code = VictimRead(ch, inc, never, 100); });
  const int write_code = VictimWrite(ch, inc, kWriter, 300);
  reader.join();
  if (write_code != 0 || read_code != 0) return 1;
  g_shared->final_done.store(1);
  const std::int64_t give_up = NowNs() + 120'000'000'000;
  while (g_shared->survivor_done.load() == 0) {
    if (g_shared->failed.load() != 0) return 1;
    if (NowNs() > give_up) return Fail("final victim: the survivor never finished");
    SleepMs(2);
  }
  ch.Close();
  return 0;
}

// ---- Survivor ----

int RunSurvivor(const std::string& name, ChannelRole role) {
  auto opened = Channel::Open(name, Opts(role));
  if (!opened.ok()) return Fail(absl::StrCat("survivor open: ", opened.status().ToString()));
  Channel& ch = **opened;
  g_shared->survivor_attached.store(1);

  std::atomic<bool> stop_writing{false};
  std::atomic<int> write_code{0};
  std::thread writer([&] {
    for (std::uint64_t seq = 0; !stop_writing.load();) {
      const std::vector<std::byte> msg = MakeSeqMessage(kSurvivorIncarnation, seq, SurvivorSize(seq));
      const absl::Status s = ch.Write(msg, Deadline::AfterMs(20));
      if (s.ok()) {
        ++seq;
        g_shared->survivor_written.store(seq);
      } else if (!absl::IsDeadlineExceeded(s) && !absl::IsUnavailable(s)) {
        write_code = Fail(absl::StrCat("survivor write: ", s.ToString()));
        return;
      }
    }
  });

  auto finish = [&](int code) {
    stop_writing = true;
    writer.join();
    return code != 0 ? code : write_code.load();
  };

  std::vector<std::byte> buffer(4096);
  std::uint32_t cur = 0;  // incarnation being read; 0 = none yet
  std::uint64_t next = 0;
  std::uint32_t final_inc = 0;
  for (;;) {
    if (g_shared->failed.load() != 0) return finish(1);
    if (g_shared->stop.load() != 0) {
      final_inc = static_cast<std::uint32_t>(g_shared->stop.load());
      if (g_shared->final_done.load() != 0 && cur == final_inc &&
          g_shared->seen[final_inc].load() == g_shared->published[final_inc].load()) {
        break;
      }
    }
    absl::StatusOr<std::size_t> n = ch.Read(buffer, Deadline::AfterMs(20));
    if (!n.ok()) {
      if (absl::IsDeadlineExceeded(n.status()) || absl::IsUnavailable(n.status())) continue;
      return finish(Fail(absl::StrCat("survivor read: ", n.status().ToString())));
    }
    auto m = ParseSeqMessage(std::span<const std::byte>(buffer.data(), *n));
    if (!m || m->incarnation == kSurvivorIncarnation || m->incarnation >= kMaxVictims ||
        *n != VictimSize(m->incarnation, m->seq)) {
      return finish(Fail(absl::StrCat("survivor: corrupt or partial message of ", *n, " bytes",
                                      m ? absl::StrCat(" (incarnation ", m->incarnation, " seq ", m->seq, ")") : "")));
    }
    if (m->incarnation < cur) {
      return finish(Fail(absl::StrCat("survivor: message of incarnation ", m->incarnation, " after incarnation ", cur)));
    }
    if (m->incarnation > cur) {
      // Every earlier victim is dead (reaped before the next was forked): all it published must be here.
      for (std::uint32_t k = std::max<std::uint32_t>(cur, 1); k < m->incarnation; ++k) {
        const std::uint64_t published = g_shared->published[k].load();
        const std::uint64_t seen = g_shared->seen[k].load();
        if (seen < published || seen > published + 1) {
          return finish(Fail(absl::StrCat("survivor: victim ", k, " published ", published, " messages, survivor read ",
                                          seen)));
        }
      }
      if (m->seq != 0) {
        return finish(Fail(absl::StrCat("survivor: incarnation ", m->incarnation, " starts at seq ", m->seq)));
      }
      cur = m->incarnation;
      next = 0;
      g_shared->survivor_incarnations_seen.fetch_add(1);
    }
    if (m->seq != next) {
      return finish(Fail(absl::StrCat("survivor: incarnation ", cur, ": got seq ", m->seq, ", expected ", next)));
    }
    ++next;
    g_shared->seen[cur].store(next);
    g_shared->survivor_read.fetch_add(1);
  }
  // Everything checked for earlier victims too (those that wrote nothing after the last one seen).
  for (std::uint32_t k = 1; k < final_inc; ++k) {
    const std::uint64_t published = g_shared->published[k].load();
    const std::uint64_t seen = g_shared->seen[k].load();
    if (seen < published || seen > published + 1) {
      return finish(Fail(absl::StrCat("survivor: victim ", k, " published ", published, " messages, survivor read ", seen)));
    }
  }
  const int code = finish(0);
  g_shared->survivor_done.store(1);
  if (code != 0) return code;
  // The slave closes first only after the final victim (master) had its turn? Order does not matter for
  // cleanup: the master removes the name when it closes.
  ch.Close();
  return 0;
}

// ---- The test ----

class CrashTest : public eshm_test::ChannelTestBase {
 protected:
  void SetUp() override {
    ChannelTestBase::SetUp();
    void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    g_shared = new (p) Shared();
    for (auto& h : g_shared->read_high) h.store(-1);
    for (auto& h : g_shared->read_first) h.store(-1);
    for (auto& h : g_shared->read_bound) h.store(-1);
  }
  void TearDown() override {
    if (g_shared != nullptr) munmap(g_shared, sizeof(Shared));
    g_shared = nullptr;
    ChannelTestBase::TearDown();
  }

  // One phase: the survivor holds `survivor_role`, victims take the other role.
  void RunPhase(ChannelRole survivor_role, int kills) {
    const ChannelRole victim_role = survivor_role == ChannelRole::kMaster ? ChannelRole::kSlave : ChannelRole::kMaster;
    const std::string name = NewName();
    const std::uint64_t seed = Seed();
    std::mt19937_64 rng(seed);
    std::printf("[crash] phase: survivor %s, %d kills, ESHM_CRASH_SEED=%llu\n",
                survivor_role == ChannelRole::kMaster ? "master" : "slave", kills,
                static_cast<unsigned long long>(seed));
    const absl::Duration watchdog = absl::Seconds(eshm_test::UnderSanitizer() ? 600 : 180);
    const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(watchdog);
    const std::int64_t start = NowNs();

    Child survivor = StartChild([&] { return RunSurvivor(name, survivor_role); });
    int mode_counts[kModes] = {0, 0, 0, 0};
    int killed_after_open = 0;
    int exited_before_kill = 0;
    std::uint32_t inc = 1;
    for (; inc <= static_cast<std::uint32_t>(kills); ++inc) {
      ASSERT_FALSE(survivor.Poll()) << "survivor ended early: " << survivor.Describe() << ": " << g_shared->error;
      ASSERT_EQ(g_shared->failed.load(), 0) << g_shared->error;
      ASSERT_LT(NowNs(), give_up) << "watchdog: phase still running after " << absl::FormatDuration(watchdog);
      const int mode = static_cast<int>(rng() % kModes);
      ++mode_counts[mode];
      // Uniform over 0-20 ms, with a third of the kills in the first millisecond (attach and role election).
      const int delay_us = static_cast<int>(rng() % 3 == 0 ? rng() % 1'000 : rng() % 20'000);
      Child victim = StartChild([&] { return RunVictim(name, victim_role, inc, mode, false); });
      // Until the survivor is attached (the first master creates the segment), let the victim live.
      if (!eshm_test::WaitUntil([&] { return g_shared->survivor_attached.load() != 0 || victim.Poll(); },
                                absl::Seconds(60))) {
        FAIL() << "survivor never attached";
      }
      timespec ts{0, delay_us * 1000L};
      nanosleep(&ts, nullptr);
      if (victim.Poll()) {
        ++exited_before_kill;
        ASSERT_TRUE(false) << "victim " << inc << " (" << ModeName(mode) << ") ended before the kill: " << victim.Describe()
                           << ": " << g_shared->error;
      }
      if (g_shared->opened[inc].load() != 0) ++killed_after_open;
      victim.Kill();  // SIGKILL and reap: its role lock is free before the next victim starts
    }
    // The final victim: lives until it has exchanged with the survivor both ways, then both close.
    g_shared->stop.store(static_cast<int>(inc));
    Child final_victim = StartChild([&] { return RunVictim(name, victim_role, inc, kBoth, true); });
    const std::int64_t left = std::max<std::int64_t>(give_up - NowNs(), 1'000'000'000);
    EXPECT_TRUE(eshm_test::WaitForChildren({&survivor, &final_victim}, absl::Nanoseconds(left)))
        << g_shared->error;
    EXPECT_EQ(g_shared->failed.load(), 0) << g_shared->error;
    EXPECT_GT(g_shared->seen[inc].load(), 0u) << "the survivor never read from the final victim";
    EXPECT_GE(g_shared->read_high[inc].load(), 0) << "the final victim never read from the survivor";
    EXPECT_FALSE(eshm_test::SegmentFileExists(name)) << "segment file left after clean shutdown: "
                                                      << eshm::Segment::PathFor(name);
    std::printf(
        "[crash] %d kills in %.0f ms (%d after the victim opened its channel; writer %d, claimer %d, reader %d, both %d); "
        "survivor read %llu messages from %llu incarnations and wrote %llu; %llu victims read its stream, %llu "
        "messages redelivered (largest window %llu bytes)\n",
        kills, eshm_test::MsSince(start), killed_after_open, mode_counts[0], mode_counts[1], mode_counts[2],
        mode_counts[3], static_cast<unsigned long long>(g_shared->survivor_read.load()),
        static_cast<unsigned long long>(g_shared->survivor_incarnations_seen.load()),
        static_cast<unsigned long long>(g_shared->survivor_written.load()),
        static_cast<unsigned long long>(g_shared->victims_reading.load()),
        static_cast<unsigned long long>(g_shared->redelivered_messages.load()),
        static_cast<unsigned long long>(g_shared->redelivered_bytes_max.load()));
    (void)exited_before_kill;
  }
};

TEST_F(CrashTest, MasterVictimsKilledAtRandomTheSlaveSurvivorResumes) {
  RunPhase(ChannelRole::kSlave, (CrashKills() + 1) / 2);
}

TEST_F(CrashTest, SlaveVictimsKilledAtRandomTheMasterSurvivorAcceptsTheNext) {
  RunPhase(ChannelRole::kMaster, CrashKills() / 2);
}

}  // namespace
