// In-process tests of the channel: both endpoints in one process (each Channel has its own open file
// description, so the role locks behave as between processes). Cross-process behaviour is in //tests.
#include "eshm/channel.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

std::string UniqueName(const char* test) {
  static int counter = 0;
  return absl::StrCat("chan_", test, "_", getpid(), "_", counter++);
}

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string ReadString(Channel& channel, int timeout_ms = 2000) {
  std::string buffer(65536, '\0');
  auto size = channel.Read(std::as_writable_bytes(std::span(buffer.data(), buffer.size())),
                           Deadline::AfterMs(timeout_ms));
  if (!size.ok()) return absl::StrCat("<error: ", size.status().ToString(), ">");
  buffer.resize(*size);
  return buffer;
}

ChannelOptions WithRole(ChannelRole role) {
  ChannelOptions options;
  options.role = role;
  options.m2s_capacity = options.s2m_capacity = 64 * 1024;
  return options;
}

TEST(ChannelTest, MasterAndSlaveTalkBothWays) {
  const std::string name = UniqueName("talk");
  auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok()) << master.status();
  auto slave = Channel::Open(name, WithRole(ChannelRole::kSlave));
  ASSERT_TRUE(slave.ok()) << slave.status();
  EXPECT_EQ((*master)->role(), Role::kMaster);
  EXPECT_EQ((*slave)->role(), Role::kSlave);
  ASSERT_TRUE((*master)->Write(Bytes("Hello from master #0"), Deadline::AfterMs(1000)).ok());
  EXPECT_EQ(ReadString(**slave), "Hello from master #0");
  ASSERT_TRUE((*slave)->Write(Bytes("ACK from slave #0"), Deadline::AfterMs(1000)).ok());
  EXPECT_EQ(ReadString(**master), "ACK from slave #0");
  const ChannelStats stats = (*master)->stats();
  EXPECT_EQ(stats.m2s_write_count, 1u);
  EXPECT_EQ(stats.m2s_read_count, 1u);
  EXPECT_EQ(stats.s2m_write_count, 1u);
  EXPECT_EQ(stats.s2m_read_count, 1u);
  EXPECT_EQ(stats.master_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(stats.slave_pid, static_cast<std::uint32_t>(getpid()));
}

TEST(ChannelTest, AutoTakesMasterThenSlave) {
  const std::string name = UniqueName("auto");
  auto first = Channel::Open(name, WithRole(ChannelRole::kAuto));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Channel::Open(name, WithRole(ChannelRole::kAuto));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*first)->role(), Role::kMaster);
  EXPECT_EQ((*second)->role(), Role::kSlave);
  auto third = Channel::Open(name, WithRole(ChannelRole::kAuto));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(third.status().message().find(absl::StrCat("pid ", getpid())), std::string_view::npos)
      << third.status();
}

TEST(ChannelTest, SecondMasterIsRefusedWithTheHoldersPid) {
  const std::string name = UniqueName("second");
  auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok()) << master.status();
  auto again = Channel::Open(name, WithRole(ChannelRole::kMaster));
  ASSERT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find(absl::StrCat("live master (pid ", getpid(), ")")),
            std::string_view::npos)
      << again.status();
}

TEST(ChannelTest, PeerBecomesAliveAndDeadOnClose) {
  const std::string name = UniqueName("alive");
  auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok());
  EXPECT_EQ((*master)->peer_state(), PeerState::kAbsent);
  {
    auto slave = Channel::Open(name, WithRole(ChannelRole::kSlave));
    ASSERT_TRUE(slave.ok());
    EXPECT_TRUE((*slave)->IsRemoteAlive());
    const std::int64_t start = MonotonicNowNs();
    while (!(*master)->IsRemoteAlive() && MonotonicNowNs() - start < 2'000'000'000) usleep(1000);
    EXPECT_TRUE((*master)->IsRemoteAlive());
  }
  const std::int64_t start = MonotonicNowNs();
  while ((*master)->peer_state() != PeerState::kDead && MonotonicNowNs() - start < 2'000'000'000) usleep(1000);
  EXPECT_EQ((*master)->peer_state(), PeerState::kDead);
}

TEST(ChannelTest, MasterCloseRemovesTheSegment) {
  const std::string name = UniqueName("cleanup");
  {
    auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
    ASSERT_TRUE(master.ok());
    EXPECT_EQ(access(Segment::PathFor(name).c_str(), F_OK), 0);
  }
  EXPECT_NE(access(Segment::PathFor(name).c_str(), F_OK), 0);
}

bool WaitFor(const std::function<bool()>& condition, int timeout_ms = 5000) {
  const std::int64_t end = MonotonicNowNs() + std::int64_t{timeout_ms} * 1'000'000;
  while (!condition()) {
    if (MonotonicNowNs() > end) return false;
    usleep(1000);
  }
  return true;
}

TEST(ChannelTest, MasterRecreatesARemovedNameAndTheSlaveFollows) {
  const std::string name = UniqueName("removed");
  ChannelOptions options = WithRole(ChannelRole::kMaster);
  options.reconnect_retry_interval_ms = 20;
  auto master = Channel::Open(name, options);
  ASSERT_TRUE(master.ok()) << master.status();
  options.role = ChannelRole::kSlave;
  auto slave = Channel::Open(name, options);
  ASSERT_TRUE(slave.ok()) << slave.status();
  ASSERT_TRUE((*master)->Write(Bytes("before"), Deadline::AfterMs(1000)).ok());

  struct stat before;
  ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &before), 0);
  ASSERT_TRUE(Segment::Unlink(name).ok());  // what `rm /dev/shm/eshm_<name>` does

  // The master puts a new segment under the name; the slave drains the old one, then follows.
  ASSERT_TRUE(WaitFor([&] {
    struct stat now;
    return stat(Segment::PathFor(name).c_str(), &now) == 0 && now.st_ino != before.st_ino;
  }));
  EXPECT_EQ(ReadString(**slave), "before");
  ASSERT_TRUE(WaitFor([&] { return (*slave)->stats().reconnect_count >= 1 && (*slave)->IsRemoteAlive(); }))
      << PeerStateName((*slave)->peer_state());
  ASSERT_TRUE(WaitFor([&] { return (*master)->IsRemoteAlive(); }));
  ASSERT_TRUE((*master)->Write(Bytes("after"), Deadline::AfterMs(1000)).ok());
  EXPECT_EQ(ReadString(**slave), "after");
  ASSERT_TRUE((*slave)->Write(Bytes("ack"), Deadline::AfterMs(1000)).ok());
  EXPECT_EQ(ReadString(**master), "ack");
}

TEST(ChannelTest, SpinningReaderLearnsThatItsPeerLeft) {
  const std::string name = UniqueName("spinning");
  ChannelOptions options = WithRole(ChannelRole::kMaster);
  options.wait = WaitStrategy::Spin();  // never sleeps: the peer check must run while polling
  options.disconnect_behavior = DisconnectBehavior::kImmediately;
  auto master = Channel::Open(name, options);
  ASSERT_TRUE(master.ok());
  options.role = ChannelRole::kSlave;
  auto slave = Channel::Open(name, options);
  ASSERT_TRUE(slave.ok());
  ASSERT_TRUE(WaitFor([&] { return (*master)->IsRemoteAlive(); }));
  absl::Status result;
  std::thread reader([&] {
    std::byte buffer[16];
    result = (*master)->Read(buffer, Deadline::AfterMs(20000)).status();
  });
  usleep(20000);
  (*slave)->Close();
  reader.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kUnavailable) << result;
}

TEST(ChannelTest, TruncatedSegmentIsAnErrorNotACrash) {
  const std::string name = UniqueName("truncated");
  auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok());
  auto slave = Channel::Open(name, WithRole(ChannelRole::kSlave));
  ASSERT_TRUE(slave.ok());
  ASSERT_TRUE((*master)->Write(Bytes("doomed"), Deadline::AfterMs(1000)).ok());
  // Any process that can open the file can do this; touching the lost pages would raise SIGBUS.
  const int fd = open(Segment::PathFor(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 0), 0);
  close(fd);
  std::byte buffer[64];
  std::size_t size = 0;
  IoResult result = IoResult::kOk;
  for (int i = 0; i < 1000 && result != IoResult::kCorrupt; ++i) result = (*slave)->TryRead(buffer, &size);
  EXPECT_EQ(result, IoResult::kCorrupt);
  auto read = (*slave)->Read(buffer, Deadline::AfterMs(100));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << read.status();
  EXPECT_NE(read.status().message().find("truncated"), std::string_view::npos) << read.status();
  absl::Status write = absl::OkStatus();
  for (int i = 0; i < 1000 && write.ok(); ++i) write = (*master)->Write(Bytes("more"), Deadline::AfterMs(100));
  EXPECT_EQ(write.code(), absl::StatusCode::kDataLoss) << write;
}

// What a creator that made the file at its name before filling it in would leave behind if killed. eshm
// itself never does that (a segment gets its name only once complete), so such a file is not one it made.
TEST(ChannelTest, MasterRefusesAnUnfinishedFileAtThePathAndLeavesIt) {
  for (const off_t size : {off_t{0}, off_t{4096}}) {
    const std::string name = UniqueName("unfinished");
    const int fd = open(Segment::PathFor(name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, size), 0);
    struct stat before;
    ASSERT_EQ(fstat(fd, &before), 0);
    close(fd);
    for (const ChannelRole role : {ChannelRole::kMaster, ChannelRole::kAuto}) {
      auto master = Channel::Open(name, WithRole(role));
      ASSERT_FALSE(master.ok());
      EXPECT_EQ(master.status().code(), absl::StatusCode::kFailedPrecondition) << master.status();
      EXPECT_NE(master.status().message().find("untouched"), std::string_view::npos) << master.status();
      struct stat after;
      ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &after), 0) << "the file was removed";
      EXPECT_EQ(after.st_ino, before.st_ino);
      EXPECT_EQ(after.st_size, size);
    }
    // Removed by hand, the name is free again.
    ASSERT_TRUE(Segment::Unlink(name).ok());
    auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
    ASSERT_TRUE(master.ok()) << master.status();
  }
}

TEST(ChannelTest, SegmentCreatedByAnotherUserIsRefusedUnlessAllowed) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  const std::string name = UniqueName("squatted");
  // Another user creates the name first, world-writable, as someone hoping to intercept the channel would.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(2);
    SegmentOptions shape;
    shape.m2s_capacity = shape.s2m_capacity = 64 * 1024;
    shape.mode = 0666;
    auto segment = Segment::Create(name, shape);
    _exit(segment.ok() ? 0 : 3);  // the file stays: it has no channel to clean it up
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  struct stat before;
  ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &before), 0);

  for (const ChannelRole role : {ChannelRole::kSlave, ChannelRole::kMaster, ChannelRole::kAuto}) {
    ChannelOptions options = WithRole(role);
    options.max_reconnect_attempts = 1;
    auto refused = Channel::Open(name, options);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << refused.status();
    EXPECT_NE(refused.status().message().find("belongs to another user (uid 65534"), std::string_view::npos) << refused.status();
  }
  struct stat after;
  ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the other user's file was replaced";

  ChannelOptions shared = WithRole(ChannelRole::kMaster);
  shared.allow_other_owner = true;
  auto allowed = Channel::Open(name, shared);
  EXPECT_TRUE(allowed.ok()) << allowed.status();
  if (allowed.ok()) (*allowed)->Close();
  (void)Segment::Unlink(name);
}

TEST(ChannelTest, ReadWithoutAPeerTimesOut) {
  const std::string name = UniqueName("timeout");
  auto master = Channel::Open(name, WithRole(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok());
  std::byte buffer[8];
  auto result = (*master)->Read(buffer, Deadline::AfterMs(50));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
}

TEST(ChannelTest, ImmediatelyFailsAtOnceWithoutAPeer) {
  const std::string name = UniqueName("immediately");
  ChannelOptions options = WithRole(ChannelRole::kMaster);
  options.disconnect_behavior = DisconnectBehavior::kImmediately;
  auto master = Channel::Open(name, options);
  ASSERT_TRUE(master.ok());
  std::byte buffer[8];
  auto result = (*master)->Read(buffer, Deadline::AfterMs(5000));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  EXPECT_EQ((*master)->TryWrite(Bytes("x")), IoResult::kPeerGone);
}

TEST(ChannelTest, InlineHeartbeatWithoutThreads) {
  const std::string name = UniqueName("inline");
  ChannelOptions options = WithRole(ChannelRole::kMaster);
  options.use_threads = false;
  auto master = Channel::Open(name, options);
  ASSERT_TRUE(master.ok());
  options.role = ChannelRole::kSlave;
  auto slave = Channel::Open(name, options);
  ASSERT_TRUE(slave.ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE((*master)->Write(Bytes(absl::StrCat("m", i)), Deadline::AfterMs(1000)).ok());
    ASSERT_EQ(ReadString(**slave), absl::StrCat("m", i));
  }
  const ChannelStats stats = (*master)->stats();
  EXPECT_GT(stats.master_heartbeat, 100u);
  EXPECT_GT(stats.slave_heartbeat, 100u);
}

}  // namespace
}  // namespace eshm
