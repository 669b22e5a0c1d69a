#include "eshm/segment_inspection.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/role_lock.h"
#include "eshm/segment.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/file_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using eshm_test::ReadFileBytes;
using eshm_test::WriteNewFile;

constexpr int kMaster = static_cast<int>(Role::kMaster);
constexpr int kSlave = static_cast<int>(Role::kSlave);
constexpr int kM2s = static_cast<int>(Direction::kMasterToSlave);
constexpr int kS2m = static_cast<int>(Direction::kSlaveToMaster);

bool Truncate(const std::string& path, std::uint64_t size) {
  return truncate(path.c_str(), static_cast<off_t>(size)) == 0;
}

SegmentOptions Rings(std::uint64_t capacity) {
  SegmentOptions options;
  options.m2s_capacity = capacity;
  options.s2m_capacity = capacity;
  return options;
}

class SegmentInspectionTest : public ::testing::Test {
 protected:
  // Removes whatever a test left at its paths, even after a failure.
  void TearDown() override {
    for (const std::string& path : paths_to_remove_) {
      if (unlink(path.c_str()) != 0 && (errno == EISDIR || errno == EPERM)) rmdir(path.c_str());
    }
  }

  // A unique valid name (pid, counter, test name) whose path is removed at TearDown.
  SegmentName NewName(const std::string& tag = "") {
    absl::StatusOr<SegmentName> name = SegmentName::Create(eshm_test::UniqueSegmentName(tag));
    EXPECT_TRUE(name.ok()) << name.status();
    paths_to_remove_.push_back(name->path());
    return *name;
  }
  void RemoveAtTearDown(const std::string& path) { paths_to_remove_.push_back(path); }

  std::vector<std::string> paths_to_remove_;
};

TEST_F(SegmentInspectionTest, LiveMasterAndSlaveAreSeenWithTheirCounters) {
  const SegmentName name = NewName();
  ChannelOptions options;
  options.m2s_capacity = 16384;
  options.s2m_capacity = 8192;
  options.stale_threshold_ms = 700;
  options.role = ChannelRole::kMaster;
  auto master = Channel::Open(name, options);
  ASSERT_TRUE(master.ok()) << master.status();
  options.role = ChannelRole::kSlave;
  auto slave = Channel::Open(name, options);
  ASSERT_TRUE(slave.ok()) << slave.status();

  const std::string hello(20, 'm');
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*master)->Write(std::as_bytes(std::span(hello)), Deadline::AfterMs(5000)).ok());
  }
  std::string buffer(256, '\0');
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*slave)->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(5000)).ok());
  }
  const std::string ack(7, 's');
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE((*slave)->Write(std::as_bytes(std::span(ack)), Deadline::AfterMs(5000)).ok());
    ASSERT_TRUE((*master)->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(5000)).ok());
  }

  const SegmentSnapshot s = InspectSegment(name);
  ASSERT_EQ(s.status, SegmentFileStatus::kOk) << s.problem;
  EXPECT_EQ(s.problem, "");
  EXPECT_EQ(s.path, name.path());
  EXPECT_TRUE(s.opened);
  EXPECT_EQ(s.file_bytes, ComputeGeometry(16384, 8192).segment_bytes);
  EXPECT_EQ(s.uid, geteuid());
  EXPECT_EQ(s.mode, 0600u);
  EXPECT_TRUE(s.shape_known);
  EXPECT_EQ(s.ring_capacity[kM2s], 16384u);
  EXPECT_EQ(s.ring_capacity[kS2m], 8192u);
  EXPECT_EQ(s.max_message_bytes, (*master)->max_message_bytes());
  EXPECT_EQ(s.creator_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_NE(s.creation_epoch_ns, 0u);
  EXPECT_TRUE(s.trailer_intact);
  EXPECT_GT(s.sampled_ns, 0);
  for (const int r : {kMaster, kSlave}) {
    SCOPED_TRACE(r == kMaster ? "master" : "slave");
    EXPECT_TRUE(s.roles[r].lock_held);
    EXPECT_EQ(s.roles[r].state, 1u);
    EXPECT_EQ(s.roles[r].pid, static_cast<std::uint32_t>(getpid()));
    EXPECT_EQ(s.roles[r].attach_epoch, 1u);
    EXPECT_GT(s.roles[r].heartbeat, 0u);
    EXPECT_EQ(s.roles[r].stale_threshold_ms, 700u);
  }
  const RingSnapshot& m2s = s.rings[kM2s];
  EXPECT_EQ(m2s.messages_written, 5u);
  EXPECT_EQ(m2s.messages_read, 3u);
  EXPECT_EQ(m2s.tail, 5 * RecordBytes(hello.size()));
  EXPECT_EQ(m2s.head, 3 * RecordBytes(hello.size()));
  EXPECT_EQ(m2s.QueuedMessages(), 2u);
  EXPECT_EQ(m2s.QueuedBytes(), 2 * RecordBytes(hello.size()));
  const RingSnapshot& s2m = s.rings[kS2m];
  EXPECT_EQ(s2m.messages_written, 2u);
  EXPECT_EQ(s2m.messages_read, 2u);
  EXPECT_EQ(s2m.tail, 2 * RecordBytes(ack.size()));
  EXPECT_EQ(s2m.QueuedMessages(), 0u);
  EXPECT_EQ(s2m.QueuedBytes(), 0u);

  // The peers carry on undisturbed, and a role closed cleanly shows free and vacant.
  ASSERT_TRUE((*master)->Write(std::as_bytes(std::span(hello)), Deadline::AfterMs(5000)).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*slave)->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(5000)).ok());
  }
  (*slave)->Close();
  const SegmentSnapshot after = InspectSegment(name);
  ASSERT_EQ(after.status, SegmentFileStatus::kOk) << after.problem;
  EXPECT_EQ(after.rings[kM2s].messages_written, 6u);
  EXPECT_EQ(after.rings[kM2s].QueuedMessages(), 0u);
  EXPECT_TRUE(after.roles[kMaster].lock_held);
  EXPECT_FALSE(after.roles[kSlave].lock_held);
  EXPECT_EQ(after.roles[kSlave].state, 0u);
  EXPECT_EQ(after.roles[kSlave].pid, 0u);
}

TEST_F(SegmentInspectionTest, InspectionChangesNeitherTheBytesNorTheTimesOfTheFile) {
  const SegmentName name = NewName();
  absl::StatusOr<Segment> created = Segment::Create(name, Rings(4096));
  ASSERT_TRUE(created.ok()) << created.status();
  const std::optional<std::string> bytes = ReadFileBytes(name.path());
  ASSERT_TRUE(bytes.has_value());
  // An access time older than the change time: under relatime, any access that counts updates it.
  const timespec times[2] = {{1'000'000'000, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, name.path().c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << strerror(errno);
  struct stat before;
  ASSERT_EQ(stat(name.path().c_str(), &before), 0);

  for (int i = 0; i < 20; ++i) ASSERT_EQ(InspectSegment(name).status, SegmentFileStatus::kOk);

  struct stat after;
  ASSERT_EQ(stat(name.path().c_str(), &after), 0);
  EXPECT_EQ(ReadFileBytes(name.path()), bytes);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_atim.tv_sec, before.st_atim.tv_sec) << "the access time changed";
  EXPECT_EQ(after.st_atim.tv_nsec, before.st_atim.tv_nsec);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
  EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
  // No role lock was left behind: another opener still gets both roles.
  EXPECT_EQ(TryLockRole(created->fd(), Role::kMaster).value_or(false), true);
  EXPECT_EQ(TryLockRole(created->fd(), Role::kSlave).value_or(false), true);
}

TEST_F(SegmentInspectionTest, MissingFileIsMissing) {
  const SegmentName name = NewName();
  const SegmentSnapshot s = InspectSegment(name);
  EXPECT_EQ(s.status, SegmentFileStatus::kMissing);
  EXPECT_THAT(s.problem, HasSubstr(name.path()));
  EXPECT_FALSE(s.opened);
}

TEST_F(SegmentInspectionTest, ForeignFilesAreReportedAndLeftUntouched) {
  std::mt19937_64 random(static_cast<std::uint64_t>(getpid()));
  std::string noise(8192, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  noise.replace(0, 8, "NOTESHM!");  // neither zero nor eshm's magic
  const SegmentName large = NewName("large");
  const SegmentName small = NewName("small");
  ASSERT_TRUE(WriteNewFile(large.path(), noise));
  ASSERT_TRUE(WriteNewFile(small.path(), "garbage, only a few bytes long"));
  for (const SegmentName* name : {&large, &small}) {
    SCOPED_TRACE(name->name());
    const std::optional<std::string> before = ReadFileBytes(name->path());
    const SegmentSnapshot s = InspectSegment(*name);
    EXPECT_EQ(s.status, SegmentFileStatus::kForeign);
    EXPECT_THAT(s.problem, HasSubstr(absl::StrCat(name->path(), " is not an eshm segment")));
    EXPECT_THAT(s.problem, Not(HasSubstr("left untouched")));  // Open's advice, not an inspection's
    EXPECT_TRUE(s.opened);
    EXPECT_EQ(s.file_bytes, before->size());
    EXPECT_FALSE(s.shape_known);
    EXPECT_EQ(ReadFileBytes(name->path()), before);
  }
}

TEST_F(SegmentInspectionTest, HalfCreatedFilesAreReported) {
  const std::uint64_t size = ComputeGeometry(4096, 4096).segment_bytes;
  const SegmentName zeros = NewName("zeros");
  ASSERT_TRUE(WriteNewFile(zeros.path(), std::string(size, '\0')));
  const SegmentName magic_only = NewName("magic");
  std::string header(size, '\0');
  std::memcpy(header.data(), &kSegmentMagic, sizeof(kSegmentMagic));
  ASSERT_TRUE(WriteNewFile(magic_only.path(), header));
  for (const SegmentName* name : {&zeros, &magic_only}) {
    SCOPED_TRACE(name->name());
    const SegmentSnapshot s = InspectSegment(*name);
    EXPECT_EQ(s.status, SegmentFileStatus::kHalfCreated);
    EXPECT_THAT(s.problem, HasSubstr("no layout version"));
  }
  // Empty: too short to tell how it came to be, so reported as Segment::Open says it ("too small ... or it
  // was truncated").
  const SegmentName empty = NewName("empty");
  ASSERT_TRUE(WriteNewFile(empty.path(), ""));
  const SegmentSnapshot s = InspectSegment(empty);
  EXPECT_EQ(s.status, SegmentFileStatus::kTruncated);
  EXPECT_THAT(s.problem, HasSubstr("0 bytes, too small for an eshm segment"));
  EXPECT_TRUE(s.opened);
}

// A copy of a fresh segment of 4 KiB rings, changed by `change`, as a new file at `name`.
void WriteChangedSegment(const SegmentName& name, const std::function<void(std::string&)>& change) {
  absl::StatusOr<SegmentName> donor = SegmentName::Create(absl::StrCat(name.name(), "_donor"));
  ASSERT_TRUE(donor.ok());
  std::optional<std::string> bytes;
  {
    absl::StatusOr<Segment> created = Segment::Create(*donor, Rings(4096));
    ASSERT_TRUE(created.ok()) << created.status();
    bytes = ReadFileBytes(donor->path());
    ASSERT_TRUE(Segment::Unlink(donor->name()).ok());
  }
  ASSERT_TRUE(bytes.has_value());
  change(*bytes);
  ASSERT_TRUE(WriteNewFile(name.path(), *bytes));
}

TEST_F(SegmentInspectionTest, AnotherLayoutVersionIsIncompatible) {
  const SegmentName name = NewName();
  WriteChangedSegment(name, [](std::string& bytes) {
    const std::uint32_t version = 999;
    std::memcpy(bytes.data() + offsetof(SegmentHeader, layout_version), &version, sizeof(version));
  });
  const SegmentSnapshot s = InspectSegment(name);
  EXPECT_EQ(s.status, SegmentFileStatus::kIncompatibleVersion);
  EXPECT_THAT(s.problem, HasSubstr(absl::StrCat("layout version 999 but this eshm reads version ", kLayoutVersion)));
}

TEST_F(SegmentInspectionTest, AnInconsistentHeaderIsCorrupt) {
  const SegmentName name = NewName();
  WriteChangedSegment(name, [](std::string& bytes) {
    const std::uint64_t capacity = 5000;  // not a power of two
    std::memcpy(bytes.data() + offsetof(SegmentHeader, ring_capacity), &capacity, sizeof(capacity));
  });
  const SegmentSnapshot s = InspectSegment(name);
  EXPECT_EQ(s.status, SegmentFileStatus::kCorrupt);
  EXPECT_THAT(s.problem, HasSubstr("corrupt header"));
}

TEST_F(SegmentInspectionTest, TruncatedSegmentsAreTruncated) {
  struct Case {
    const char* what;
    std::function<bool(const std::string&, std::uint64_t)> cut;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"cut inside the trailer's page",
       [](const std::string& p, std::uint64_t size) { return Truncate(p, size - 100); }, "but its header says"},
      {"cut inside a ring", [](const std::string& p, std::uint64_t) { return Truncate(p, 5000); },
       "but its header says"},
      {"cut inside the header", [](const std::string& p, std::uint64_t) { return Truncate(p, 100); },
       "too small for an eshm segment"},
      {"cut and grown back", [](const std::string& p, std::uint64_t size) {
         return Truncate(p, size - 4) && Truncate(p, size);
       }, "trailer"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const SegmentName name = NewName();
    absl::StatusOr<Segment> created = Segment::Create(name, Rings(4096));
    ASSERT_TRUE(created.ok()) << created.status();
    const std::uint64_t size = created->size_bytes();
    created = absl::UnknownError("closed");  // unmapped: nothing of this process touches it any more
    ASSERT_TRUE(c.cut(name.path(), size)) << strerror(errno);
    const SegmentSnapshot s = InspectSegment(name);
    EXPECT_EQ(s.status, SegmentFileStatus::kTruncated);
    EXPECT_THAT(s.problem, HasSubstr(c.says));
    EXPECT_THAT(s.problem, HasSubstr(name.path()));
  }
}

// Blocks in open(O_WRONLY) on a FIFO until a reader opens it.
class FifoWriter {
 public:
  explicit FifoWriter(std::string path)
      : path_(std::move(path)), thread_([this] {
          tid_.store(static_cast<pid_t>(syscall(SYS_gettid)));
          const int fd = open(path_.c_str(), O_WRONLY | O_CLOEXEC);
          opened_.store(true);
          if (fd >= 0) close(fd);
        }) {}
  ~FifoWriter() {
    // A reader of our own releases the writer.
    const int fd = open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    thread_.join();
    if (fd >= 0) close(fd);
  }
  // Waits until the writer sleeps in open() (its /proc syscall file names openat); false after 10 s.
  bool WaitUntilBlocked() {
    while (tid_.load() == 0) eshm_test::SleepMs(1);
    const std::string path = absl::StrCat("/proc/self/task/", tid_.load(), "/syscall");
    for (int waited_ms = 0; waited_ms < 10'000; ++waited_ms) {
      std::ifstream file(path);
      std::string number;
      if (!(file >> number)) return false;
      if (number == std::to_string(SYS_openat)) return true;
      eshm_test::SleepMs(1);
    }
    return false;
  }
  bool opened() const { return opened_.load(); }

 private:
  const std::string path_;
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> opened_{false};
  std::thread thread_;
};

TEST_F(SegmentInspectionTest, NonRegularFilesAreReportedNeitherOpenedNorFollowed) {
  const SegmentName fifo = NewName("fifo");
  ASSERT_EQ(mkfifo(fifo.path().c_str(), 0600), 0) << strerror(errno);
  const SegmentName directory = NewName("dir");
  ASSERT_EQ(mkdir(directory.path().c_str(), 0700), 0) << strerror(errno);
  const SegmentName socket_name = NewName("sock");
  const int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  ASSERT_LT(socket_name.path().size(), sizeof(address.sun_path));
  std::memcpy(address.sun_path, socket_name.path().c_str(), socket_name.path().size() + 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0) << strerror(errno);
  close(sock);
  const SegmentName target = NewName("target");
  absl::StatusOr<Segment> created = Segment::Create(target, Rings(4096));
  ASSERT_TRUE(created.ok()) << created.status();
  const SegmentName link = NewName("link");
  ASSERT_EQ(symlink(target.path().c_str(), link.path().c_str()), 0) << strerror(errno);
  const SegmentName dangling = NewName("dangling");
  ASSERT_EQ(symlink("/dev/shm/eshmtest_nowhere_at_all", dangling.path().c_str()), 0) << strerror(errno);

  struct Case {
    const SegmentName* name;
    const char* is;
  };
  for (const Case& c : {Case{&fifo, "a FIFO"}, Case{&directory, "a directory"}, Case{&socket_name, "a socket"},
                        Case{&link, "a symbolic link"}, Case{&dangling, "a symbolic link"}}) {
    SCOPED_TRACE(c.is);
    const SegmentSnapshot s = InspectSegment(*c.name);
    EXPECT_EQ(s.status, SegmentFileStatus::kNotRegularFile);
    EXPECT_THAT(s.problem, HasSubstr(absl::StrCat(c.name->path(), " is ", c.is)));
    EXPECT_FALSE(s.opened);
    EXPECT_FALSE(s.shape_known);
  }

  // Never opened: a writer waiting for the FIFO's first reader goes on waiting.
  FifoWriter writer(fifo.path());
  ASSERT_TRUE(writer.WaitUntilBlocked());
  EXPECT_EQ(InspectSegment(fifo).status, SegmentFileStatus::kNotRegularFile);
  eshm_test::SleepMs(50);  // a writer the inspection had let through would be past open() by now
  EXPECT_FALSE(writer.opened()) << "the inspection opened the FIFO";
}

TEST_F(SegmentInspectionTest, ListedFilesOfAnyNameAreInspectedByTheirName) {
  const SegmentName segment = NewName("listed");
  absl::StatusOr<Segment> created = Segment::Create(segment, Rings(4096));
  ASSERT_TRUE(created.ok()) << created.status();
  // A name no program could ask for: escape sequences, a newline, a byte that is not UTF-8.
  const std::string hostile = absl::StrCat(segment.name(), "_\x1b]0;pwned\a\r\nnext\xff");
  const std::string hostile_path = SegmentName::PathOf(hostile);
  RemoveAtTearDown(hostile_path);
  ASSERT_TRUE(WriteNewFile(hostile_path, std::string(16, '\0')));

  absl::StatusOr<std::vector<std::string>> listed = ListSegmentFiles();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(std::is_sorted(listed->begin(), listed->end()));
  EXPECT_EQ(std::count(listed->begin(), listed->end(), segment.name()), 1);
  EXPECT_EQ(std::count(listed->begin(), listed->end(), hostile), 1);

  EXPECT_EQ(InspectSegmentFile(segment.name()).status, SegmentFileStatus::kOk);
  const SegmentSnapshot s = InspectSegmentFile(hostile);
  EXPECT_EQ(s.path, hostile_path);
  EXPECT_EQ(s.status, SegmentFileStatus::kTruncated);
  EXPECT_THAT(s.problem, HasSubstr("16 bytes, too small"));
  // Names of no file directly in the directory.
  for (const std::string& bad : {std::string("a/b"), std::string("nul\0byte", 8), std::string()}) {
    EXPECT_EQ(InspectSegmentFile(bad).status, SegmentFileStatus::kMissing);
  }
}

TEST_F(SegmentInspectionTest, SegmentTruncatedWhileInspectedInALoopIsOkOrTruncatedNeverACrash) {
  // Sizes a hostile peer cuts the file to, largest first: inside the trailer's page, past the rings, inside
  // the second ring's control block, inside the first ring, inside the header, nothing.
  const std::uint64_t ring = 64 * 1024;
  const SegmentGeometry g = ComputeGeometry(ring, ring);
  const std::vector<std::uint64_t> cuts = {g.segment_bytes - 100, g.rings_end, g.ring_offset[1] + 200,
                                           g.ring_offset[0] + 5000, 50, 0};
  int ok = 0;
  int truncated = 0;
  for (int round = 0; round < 10; ++round) {
    const SegmentName name = NewName();
    {
      absl::StatusOr<Segment> created = Segment::Create(name, Rings(ring));
      ASSERT_TRUE(created.ok()) << created.status();
    }
    std::atomic<bool> done{false};
    std::thread cutter([&] {
      for (const std::uint64_t size : cuts) {
        eshm_test::SleepMs(1 + round % 3);
        EXPECT_TRUE(Truncate(name.path(), size)) << strerror(errno);
      }
      done.store(true);
    });
    bool last = false;
    while (!last) {
      last = done.load();  // one more look once every cut is made
      const SegmentSnapshot s = InspectSegment(name);
      if (s.status == SegmentFileStatus::kOk) {
        ++ok;
      } else if (s.status == SegmentFileStatus::kTruncated) {
        ++truncated;
      } else {
        ADD_FAILURE() << "status " << static_cast<int>(s.status) << ": " << s.problem;
      }
    }
    cutter.join();
    EXPECT_EQ(InspectSegment(name).status, SegmentFileStatus::kTruncated);
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(truncated, 0);
}

}  // namespace
}  // namespace eshm
