// Channel::Open against whatever is at the channel's path, in other processes:
//  * a file that is not a regular file (a FIFO, a directory, a socket, a symlink) is refused at once, in
//    every role, with an error naming the file and what it is, and stays where it is;
//  * a regular file that is not an eshm segment (foreign bytes, text, zeros, an empty file, a header that
//    was never finished) is refused at once in every role and left byte for byte as it was;
//  * openers started together over what a creator killed while creating, or a dead master, left at the
//    name end with exactly one master and one slave on one segment, the others refused with
//    AlreadyExists, none failing otherwise;
//  * a slave started while its master is still creating a large segment waits for it, and one that gives
//    up first says what is true.
//
// Each open runs in a forked child with a watchdog, so a hang is a failure, not a stuck test. An open that
// waits at all where it must refuse at once waits forever (max_reconnect_attempts = 0), which the watchdog
// catches: no test measures a duration.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/file_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Bytes;
using eshm_test::Child;
using eshm_test::Pipe;
using eshm_test::ReadFileBytes;
using eshm_test::SegmentInode;
using eshm_test::WriteNewFile;

constexpr absl::Duration kWatchdog = absl::Seconds(30);
Deadline Soon() { return Deadline::AfterMs(10'000); }

using ChannelPtr = std::unique_ptr<Channel>;

const char* RoleText(ChannelRole role) {
  switch (role) {
    case ChannelRole::kMaster:
      return "MASTER";
    case ChannelRole::kSlave:
      return "SLAVE";
    case ChannelRole::kAuto:
      return "AUTO";
  }
  return "?";
}

bool Contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// True if process `pid` has a file under `dir` open (a segment it is creating, named or not).
bool HasFileOpenUnder(pid_t pid, const std::string& dir) {
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  DIR* d = opendir(fds.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (const dirent* e = readdir(d)) {
    char target[4096];
    const ssize_t n = readlink(absl::StrCat(fds, "/", e->d_name).c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    if (std::string_view(target, static_cast<std::size_t>(n)).substr(0, dir.size()) == dir) found = true;
  }
  closedir(d);
  return found;
}

// Inodes of every file under /dev/shm that this process has mapped, named or not.
std::set<ino_t> MappedShmInodes() {
  std::set<ino_t> inodes;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string address, perms, offset, device;
    unsigned long long inode = 0;
    in >> address >> perms >> offset >> device >> inode;
    std::string path;
    std::getline(in, path);
    const std::size_t start = path.find_first_not_of(' ');
    if (start != std::string::npos && path.compare(start, 9, "/dev/shm/") == 0) inodes.insert(inode);
  }
  return inodes;
}

class OpenRaceTest : public eshm_test::ChannelTestBase {
 protected:
  void TearDown() override {
    for (const std::string& path : directories_) rmdir(path.c_str());
    eshm_test::ChannelTestBase::TearDown();
  }

  // A short name: a socket's path must fit sockaddr_un (108 bytes).
  std::string NewShortName() {
    static int counter = 0;
    names_.push_back(absl::StrCat("eshmtest_", getpid(), "_or", counter++));
    return names_.back();
  }

  std::vector<std::string> directories_;
};

// =========================================================================================================
// Files that are not regular files

// Makes the thing at `path`. False (and a test failure) if it could not.
bool MakeNonRegular(const std::string& kind, const std::string& path, const std::string& fifo_elsewhere) {
  if (kind == "FIFO") return mkfifo(path.c_str(), 0600) == 0;
  if (kind == "directory") return mkdir(path.c_str(), 0700) == 0;
  if (kind == "socket") {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path)) return false;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const bool ok = bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);  // the socket file stays
    return ok;
  }
  if (kind == "symlink to a FIFO") return symlink(fifo_elsewhere.c_str(), path.c_str()) == 0;
  if (kind == "dangling symlink") return symlink("/dev/shm/eshmtest_nowhere_at_all", path.c_str()) == 0;
  return false;
}

// What the error message must say the file is.
const char* DescribedAs(const std::string& kind) {
  if (kind == "FIFO") return "FIFO";
  if (kind == "directory") return "directory";
  if (kind == "socket") return "socket";
  return "symbolic link";
}

TEST_F(OpenRaceTest, NonRegularFilesAtThePathAreRefusedAtOnceInEveryRoleAndStay) {
  const std::string fifo_elsewhere = Segment::PathFor(NewShortName());
  ASSERT_EQ(mkfifo(fifo_elsewhere.c_str(), 0600), 0) << strerror(errno);
  for (const std::string kind : {"FIFO", "directory", "socket", "symlink to a FIFO", "dangling symlink"}) {
    for (const ChannelRole role : {ChannelRole::kMaster, ChannelRole::kAuto, ChannelRole::kSlave}) {
      SCOPED_TRACE(absl::StrCat(kind, ", role ", RoleText(role)));
      const std::string name = NewShortName();
      const std::string path = Segment::PathFor(name);
      ASSERT_TRUE(MakeNonRegular(kind, path, fifo_elsewhere)) << strerror(errno);
      if (kind == "directory") directories_.push_back(path);
      struct stat before;
      ASSERT_EQ(lstat(path.c_str(), &before), 0);

      Child opener = StartChild([&]() -> int {
        ChannelOptions options = Options(role);
        options.max_reconnect_attempts = 0;  // waiting at all would be waiting forever
        absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
        ESHM_CHILD_CHECK(!channel.ok());
        const std::string message(channel.status().message());
        if (channel.status().code() != absl::StatusCode::kFailedPrecondition || !Contains(message, path) ||
            !Contains(message, DescribedAs(kind))) {
          std::fprintf(stderr, "[%s open of a %s] %s\n", RoleText(role), kind.c_str(),
                       channel.status().ToString().c_str());
          return 1;
        }
        return 0;
      });
      EXPECT_TRUE(eshm_test::WaitForChild(opener, kWatchdog)) << "a hang is killed by the watchdog";

      struct stat after;
      ASSERT_EQ(lstat(path.c_str(), &after), 0) << "the " << kind << " was removed";
      EXPECT_EQ(after.st_ino, before.st_ino) << "the " << kind << " was replaced";
      EXPECT_EQ(after.st_mode, before.st_mode);
    }
  }
  struct stat fifo;
  ASSERT_EQ(lstat(fifo_elsewhere.c_str(), &fifo), 0);
  EXPECT_TRUE(S_ISFIFO(fifo.st_mode)) << "the symlink's target was replaced";
}

// =========================================================================================================
// Regular files that are not eshm segments

struct Foreign {
  const char* what;
  std::string bytes;
};

std::vector<Foreign> ForeignFiles() {
  std::vector<Foreign> files;
  const std::string foreign_magic = "FOREIGN!";
  files.push_back({"\"FOREIGN!\" then zeros, one page", foreign_magic + std::string(4096 - 8, '\0')});
  const std::uint64_t segment_bytes = ComputeGeometry(1 << 20, 1 << 20).segment_bytes;
  files.push_back({"\"FOREIGN!\" then zeros, a whole segment's size",
                   foreign_magic + std::string(segment_bytes - 8, '\0')});
  files.push_back({"a 25-byte text file", "just some text, 25 bytes\n"});
  files.push_back({"an empty file", ""});
  files.push_back({"100 zero bytes", std::string(100, '\0')});
  files.push_back({"zeros, a header's size", std::string(kSegmentHeaderBytes, '\0')});
  files.push_back({"zeros, a whole segment's size", std::string(segment_bytes, '\0')});
  std::string unfinished(4096, '\0');
  std::memcpy(unfinished.data(), &kSegmentMagic, sizeof(kSegmentMagic));
  files.push_back({"eshm's magic, no layout version, nobody creating it", unfinished});
  return files;
}

TEST_F(OpenRaceTest, ForeignFilesAreRefusedAtOnceInEveryRoleAndLeftByteForByte) {
  for (const Foreign& file : ForeignFiles()) {
    for (const ChannelRole role : {ChannelRole::kMaster, ChannelRole::kAuto, ChannelRole::kSlave}) {
      SCOPED_TRACE(absl::StrCat(file.what, ", role ", RoleText(role)));
      const std::string name = NewName();
      const std::string path = Segment::PathFor(name);
      ASSERT_TRUE(WriteNewFile(path, file.bytes));
      struct stat before;
      ASSERT_EQ(lstat(path.c_str(), &before), 0);

      Child opener = StartChild([&]() -> int {
        ChannelOptions options = Options(role);
        options.max_reconnect_attempts = 0;  // waiting at all would be waiting forever
        absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
        ESHM_CHILD_CHECK(!channel.ok());
        const std::string message(channel.status().message());
        // The file, that it was left alone, and what to do about it.
        if (channel.status().code() != absl::StatusCode::kFailedPrecondition || !Contains(message, path) ||
            !Contains(message, "untouched") || !Contains(message, absl::StrCat("rm ", path))) {
          std::fprintf(stderr, "[%s open of %s] %s\n", RoleText(role), file.what, channel.status().ToString().c_str());
          return 1;
        }
        return 0;
      });
      EXPECT_TRUE(eshm_test::WaitForChild(opener, kWatchdog)) << "a hang is killed by the watchdog";

      struct stat after;
      ASSERT_EQ(lstat(path.c_str(), &after), 0) << "the file was removed";
      EXPECT_EQ(after.st_ino, before.st_ino) << "the file was replaced";
      EXPECT_EQ(after.st_mode, before.st_mode);
      EXPECT_TRUE(ReadFileBytes(path) == file.bytes) << "the file's bytes changed";
    }
  }
}

// =========================================================================================================
// Starters racing over a leftover

enum class Leftover {
  kKilledCreator,           // a master killed while it was creating the segment
  kDeadMasterSameShape,     // a master killed after creating a segment of the starters' shape
  kDeadMasterAnotherShape,  // ... of another shape, which the new master must replace
};

const char* LeftoverText(Leftover leftover) {
  switch (leftover) {
    case Leftover::kKilledCreator:
      return "killed creator";
    case Leftover::kDeadMasterSameShape:
      return "dead master, same shape";
    case Leftover::kDeadMasterAnotherShape:
      return "dead master, another shape";
  }
  return "?";
}

constexpr std::uint64_t kStarterCapacity = 1 << 16;

ChannelOptions StarterOptions(ChannelRole role) {
  ChannelOptions options = eshm_test::ChannelTestBase::Options(role);
  options.m2s_capacity = options.s2m_capacity = kStarterCapacity;
  return options;
}

// Result of one starter, sent through its pipe: the outcome in the low byte, the inode it mapped above.
enum Outcome : std::uint64_t { kGotMaster = 0, kGotSlave = 1, kRoleTaken = 2, kFailed = 3 };

class StarterRace : public OpenRaceTest, public ::testing::WithParamInterface<Leftover> {
 protected:
  // Leaves `leftover` at `name`. Returns false (with a test failure) if it could not.
  ::testing::AssertionResult Leave(const std::string& name, Leftover leftover) {
    Pipe ready;
    Child victim = StartChild([&]() -> int {
      ChannelOptions options = StarterOptions(ChannelRole::kMaster);
      if (leftover == Leftover::kKilledCreator) {
        // Large enough that reserving it takes a while: the kill lands while it is being created.
        options.m2s_capacity = options.s2m_capacity = std::uint64_t{64} << 20;
      } else if (leftover == Leftover::kDeadMasterAnotherShape) {
        options.m2s_capacity = kStarterCapacity * 2;
      }
      absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
      ESHM_CHILD_CHECK_OK(channel);
      ESHM_CHILD_CHECK(ready.Send(1));
      eshm_test::SleepMs(60'000);  // killed by the parent
      return 3;
    });
    if (leftover == Leftover::kKilledCreator) {
      if (!eshm_test::WaitUntil([&] { return HasFileOpenUnder(victim.pid(), "/dev/shm/") || victim.Poll(); },
                                kWatchdog, absl::Microseconds(50))) {
        return ::testing::AssertionFailure() << "the creator never opened a file in /dev/shm";
      }
    } else if (!ready.Receive(kWatchdog, &victim).has_value()) {
      return ::testing::AssertionFailure() << "the master to be killed did not start: " << victim.Describe();
    }
    victim.Kill();
    return ::testing::AssertionSuccess();
  }
};

TEST_P(StarterRace, StartersAgreeOnOneMasterAndOneSegment) {
  const Leftover leftover = GetParam();
  const int rounds = eshm_test::ScaledCount(20, 4);
  const std::vector<ChannelRole> roles = {ChannelRole::kAuto, ChannelRole::kMaster, ChannelRole::kAuto,
                                          ChannelRole::kMaster};
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(absl::StrCat(LeftoverText(leftover), ", round ", round));
    const std::string name = NewName(absl::StrCat(round));
    ASSERT_TRUE(Leave(name, leftover));

    std::vector<std::unique_ptr<Pipe>> results;
    for (std::size_t i = 0; i < roles.size(); ++i) results.push_back(std::make_unique<Pipe>());
    eshm_test::Barrier start, done;
    std::vector<Child> starters;
    for (std::size_t i = 0; i < roles.size(); ++i) {
      starters.push_back(StartChild([&, i]() -> int {
        if (!start.Wait(kWatchdog)) return 10;
        absl::StatusOr<ChannelPtr> channel = Channel::Open(name, StarterOptions(roles[i]));
        if (!channel.ok()) {
          const bool taken = channel.status().code() == absl::StatusCode::kAlreadyExists;
          if (!taken) {
            std::fprintf(stderr, "[starter %zu, %s] %s\n", i, RoleText(roles[i]), channel.status().ToString().c_str());
          }
          results[i]->Send(taken ? kRoleTaken : kFailed);
          return done.Wait(kWatchdog) ? 0 : 11;
        }
        Channel& c = **channel;
        const std::set<ino_t> mapped = MappedShmInodes();
        const std::uint64_t inode = mapped.size() == 1 ? *mapped.begin() : 0;
        // Master and slave prove they share a segment: a ping one way, a pong the other.
        if (c.role() == Role::kMaster) {
          ESHM_CHILD_CHECK_OK(c.Write(Bytes("ping"), Soon()));
          std::byte buffer[16];
          absl::StatusOr<std::size_t> n = c.Read(buffer, Soon());
          ESHM_CHILD_CHECK_OK(n);
        } else {
          std::byte buffer[16];
          absl::StatusOr<std::size_t> n = c.Read(buffer, Soon());
          ESHM_CHILD_CHECK_OK(n);
          ESHM_CHILD_CHECK_OK(c.Write(Bytes("pong"), Soon()));
        }
        results[i]->Send((c.role() == Role::kMaster ? kGotMaster : kGotSlave) | (inode << 8));
        return done.Wait(kWatchdog) ? 0 : 12;
      }));
    }
    eshm_test::SleepMs(1);  // let them all reach the barrier
    start.Open();

    int masters = 0, slaves = 0, taken = 0, failed = 0;
    std::set<std::uint64_t> inodes;
    for (std::size_t i = 0; i < roles.size(); ++i) {
      std::optional<std::uint64_t> result = results[i]->Receive(kWatchdog, &starters[i]);
      if (!result.has_value()) {
        ++failed;
        continue;
      }
      switch (*result & 0xff) {
        case kGotMaster:
          ++masters;
          inodes.insert(*result >> 8);
          break;
        case kGotSlave:
          ++slaves;
          inodes.insert(*result >> 8);
          break;
        case kRoleTaken:
          ++taken;
          break;
        default:
          ++failed;
      }
    }
    const std::uint64_t at_path = SegmentInode(name);
    done.Open();
    std::string children;
    for (Child& child : starters) {
      EXPECT_TRUE(eshm_test::WaitForChild(child, kWatchdog));
      absl::StrAppend(&children, " ", child.Describe(), ";");
    }
    EXPECT_EQ(failed, 0) << "starters failed (not AlreadyExists):" << children;
    EXPECT_EQ(masters, 1) << children;
    EXPECT_EQ(slaves, 1) << children;
    EXPECT_EQ(taken, static_cast<int>(roles.size()) - 2) << children;
    EXPECT_EQ(inodes.size(), 1u) << "master and slave are on different segments";
    if (inodes.size() == 1) {
      EXPECT_EQ(*inodes.begin(), at_path) << "not on the segment at the path";
    }
    if (HasFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(Leftovers, StarterRace,
                         ::testing::Values(Leftover::kKilledCreator, Leftover::kDeadMasterSameShape,
                                           Leftover::kDeadMasterAnotherShape),
                         [](const ::testing::TestParamInfo<Leftover>& param) {
                           switch (param.param) {
                             case Leftover::kKilledCreator:
                               return "KilledCreator";
                             case Leftover::kDeadMasterSameShape:
                               return "DeadMasterSameShape";
                             case Leftover::kDeadMasterAnotherShape:
                               return "DeadMasterAnotherShape";
                           }
                           return "Unknown";
                         });

// =========================================================================================================
// A slave while its master is still creating

// Starts a master that creates rings of `capacity` bytes each and waits (after writing "hello") for `hold`,
// and returns once it has begun creating: it has a file in /dev/shm open.
class SlaveDuringCreationTest : public OpenRaceTest {
 protected:
  Child StartCreatingMaster(const std::string& name, std::uint64_t capacity, Pipe& hold) {
    Child master = StartChild([&, capacity]() -> int {
      ChannelOptions options = Options(ChannelRole::kMaster);
      options.m2s_capacity = options.s2m_capacity = capacity;
      absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
      ESHM_CHILD_CHECK_OK(channel);
      ESHM_CHILD_CHECK_OK((*channel)->Write(Bytes("hello"), Soon()));
      ESHM_CHILD_CHECK(hold.Receive(absl::Seconds(120)).has_value());
      return 0;
    });
    EXPECT_TRUE(eshm_test::WaitUntil([&] { return HasFileOpenUnder(master.pid(), "/dev/shm/") || master.Poll(); },
                                     kWatchdog, absl::Microseconds(50)))
        << "the master never began creating";
    return master;
  }
};

// Two 1 GiB rings take seconds to reserve; the slave must wait for them, however long, when told to wait
// forever.
TEST_F(SlaveDuringCreationTest, SlaveStartedWhileTheMasterCreatesWaitsAndAttaches) {
  const std::string name = NewName();
  Pipe go, hold;
  Child slave = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(120)).has_value());
    ChannelOptions options = Options(ChannelRole::kSlave);
    options.max_reconnect_attempts = 0;  // wait as long as it takes
    options.reconnect_retry_interval_ms = 10;
    absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
    ESHM_CHILD_CHECK_OK(channel);
    std::byte buffer[16];
    absl::StatusOr<std::size_t> n = (*channel)->Read(buffer, Soon());
    ESHM_CHILD_CHECK_OK(n);
    ESHM_CHILD_CHECK(*n == 5 && std::memcmp(buffer, "hello", 5) == 0);
    return 0;
  });
  Child master = StartCreatingMaster(name, std::uint64_t{1} << 30, hold);
  ASSERT_TRUE(go.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(slave, absl::Seconds(120)));
  ASSERT_TRUE(hold.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(master, absl::Seconds(120)));
}

// A slave whose own deadline (max_reconnect_attempts x reconnect_retry_interval_ms) passes while the master
// is still creating reports that no segment appeared, not that a creator died.
TEST_F(SlaveDuringCreationTest, SlaveThatGivesUpWhileTheMasterCreatesSaysNoSegmentAppeared) {
  const std::string name = NewName();
  const std::string path = Segment::PathFor(name);
  Pipe go, hold;
  Child slave = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(120)).has_value());
    ChannelOptions options = Options(ChannelRole::kSlave);
    options.max_reconnect_attempts = 3;
    options.reconnect_retry_interval_ms = 10;
    absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
    ESHM_CHILD_CHECK(!channel.ok());
    const std::string message(channel.status().message());
    if (channel.status().code() != absl::StatusCode::kNotFound || !Contains(message, path) ||
        !Contains(message, "max_reconnect_attempts") || Contains(message, "died")) {
      std::fprintf(stderr, "[slave] %s\n", channel.status().ToString().c_str());
      return 1;
    }
    return 0;
  });
  Child master = StartCreatingMaster(name, std::uint64_t{512} << 20, hold);
  ASSERT_TRUE(go.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(slave, absl::Seconds(120)));
  ASSERT_TRUE(hold.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(master, absl::Seconds(120)));
}

}  // namespace
}  // namespace eshm
