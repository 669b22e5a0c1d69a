// A channel shared between two users, as docs/operations.md ("Permissions") tells users to set it up: both
// users in one group, the creator running with that group as its effective group and mode 0660, the other
// user opening with allow_other_owner. Every process here is a real process with its own uid (forked from a
// root test process, then setgroups/setresgid/setresuid); the test skips when not run as root.
//
// Also: each missing step of the recipe fails with PermissionDenied naming the file's owner and mode and
// the fix, and leaves the file untouched.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace {

using eshm::Channel;
using eshm::ChannelOptions;
using eshm::ChannelRole;
using eshm::Deadline;
using eshm::Segment;
using eshm_test::Bytes;
using eshm_test::Child;
using eshm_test::Pipe;
using eshm_test::Text;

// Ids no account on a test machine is expected to have; the kernel needs no passwd entry for them.
constexpr uid_t kCreatorUid = 4201;   // creates the channel (the master)
constexpr uid_t kPartnerUid = 4202;   // opens it (the slave), a member of kSharedGid
constexpr uid_t kOutsiderUid = 4203;  // in no shared group
constexpr gid_t kSharedGid = 4242;    // the group both users share, "eshm" in the documentation

constexpr absl::Duration kWatchdog = absl::Seconds(60);
constexpr int kNotRoot = 77;

// Drops this (forked, root) process to `uid` with effective group `gid` and supplementary `groups`.
bool BecomeUser(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (setgroups(groups.size(), groups.data()) != 0) return false;
  if (setresgid(gid, gid, gid) != 0) return false;
  if (setresuid(uid, uid, uid) != 0) return false;
  return geteuid() == uid && getegid() == gid;
}

ChannelOptions Options(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.m2s_capacity = o.s2m_capacity = 64 * 1024;
  o.reconnect_retry_interval_ms = 10;
  o.max_reconnect_attempts = 500;  // 5 s for the slave to find its master
  return o;
}

// Reads one message as text within 10 s, or "<error: ...>".
std::string ReadText(Channel& channel) {
  std::vector<std::byte> buffer(4096);
  absl::StatusOr<std::size_t> n = channel.Read(buffer, Deadline::AfterMs(10'000));
  if (!n.ok()) return "<error: " + n.status().ToString() + ">";
  return Text(std::span<const std::byte>(buffer.data(), *n));
}

class SharingBetweenUsersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to run processes as two other users";
  }
  void TearDown() override { (void)Segment::Unlink(name_); }

  const std::string name_ = eshm_test::UniqueSegmentName("shared");
};

TEST_F(SharingBetweenUsersTest, TheDocumentedRecipeWorksAndSurvivesAMasterRestart) {
  Pipe file_made;       // creator -> parent: the segment exists
  Pipe file_checked;    // parent -> creator: go on
  Child creator = Child::Start([&]() -> int {
    // Step 2 of the recipe: the shared group is the creator's effective group.
    if (!BecomeUser(kCreatorUid, kSharedGid, {kSharedGid})) return kNotRoot;
    ChannelOptions options = Options(ChannelRole::kMaster);
    options.mode = 0660;  // step 3
    for (int incarnation = 0; incarnation < 2; ++incarnation) {
      absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name_, options);
      ESHM_CHILD_CHECK_OK(master);
      if (incarnation == 0) {
        ESHM_CHILD_CHECK(file_made.Send(1));
        ESHM_CHILD_CHECK(file_checked.Receive(absl::Seconds(20)).has_value());
      }
      const std::string hello = "hello from the creator, incarnation " + std::to_string(incarnation);
      ESHM_CHILD_CHECK_OK((*master)->Write(Bytes(hello), Deadline::AfterMs(10'000)));
      const std::string reply = ReadText(**master);
      if (reply != "partner got: " + hello) {
        std::fprintf(stderr, "creator: reply %s\n", reply.c_str());
        return 1;
      }
      (*master)->Close();  // the restart: auto_cleanup removes the name, the partner waits for the next one
    }
    return 0;
  });
  ASSERT_TRUE(file_made.Receive(absl::Seconds(20), &creator).has_value()) << creator.Describe();

  struct stat st;
  ASSERT_EQ(stat(Segment::PathFor(name_).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kCreatorUid);
  EXPECT_EQ(st.st_gid, kSharedGid);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_TRUE(file_checked.Send(1));

  Child partner = Child::Start([&]() -> int {
    // Step 1: a member of the shared group; its own effective group is another.
    if (!BecomeUser(kPartnerUid, kPartnerUid, {kPartnerUid, kSharedGid})) return kNotRoot;
    ChannelOptions options = Options(ChannelRole::kSlave);
    options.allow_other_owner = true;  // step 4: the file is the creator's, on purpose
    absl::StatusOr<std::unique_ptr<Channel>> slave = Channel::Open(name_, options);
    ESHM_CHILD_CHECK_OK(slave);
    for (int incarnation = 0; incarnation < 2; ++incarnation) {
      const std::string got = ReadText(**slave);
      if (got != "hello from the creator, incarnation " + std::to_string(incarnation)) {
        std::fprintf(stderr, "partner: got %s\n", got.c_str());
        return 1;
      }
      ESHM_CHILD_CHECK_OK((*slave)->Write(Bytes("partner got: " + got), Deadline::AfterMs(10'000)));
    }
    // The reconnect to the restarted master (a new file of the creator's) needed allow_other_owner too.
    ESHM_CHILD_CHECK((*slave)->stats().reconnect_count >= 1);
    return 0;
  });
  ASSERT_TRUE(eshm_test::WaitForChildren({&creator, &partner}, kWatchdog));
}

// A creator that keeps a 0660 (or `mode`) channel open, created with effective group `gid`, until released.
Child StartCreator(const std::string& name, mode_t mode, gid_t gid, Pipe& ready, Pipe& release) {
  return Child::Start([&, name, mode, gid]() -> int {
    if (!BecomeUser(kCreatorUid, gid, {gid})) return kNotRoot;
    ChannelOptions options = Options(ChannelRole::kMaster);
    options.mode = mode;
    absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name, options);
    ESHM_CHILD_CHECK_OK(master);
    ESHM_CHILD_CHECK(ready.Send(1));
    ESHM_CHILD_CHECK(release.Receive(absl::Seconds(50)).has_value());
    return 0;
  });
}

// Opens `name` as `uid` in every role and expects PermissionDenied with every one of `wanted` in the message.
Child StartRefusedOpener(const std::string& name, uid_t uid, std::vector<gid_t> groups, bool allow_other_owner,
                         std::vector<std::string> wanted) {
  return Child::Start([=]() -> int {
    if (!BecomeUser(uid, uid, groups)) return kNotRoot;
    for (const ChannelRole role : {ChannelRole::kSlave, ChannelRole::kAuto, ChannelRole::kMaster}) {
      ChannelOptions options = Options(role);
      options.allow_other_owner = allow_other_owner;
      absl::StatusOr<std::unique_ptr<Channel>> opened = Channel::Open(name, options);
      ESHM_CHILD_CHECK(!opened.ok());
      const std::string message(opened.status().message());
      bool complete = absl::IsPermissionDenied(opened.status());
      for (const std::string& w : wanted) complete = complete && absl::StrContains(message, w);
      if (!complete) {
        std::fprintf(stderr, "role %d: %s\n", static_cast<int>(role), opened.status().ToString().c_str());
        return 1;
      }
    }
    return 0;
  });
}

// A creator keeps a channel (`mode`, effective group `gid`) open while `uid` (in `groups`) opens it in every
// role: each open must be PermissionDenied with all of `wanted` in its message, and the file must be left
// exactly as it was (inode, owner, group, mode).
void ExpectRefusedWhileTheCreatorRuns(const std::string& name, mode_t mode, gid_t gid, uid_t uid,
                                      std::vector<gid_t> groups, bool allow_other_owner,
                                      std::vector<std::string> wanted) {
  Pipe ready, release;
  Child creator = StartCreator(name, mode, gid, ready, release);
  ASSERT_TRUE(ready.Receive(absl::Seconds(20), &creator).has_value()) << creator.Describe();
  struct stat before;
  ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &before), 0);
  Child opener = StartRefusedOpener(name, uid, std::move(groups), allow_other_owner, std::move(wanted));
  EXPECT_TRUE(eshm_test::WaitForChildren({&opener}, kWatchdog)) << opener.Describe();
  struct stat after;
  ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_gid, before.st_gid);
  EXPECT_EQ(after.st_mode, before.st_mode);
  ASSERT_TRUE(release.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChildren({&creator}, kWatchdog));
}

TEST_F(SharingBetweenUsersTest, WithoutAllowOtherOwnerTheErrorNamesOwnerModeAndFix) {
  ExpectRefusedWhileTheCreatorRuns(
      name_, 0660, kSharedGid, kPartnerUid, {kPartnerUid, kSharedGid}, /*allow_other_owner=*/false,
      {"belongs to another user", "uid 4201", "gid 4242", "mode 0660", "allow_other_owner", "operations.md"});
}

TEST_F(SharingBetweenUsersTest, AUserOutsideTheGroupIsRefusedWithOwnerModeAndFix) {
  ExpectRefusedWhileTheCreatorRuns(name_, 0660, kSharedGid, kOutsiderUid, {kOutsiderUid},
                                   /*allow_other_owner=*/true,
                                   {"cannot be opened for reading and writing", "uid 4203", "uid 4201", "gid 4242",
                                    "mode 0660", "one group"});
}

TEST_F(SharingBetweenUsersTest, ACreatorThatKeptTheDefaultModeOrItsOwnGroupIsNamedInTheError) {
  for (const auto& [mode, gid, shown] : {std::tuple<mode_t, gid_t, std::string>{0600, kSharedGid, "mode 0600"},
                                         {0660, kCreatorUid, "gid 4201"}}) {
    SCOPED_TRACE(shown);
    const std::string name = eshm_test::UniqueSegmentName("shared");
    ExpectRefusedWhileTheCreatorRuns(name, mode, gid, kPartnerUid, {kPartnerUid, kSharedGid},
                                     /*allow_other_owner=*/true,
                                     {"cannot be opened for reading and writing", shown, "mode 0660"});
    (void)Segment::Unlink(name);
  }
}

}  // namespace
