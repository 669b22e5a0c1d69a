// Soak: bidirectional traffic between a long-lived survivor and a peer that is restarted over and over
// (alternately closed cleanly and SIGKILLed), for ESHM_SOAK_SECONDS (default 20 s, or max(5, 20 *
// ESHM_STRESS_SCALE) without the variable). The survivor's resident memory (VmRSS) and open descriptor
// count (/proc/self/fd) must stay bounded across restarts: what the first quarter of the run reached, plus
// a slack, is not exceeded in the last quarter. Every message is checksummed, and each peer incarnation's
// stream arrives in increasing order.
//
// Two runs share the time: survivor slave with restarted masters (a cleanly closed master removes the
// segment and the next creates a new one, so the slave follows it to a new mapping: the path most likely
// to leak), and survivor master with restarted slaves.
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
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
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Child;
using eshm_test::MakeSeqMessage;
using eshm_test::NowNs;
using eshm_test::ParseSeqMessage;
using eshm_test::SleepMs;

constexpr int kMaxSamples = 4096;

struct Shared {
  std::atomic<int> stop;
  std::atomic<int> attached;
  std::atomic<int> failed;
  std::atomic<int> samples;
  std::atomic<std::uint64_t> read;
  std::atomic<std::uint64_t> written;
  std::atomic<std::uint64_t> incarnations;
  std::atomic<std::int64_t> rss_kb[kMaxSamples];
  std::atomic<std::int64_t> fds[kMaxSamples];
  char error[512];
};
Shared* g = nullptr;

int Fail(const std::string& what) {
  int expected = 0;
  if (g->failed.compare_exchange_strong(expected, 1)) std::snprintf(g->error, sizeof(g->error), "%s", what.c_str());
  std::fprintf(stderr, "[soak pid %d] %s\n", static_cast<int>(getpid()), what.c_str());
  return 1;
}

double SoakSeconds() {
  if (const char* text = std::getenv("ESHM_SOAK_SECONDS"); text != nullptr && *text != '\0') {
    return std::max(1.0, std::atof(text));
  }
  return std::max(5.0, std::round(20 * eshm_test::ChannelStressScale()));
}

std::int64_t RssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

std::int64_t OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  std::int64_t n = 0;
  while (readdir(dir) != nullptr) ++n;
  closedir(dir);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

ChannelOptions Opts(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.disconnect_behavior = DisconnectBehavior::kNever;
  o.reconnect_retry_interval_ms = 10;
  o.max_reconnect_attempts = 0;
  o.m2s_capacity = 256 * 1024;
  o.s2m_capacity = 256 * 1024;
  o.stale_threshold_ms = eshm_test::UnderSanitizer() ? 2000 : 500;
  return o;
}

std::size_t SizeOf(std::uint64_t seq) { return 16 + (seq * 97) % 1000; }

// Whether the survivor reads and writes from two threads (the documented "one writer thread and one
// reader thread may run concurrently"). Under ThreadSanitizer a survivor slave that follows its master to
// a new segment trips a data race inside eshm (see the report, and the manual target
// channel_side_switch_race_test that keeps reproducing it), so the CI soak interleaves both sides on one
// thread there.
bool ConcurrentSides(ChannelRole role) {
#if defined(ESHM_SOAK_RACE_REPRO)
  (void)role;
  return true;
#elif defined(__SANITIZE_THREAD__)
  return role != ChannelRole::kSlave;
#else
  (void)role;
  return true;
#endif
}

int RunSurvivor(const std::string& name, ChannelRole role) {
  auto opened = Channel::Open(name, Opts(role));
  if (!opened.ok()) return Fail(absl::StrCat("survivor open: ", opened.status().ToString()));
  Channel& ch = **opened;
  g->attached = 1;
  std::uint64_t write_seq = 0;
  // One write attempt; false on a real error.
  auto write_one = [&](int wait_ms) {
    const absl::Status s = ch.Write(MakeSeqMessage(0, write_seq, SizeOf(write_seq)), Deadline::AfterMs(wait_ms));
    if (s.ok()) {
      g->written.store(++write_seq);
    } else if (!absl::IsDeadlineExceeded(s) && !absl::IsUnavailable(s)) {
      Fail(absl::StrCat("survivor write: ", s.ToString()));
      return false;
    }
    return true;
  };
  const bool concurrent = ConcurrentSides(role);
  std::atomic<bool> stop_writing{false};
  std::thread writer;
  if (concurrent) {
    writer = std::thread([&] {
      while (!stop_writing.load() && write_one(20)) {
      }
    });
  }
  std::vector<std::byte> buffer(4096);
  std::uint32_t cur = 0;
  std::uint64_t last = 0;
  bool any = false;
  int code = 0;
  while (g->stop.load() == 0 && g->failed.load() == 0) {
    if (!concurrent && !write_one(0)) break;
    absl::StatusOr<std::size_t> n = ch.Read(buffer, Deadline::AfterMs(concurrent ? 20 : 1));
    if (!n.ok()) {
      if (absl::IsDeadlineExceeded(n.status()) || absl::IsUnavailable(n.status())) continue;
      code = Fail(absl::StrCat("survivor read: ", n.status().ToString()));
      break;
    }
    auto m = ParseSeqMessage(std::span<const std::byte>(buffer.data(), *n));
    if (!m || *n != SizeOf(m->seq) || m->incarnation == 0) {
      code = Fail(absl::StrCat("survivor: corrupt message of ", *n, " bytes"));
      break;
    }
    if (m->incarnation < cur || (m->incarnation == cur && any && m->seq <= last)) {
      code = Fail(absl::StrCat("survivor: ", m->incarnation, "/", m->seq, " after ", cur, "/", last));
      break;
    }
    if (m->incarnation != cur) {
      cur = m->incarnation;
      g->incarnations.fetch_add(1);
      // A new peer: sample memory and descriptors.
      const int i = g->samples.load();
      if (i < kMaxSamples) {
        g->rss_kb[i] = RssKb();
        g->fds[i] = OpenFds();
        g->samples = i + 1;
      }
    }
    last = m->seq;
    any = true;
    g->read.fetch_add(1);
  }
  stop_writing = true;
  if (writer.joinable()) writer.join();
  ch.Close();
  return code != 0 ? code : (g->failed.load() != 0 ? 1 : 0);
}

int RunPeer(const std::string& name, ChannelRole role, std::uint32_t inc) {
  auto opened = Channel::Open(name, Opts(role));
  if (!opened.ok()) return Fail(absl::StrCat("peer ", inc, " open: ", opened.status().ToString()));
  Channel& ch = **opened;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::vector<std::byte> buffer(4096);
    while (!stop.load()) {
      absl::StatusOr<std::size_t> n = ch.Read(buffer, Deadline::AfterMs(10));
      if (n.ok() && !ParseSeqMessage(std::span<const std::byte>(buffer.data(), *n))) {
        Fail(absl::StrCat("peer ", inc, ": corrupt message"));
        return;
      }
    }
  });
  // A clean peer closes after 150-350 ms of traffic; the parent kills every other one before that.
  const std::int64_t until = NowNs() + 150'000'000 + static_cast<std::int64_t>(inc % 5) * 50'000'000;
  for (std::uint64_t seq = 0; NowNs() < until && g->failed.load() == 0;) {
    const absl::Status s = ch.Write(MakeSeqMessage(inc, seq, SizeOf(seq)), Deadline::AfterMs(10));
    if (s.ok()) ++seq;
  }
  stop = true;
  reader.join();
  ch.Close();
  return 0;
}

class SoakTest : public eshm_test::ChannelTestBase {
 protected:
  void SetUp() override {
    ChannelTestBase::SetUp();
    void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    g = new (p) Shared();
  }
  void TearDown() override {
    if (g != nullptr) munmap(g, sizeof(Shared));
    g = nullptr;
    ChannelTestBase::TearDown();
  }

  void Run(ChannelRole survivor_role, double seconds) {
    const ChannelRole peer_role = survivor_role == ChannelRole::kMaster ? ChannelRole::kSlave : ChannelRole::kMaster;
    const std::string name = NewName();
    const std::int64_t end = NowNs() + static_cast<std::int64_t>(seconds * 1e9);
    Child survivor = StartChild([&] { return RunSurvivor(name, survivor_role); });
    std::uint32_t inc = 0;
    int kills = 0, closes = 0;
    while (NowNs() < end) {
      ASSERT_FALSE(survivor.Poll()) << "survivor ended: " << survivor.Describe() << ": " << g->error;
      ASSERT_EQ(g->failed.load(), 0) << g->error;
      ++inc;
      Child peer = StartChild([&] { return RunPeer(name, peer_role, inc); });
      if (inc % 2 == 0) {
        // Killed mid-traffic (once the survivor is attached, so the first master creates the segment).
        eshm_test::WaitUntil([&] { return g->attached.load() != 0; }, absl::Seconds(30));
        SleepMs(50 + static_cast<int>(inc % 7) * 20);
        peer.Kill();
        ++kills;
      } else {
        ASSERT_TRUE(eshm_test::WaitForChild(peer, absl::Seconds(60))) << g->error;
        ++closes;
      }
    }
    g->stop = 1;
    ASSERT_TRUE(eshm_test::WaitForChild(survivor, absl::Seconds(60))) << g->error;
    ASSERT_EQ(g->failed.load(), 0) << g->error;
    const int n = std::min(g->samples.load(), kMaxSamples);
    ASSERT_GE(n, 8) << "too few peer restarts reached the survivor";
    std::int64_t rss_early = 0, fds_early = 0, rss_late = 0, fds_late = 0;
    for (int i = 1; i < n / 4 + 1; ++i) {
      rss_early = std::max(rss_early, g->rss_kb[i].load());
      fds_early = std::max(fds_early, g->fds[i].load());
    }
    for (int i = n - n / 4; i < n; ++i) {
      rss_late = std::max(rss_late, g->rss_kb[i].load());
      fds_late = std::max(fds_late, g->fds[i].load());
    }
    const std::int64_t rss_slack_kb = 8 * 1024;
    std::printf("[soak] survivor %s, %.0f s: %u peers (%d closed, %d killed), %d reached the survivor; read %llu, "
                "wrote %llu; VmRSS %lld kB early -> %lld kB late (first sample %lld kB); fds %lld -> %lld\n",
                survivor_role == ChannelRole::kMaster ? "master" : "slave", seconds, inc, closes, kills, n,
                static_cast<unsigned long long>(g->read.load()), static_cast<unsigned long long>(g->written.load()),
                static_cast<long long>(rss_early), static_cast<long long>(rss_late),
                static_cast<long long>(g->rss_kb[0].load()), static_cast<long long>(fds_early),
                static_cast<long long>(fds_late));
    // Under a sanitizer, freed memory sits in the allocator's quarantine (ASan: up to 256 MiB), so RSS
    // says nothing about leaks there (LeakSanitizer does); descriptors are still checked.
    if (!eshm_test::UnderSanitizer()) {
      EXPECT_LE(rss_late, rss_early + rss_slack_kb) << "the survivor's memory grows with peer restarts";
    }
    // A slave that follows its master to a new segment holds both until it has drained the old one: one
    // or two descriptors of slack, never growth with the number of restarts.
    EXPECT_LE(fds_late, fds_early + 2) << "the survivor leaks descriptors across peer restarts";
    EXPECT_FALSE(eshm_test::SegmentFileExists(name) && survivor_role == ChannelRole::kMaster)
        << "the survivor master's close must remove the segment";
  }
};

TEST_F(SoakTest, SurvivorSlaveAcrossMasterRestarts) { Run(ChannelRole::kSlave, SoakSeconds() / 2); }

#if !defined(ESHM_SOAK_RACE_REPRO)
TEST_F(SoakTest, SurvivorMasterAcrossSlaveRestarts) { Run(ChannelRole::kMaster, SoakSeconds() / 2); }
#endif

}  // namespace
}  // namespace eshm
