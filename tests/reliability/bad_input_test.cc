// Bad input that eshm/segment_test.cc, eshm/ring_test.cc and tests/channel_test.cc do not already cover:
// segments of another user (both directions, via setresuid in a forked child; skipped unless root), a full
// /dev/shm (a tiny tmpfs mounted over /dev/shm in a private mount namespace; skipped if not permitted),
// foreign / truncated / wrong-magic / wrong-version files and symlinks at the path as seen by
// Channel::Open in every role, and message sizes 0 / max / max+1 / larger than the ring with the default
// (ring-derived) maximum on asymmetric rings.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Bytes;
using eshm_test::Child;
using ::testing::HasSubstr;

constexpr absl::Duration kWatchdog = absl::Seconds(60);
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr int kSkip = 77;

std::optional<std::string> ReadFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

bool WriteFile(const std::string& path, const std::string& bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  close(fd);
  return ok;
}

// Drops to uid/gid in a forked child. False if not permitted.
bool BecomeUser(uid_t uid, gid_t gid) {
  if (setgroups(0, nullptr) != 0) return false;
  if (setresgid(gid, gid, gid) != 0) return false;
  if (setresuid(uid, uid, uid) != 0) return false;
  return geteuid() == uid;
}

ChannelOptions Opts(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.max_reconnect_attempts = 2;
  o.reconnect_retry_interval_ms = 10;
  o.m2s_capacity = kMinRingCapacity;
  o.s2m_capacity = kMinRingCapacity;
  return o;
}

class BadInputTest : public eshm_test::ChannelTestBase {
 protected:
  static bool IsRoot() { return geteuid() == 0; }
};

// ---- Another user's segments ----

// Root creates a 0600 segment (and has a live master on it); nobody can neither open it as a Channel or a
// Segment (PermissionDenied) nor read or write the file; the file is untouched.
TEST_F(BadInputTest, RootsSegmentIsNeitherReadableNorInjectableByNobody) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to switch users";
  const std::string name = NewName();
  SegmentOptions so;
  so.m2s_capacity = kMinRingCapacity;
  so.s2m_capacity = kMinRingCapacity;
  so.mode = 0600;
  absl::StatusOr<Segment> segment = Segment::Create(name, so);
  ASSERT_TRUE(segment.ok()) << segment.status();
  const std::string path = Segment::PathFor(name);
  const std::optional<std::string> before = ReadFile(path);
  ASSERT_TRUE(before.has_value());

  Child intruder = StartChild([&]() -> int {
    if (!BecomeUser(kNobody, kNogroup)) return kSkip;
    ESHM_CHILD_CHECK(open(path.c_str(), O_RDONLY | O_CLOEXEC) < 0 && errno == EACCES);
    ESHM_CHILD_CHECK(open(path.c_str(), O_RDWR | O_CLOEXEC) < 0 && errno == EACCES);
    absl::StatusOr<Segment> s = Segment::Open(name, Deadline::AfterMs(200));
    if (s.status().code() != absl::StatusCode::kPermissionDenied) {
      std::fprintf(stderr, "Segment::Open as nobody: %s\n", s.status().ToString().c_str());
      return 1;
    }
    for (ChannelRole role : {ChannelRole::kMaster, ChannelRole::kSlave, ChannelRole::kAuto}) {
      auto c = Channel::Open(name, Opts(role));
      if (c.status().code() != absl::StatusCode::kPermissionDenied) {
        std::fprintf(stderr, "Channel::Open(role %d) as nobody: %s\n", static_cast<int>(role),
                     c.status().ToString().c_str());
        return 1;
      }
      if (c.status().message().find(path) == std::string_view::npos) {
        std::fprintf(stderr, "error does not name the file: %s\n", c.status().ToString().c_str());
        return 1;
      }
    }
    // Nor may it remove and replace the name (/dev/shm is sticky).
    ESHM_CHILD_CHECK(unlink(path.c_str()) != 0);
    return 0;
  });
  EXPECT_TRUE(eshm_test::WaitForChild(intruder, kWatchdog) || intruder.Describe() == "exited with code 77")
      << intruder.Describe();
  if (intruder.Describe() == "exited with code 77") GTEST_SKIP() << "setresuid not permitted";
  const std::optional<std::string> after = ReadFile(path);
  ASSERT_TRUE(after.has_value()) << "the file is gone";
  EXPECT_TRUE(*after == *before) << "the file was modified";
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// The reverse: a segment nobody made (0600) cannot be opened by another unprivileged user, and a Channel
// of nobody's works for nobody.
TEST_F(BadInputTest, UnprivilegedUsersCannotOpenEachOthersSegments) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to switch users";
  const std::string name = NewName();
  const std::string path = Segment::PathFor(name);
  eshm_test::Pipe created, done;
  Child owner = StartChild([&]() -> int {
    if (!BecomeUser(kNobody, kNogroup)) return kSkip;
    auto c = Channel::Open(name, Opts(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(c);
    (void)(*c)->TryWrite(Bytes("secret"));
    ESHM_CHILD_CHECK(created.Send(1));
    ESHM_CHILD_CHECK(done.Receive(kWatchdog).has_value());
    return 0;
  });
  Child other = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(created.Receive(kWatchdog).has_value());
    if (!BecomeUser(kNobody - 1, kNogroup - 1)) return kSkip;
    ESHM_CHILD_CHECK(open(path.c_str(), O_RDONLY | O_CLOEXEC) < 0 && errno == EACCES);
    for (ChannelRole role : {ChannelRole::kMaster, ChannelRole::kSlave, ChannelRole::kAuto}) {
      auto c = Channel::Open(name, Opts(role));
      if (c.status().code() != absl::StatusCode::kPermissionDenied) {
        std::fprintf(stderr, "Channel::Open(role %d) as uid %d: %s\n", static_cast<int>(role),
                     static_cast<int>(kNobody - 1), c.status().ToString().c_str());
        return 1;
      }
    }
    ESHM_CHILD_CHECK(done.Send(1));
    return 0;
  });
  const bool ok = eshm_test::WaitForChildren({&owner, &other}, kWatchdog);
  if (owner.Describe() == "exited with code 77" || other.Describe() == "exited with code 77") {
    GTEST_SKIP() << "setresuid not permitted";
  }
  EXPECT_TRUE(ok) << owner.Describe() << "; " << other.Describe();
  EXPECT_FALSE(eshm_test::SegmentFileExists(name)) << "the owner's master removes its segment on close";
}

// ---- /dev/shm full ----

// In a child with a private mount namespace and a 64 KiB tmpfs over /dev/shm: creating 1 MiB rings fails
// with ResourceExhausted naming --shm-size (posix_fallocate, not a later SIGBUS), leaves no file, and a
// segment that fits still works.
TEST_F(BadInputTest, FullDevShmIsResourceExhaustedNotSigbus) {
  const std::string name = NewName();
  Child child = StartChild([&]() -> int {
    if (unshare(CLONE_NEWNS) != 0) return kSkip;
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return kSkip;
    if (mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k,mode=1777") != 0) return kSkip;
    SegmentOptions so;  // 1 MiB rings
    absl::StatusOr<Segment> s = Segment::Create(name, so);
    if (s.status().code() != absl::StatusCode::kResourceExhausted ||
        s.status().message().find("--shm-size") == std::string_view::npos) {
      std::fprintf(stderr, "Segment::Create on a full /dev/shm: %s\n", s.status().ToString().c_str());
      return 1;
    }
    ESHM_CHILD_CHECK(!eshm_test::SegmentFileExists(name));
    for (ChannelRole role : {ChannelRole::kMaster, ChannelRole::kAuto}) {
      ChannelOptions o;
      o.role = role;
      auto c = Channel::Open(name, o);
      if (c.status().code() != absl::StatusCode::kResourceExhausted ||
          c.status().message().find("--shm-size") == std::string_view::npos) {
        std::fprintf(stderr, "Channel::Open(role %d) on a full /dev/shm: %s\n", static_cast<int>(role),
                     c.status().ToString().c_str());
        return 1;
      }
      ESHM_CHILD_CHECK(!eshm_test::SegmentFileExists(name));
    }
    // Half full: one small segment fits, a second does not; the first keeps working.
    SegmentOptions small;
    small.m2s_capacity = 16 * 1024;
    small.s2m_capacity = 16 * 1024;
    absl::StatusOr<Segment> first = Segment::Create(name, small);
    ESHM_CHILD_CHECK_OK(first);
    absl::StatusOr<Segment> second = Segment::Create(absl::StrCat(name, "_2"), small);
    ESHM_CHILD_CHECK(second.status().code() == absl::StatusCode::kResourceExhausted);
    RingProducer p = first->MakeProducer(Direction::kMasterToSlave);
    RingConsumer c = first->MakeConsumer(Direction::kMasterToSlave);
    for (int i = 0; i < 1000; ++i) {
      ESHM_CHILD_CHECK(p.TryWrite("0123456789abcdef", 16));
      std::byte buf[32];
      std::size_t n = 0;
      ESHM_CHILD_CHECK(c.TryRead(buf, &n) == ReadResult::kOk && n == 16);
    }
    return 0;
  });
  const bool ok = eshm_test::WaitForChild(child, kWatchdog);
  if (child.Describe() == "exited with code 77") GTEST_SKIP() << "unshare/mount not permitted here";
  EXPECT_TRUE(ok) << child.Describe();
}

// ---- Files at the segment path that are not (usable) segments ----

// Every role's Channel::Open refuses, fast, with a clear error, and never changes the file.
TEST_F(BadInputTest, ChannelOpenRefusesNonSegmentsAndLeavesThemUntouched) {
  struct Variant {
    std::string what;
    std::string bytes;
  };
  std::vector<Variant> variants;
  std::mt19937_64 rng(42);
  std::string random(8192, '\0');
  for (char& c : random) c = static_cast<char>(rng());
  variants.push_back({"random bytes", random});
  variants.push_back({"text", std::string("#!/bin/sh\necho not a segment\n") + std::string(4000, 'x')});
  {
    // A real segment's bytes, then damaged.
    const std::string donor = NewName("donor");
    SegmentOptions so;
    so.m2s_capacity = kMinRingCapacity;
    so.s2m_capacity = kMinRingCapacity;
    ASSERT_TRUE(Segment::Create(donor, so).ok());
    const std::optional<std::string> good = ReadFile(Segment::PathFor(donor));
    ASSERT_TRUE(good.has_value());
    std::string wrong_magic = *good;
    wrong_magic[0] ^= 0x20;
    variants.push_back({"wrong magic", wrong_magic});
    std::string wrong_version = *good;
    const std::uint32_t version = kLayoutVersion + 7;
    std::memcpy(wrong_version.data() + 8, &version, 4);
    variants.push_back({"wrong layout version", wrong_version});
    variants.push_back({"truncated segment", good->substr(0, good->size() / 2)});
    variants.push_back({"segment with a trailing extra page", *good + std::string(4096, '\0')});
    std::string bad_geometry = *good;
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(bad_geometry.data() + 48, &huge, 8);  // ring_capacity[0]
    variants.push_back({"ring capacity beyond the file", bad_geometry});
  }
  for (const Variant& v : variants) {
    for (ChannelRole role : {ChannelRole::kMaster, ChannelRole::kSlave, ChannelRole::kAuto}) {
      SCOPED_TRACE(absl::StrCat(v.what, ", role ", static_cast<int>(role)));
      const std::string name = NewName();
      const std::string path = Segment::PathFor(name);
      ASSERT_TRUE(WriteFile(path, v.bytes));
      const std::int64_t start = eshm_test::NowNs();
      auto c = Channel::Open(name, Opts(role));
      EXPECT_FALSE(c.ok()) << "opened a " << v.what;
      EXPECT_NE(c.status().code(), absl::StatusCode::kUnknown) << c.status();
      EXPECT_THAT(std::string(c.status().message()), HasSubstr(path)) << "the error must name the file";
      EXPECT_LT(eshm_test::MsSince(start), 5000.0) << c.status();
      const std::optional<std::string> after = ReadFile(path);
      ASSERT_TRUE(after.has_value()) << "the file was removed";
      EXPECT_TRUE(*after == v.bytes) << "the file was modified";
    }
  }
}

// A symlink at the path (to a real segment, or dangling) is neither followed by Open nor by Create.
TEST_F(BadInputTest, ChannelOpenDoesNotFollowASymlinkAtThePath) {
  const std::string target = NewName("target");
  SegmentOptions so;
  so.m2s_capacity = kMinRingCapacity;
  so.s2m_capacity = kMinRingCapacity;
  ASSERT_TRUE(Segment::Create(target, so).ok());
  const std::optional<std::string> target_bytes = ReadFile(Segment::PathFor(target));
  const std::string dangling = absl::StrCat("/dev/shm/eshmtest_dangling_", getpid());
  for (const std::string& to : {Segment::PathFor(target), dangling}) {
    for (ChannelRole role : {ChannelRole::kMaster, ChannelRole::kSlave, ChannelRole::kAuto}) {
      SCOPED_TRACE(absl::StrCat("symlink to ", to, ", role ", static_cast<int>(role)));
      const std::string name = NewName();
      ASSERT_EQ(symlink(to.c_str(), Segment::PathFor(name).c_str()), 0) << strerror(errno);
      auto c = Channel::Open(name, Opts(role));
      EXPECT_FALSE(c.ok()) << "followed a symlink";
      struct stat st;
      EXPECT_EQ(lstat(Segment::PathFor(name).c_str(), &st), 0);
      EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the symlink was replaced";
      EXPECT_NE(access(dangling.c_str(), F_OK), 0) << "Create followed the dangling symlink";
      unlink(dangling.c_str());
    }
  }
  EXPECT_TRUE(ReadFile(Segment::PathFor(target)) == target_bytes) << "the symlink's target was modified";
}

// ---- Message sizes with the default maximum on asymmetric rings ----

TEST_F(BadInputTest, MessageSizesAtAndBeyondTheRingDerivedMaximum) {
  const std::string name = NewName();
  ChannelOptions mo = Opts(ChannelRole::kMaster);
  mo.m2s_capacity = 8192;
  mo.s2m_capacity = 64 * 1024;  // the smaller ring decides the maximum, both ways
  auto master = Channel::Open(name, mo);
  ASSERT_TRUE(master.ok()) << master.status();
  auto slave = Channel::Open(name, Opts(ChannelRole::kSlave));
  ASSERT_TRUE(slave.ok()) << slave.status();
  const std::size_t max = MaxPayloadForCapacity(8192);
  EXPECT_EQ((*master)->max_message_bytes(), max);
  EXPECT_EQ((*slave)->max_message_bytes(), max);
  std::vector<std::byte> buffer(128 * 1024);
  for (Channel* w : {master->get(), slave->get()}) {
    Channel* r = w == master->get() ? slave->get() : master->get();
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, max - 1, max}) {
      SCOPED_TRACE(absl::StrCat("size ", size));
      const std::vector<std::byte> msg = eshm_test::MakeSeqMessage(3, size, size);
      const std::span<const std::byte> payload(msg.data(), size);
      ASSERT_TRUE(w->Write(payload, Deadline::AfterMs(5000)).ok());
      absl::StatusOr<std::size_t> n = r->Read(buffer, Deadline::AfterMs(5000));
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_EQ(*n, size);
      EXPECT_EQ(std::memcmp(buffer.data(), msg.data(), size), 0);
    }
    for (const std::size_t size : {max + 1, std::size_t{8192}, std::size_t{8192 + 1}, std::size_t{64 * 1024},
                                   std::size_t{100'000}}) {
      SCOPED_TRACE(absl::StrCat("size ", size));
      const std::vector<std::byte> msg(size, std::byte{9});
      EXPECT_EQ(w->TryWrite(msg), IoResult::kTooLarge);
      EXPECT_EQ(w->Write(msg, Deadline::Infinite()).code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(w->TryClaim(size), nullptr);
    }
    std::size_t n = 0;
    EXPECT_EQ(r->TryRead(buffer, &n), IoResult::kWouldBlock) << "a refused message was delivered";
  }
}

}  // namespace
}  // namespace eshm
