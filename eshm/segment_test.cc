#include "eshm/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/role_lock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/file_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using ::testing::HasSubstr;
using eshm_test::ReadFileBytes;
using eshm_test::WriteNewFile;

// This file never starts a thread: several tests fork, and umask is process-wide.

std::string Message(const absl::Status& status) { return std::string(status.message()); }

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

SegmentOptions SmallOptions() {
  SegmentOptions options;
  options.m2s_capacity = 4096;
  options.s2m_capacity = 4096;
  return options;
}

// Restores the process umask when it goes out of scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(umask(mask)) {}
  ~ScopedUmask() { umask(previous_); }

 private:
  mode_t previous_;
};

class SegmentTest : public ::testing::Test {
 protected:
  void SetUp() override { name_ = NewName(); }

  // Removes everything a test may have left at its paths, whatever it is, even after a failure.
  void TearDown() override {
    for (const std::string& path : paths_to_remove_) {
      if (unlink(path.c_str()) != 0 && (errno == EISDIR || errno == EPERM)) rmdir(path.c_str());
    }
  }

  // A fresh unique segment name whose path is removed at TearDown.
  std::string NewName(const std::string& tag = "") {
    std::string name = eshm_test::UniqueSegmentName(tag);
    RemoveAtTearDown(Segment::PathFor(name));
    return name;
  }
  void RemoveAtTearDown(const std::string& path) { paths_to_remove_.push_back(path); }

  std::string Path() const { return Segment::PathFor(name_); }

  std::string name_;
  std::vector<std::string> paths_to_remove_;
};

TEST_F(SegmentTest, PathForPrefixesTheNameInDevShm) {
  EXPECT_EQ(Segment::PathFor("abc"), "/dev/shm/eshm_abc");
}

TEST_F(SegmentTest, OpenSeesWhatCreateMade) {
  SegmentOptions options;
  options.m2s_capacity = 16384;
  options.s2m_capacity = 8192;
  options.max_message_bytes = 1000;
  timespec before;
  clock_gettime(CLOCK_REALTIME, &before);
  absl::StatusOr<Segment> created = Segment::Create(name_, options);
  ASSERT_TRUE(created.ok()) << created.status();
  timespec after;
  clock_gettime(CLOCK_REALTIME, &after);

  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();

  const SegmentGeometry geometry = ComputeGeometry(16384, 8192);
  for (const Segment* s : {&*created, &*opened}) {
    EXPECT_EQ(s->name(), name_);
    EXPECT_EQ(s->ring_capacity(Direction::kMasterToSlave), 16384u);
    EXPECT_EQ(s->ring_capacity(Direction::kSlaveToMaster), 8192u);
    EXPECT_EQ(s->max_message_bytes(), 1000u);
    EXPECT_EQ(s->size_bytes(), geometry.segment_bytes);
    EXPECT_EQ(reinterpret_cast<std::byte*>(s->ring_control(Direction::kSlaveToMaster)),
              reinterpret_cast<std::byte*>(s->header()) + geometry.ring_offset[1]);
    EXPECT_EQ(s->ring_data(Direction::kMasterToSlave),
              reinterpret_cast<std::byte*>(s->header()) + geometry.ring_offset[0] + kRingControlBytes);
  }
  EXPECT_EQ(opened->creation_epoch_ns(), created->creation_epoch_ns());
  const std::uint64_t before_ns = std::uint64_t(before.tv_sec) * 1'000'000'000u + std::uint64_t(before.tv_nsec);
  const std::uint64_t after_ns = std::uint64_t(after.tv_sec) * 1'000'000'000u + std::uint64_t(after.tv_nsec);
  EXPECT_GE(created->creation_epoch_ns(), before_ns);
  EXPECT_LE(created->creation_epoch_ns(), after_ns);
  EXPECT_EQ(opened->inode(), created->inode());
  EXPECT_EQ(opened->device(), created->device());

  // The header as another implementation would read it.
  const SegmentHeader* h = opened->header();
  EXPECT_EQ(h->magic, kSegmentMagic);
  EXPECT_EQ(h->layout_version.load(), kLayoutVersion);
  EXPECT_EQ(h->header_bytes, kSegmentHeaderBytes);
  EXPECT_EQ(h->segment_bytes, geometry.segment_bytes);
  EXPECT_EQ(h->ring_offset[0], geometry.ring_offset[0]);
  EXPECT_EQ(h->ring_offset[1], geometry.ring_offset[1]);
  EXPECT_EQ(h->ring_capacity[0], 16384u);
  EXPECT_EQ(h->ring_capacity[1], 8192u);
  EXPECT_EQ(h->max_message_bytes, 1000u);
  EXPECT_EQ(h->creator_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(h->creation_epoch_ns, created->creation_epoch_ns());
  for (const RoleControl& role : h->roles) {
    EXPECT_EQ(role.state.load(), 0u);
    EXPECT_EQ(role.pid.load(), 0u);
  }
  struct stat st;
  ASSERT_EQ(stat(Path().c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), geometry.segment_bytes);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(SegmentTest, DefaultMaximumMessageIsTheLargestTheSmallerRingTakes) {
  SegmentOptions options;
  options.m2s_capacity = 8192;
  options.s2m_capacity = 65536;
  absl::StatusOr<Segment> created = Segment::Create(name_, options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->max_message_bytes(), MaxPayloadForCapacity(8192));
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->max_message_bytes(), MaxPayloadForCapacity(8192));
}

TEST_F(SegmentTest, CreatorAndOpenerShareBothRings) {
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  // Different mappings of one file.
  ASSERT_NE(created->header(), opened->header());

  RingProducer to_slave = created->MakeProducer(Direction::kMasterToSlave);
  RingConsumer slave_in = opened->MakeConsumer(Direction::kMasterToSlave);
  RingProducer to_master = opened->MakeProducer(Direction::kSlaveToMaster);
  RingConsumer master_in = created->MakeConsumer(Direction::kSlaveToMaster);
  ASSERT_TRUE(to_slave.TryWrite("ping", 4));
  ASSERT_TRUE(to_master.TryWrite("pong!", 5));

  char buffer[16];
  std::size_t size = 0;
  ASSERT_EQ(slave_in.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "ping");
  ASSERT_EQ(master_in.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "pong!");
  // Each message went to its own ring only.
  EXPECT_EQ(slave_in.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kEmpty);
  EXPECT_EQ(master_in.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kEmpty);
}

TEST_F(SegmentTest, SegmentOutlivesTheCreatorsMapping) {
  {
    absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    RingProducer producer = created->MakeProducer(Direction::kMasterToSlave);
    ASSERT_TRUE(producer.TryWrite("kept", 4));
  }
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  RingConsumer consumer = opened->MakeConsumer(Direction::kMasterToSlave);
  char buffer[16];
  std::size_t size = 0;
  ASSERT_EQ(consumer.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "kept");
}

TEST_F(SegmentTest, CreateFailsWithAlreadyExistsAndKeepsTheExistingSegment) {
  absl::StatusOr<Segment> first = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(first.ok()) << first.status();
  const std::optional<std::string> before = ReadFileBytes(Path());
  ASSERT_TRUE(before.has_value());

  SegmentOptions other;
  other.m2s_capacity = 8192;
  absl::StatusOr<Segment> second = Segment::Create(name_, other);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_THAT(Message(second.status()), HasSubstr(Path()));

  // The failed Create neither removed nor rewrote the first segment.
  EXPECT_EQ(ReadFileBytes(Path()), before);
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->inode(), first->inode());
}

TEST_F(SegmentTest, OpenOfMissingSegmentIsNotFound) {
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(50));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kNotFound) << opened.status();
  EXPECT_THAT(Message(opened.status()), HasSubstr(Path()));
  EXPECT_FALSE(PathExists(Path()));
}

TEST_F(SegmentTest, OpenRejectsAnotherLayoutVersionAndLeavesTheFileUntouched) {
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  created->header()->layout_version.store(999, std::memory_order_release);
  const std::optional<std::string> before = ReadFileBytes(Path());
  ASSERT_TRUE(before.has_value());

  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_THAT(Message(opened.status()), HasSubstr("999"));
  EXPECT_THAT(Message(opened.status()), HasSubstr(absl::StrCat("version ", kLayoutVersion)));
  EXPECT_EQ(ReadFileBytes(Path()), before);
}

TEST_F(SegmentTest, OpenRejectsAResizedFileAndLeavesItUntouched) {
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  const off_t full = static_cast<off_t>(created->size_bytes());
  // Shorter, longer, and shorter than a header. Nothing touches the creator's mapping past the end.
  for (const off_t size : {full - 4096, full + 4096, off_t{100}}) {
    SCOPED_TRACE(absl::StrCat("file size ", size, " of ", full));
    ASSERT_EQ(ftruncate(created->fd(), size), 0);
    const std::optional<std::string> before = ReadFileBytes(Path());
    ASSERT_TRUE(before.has_value());
    absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(50));
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
    EXPECT_THAT(Message(opened.status()), HasSubstr(Path()));
    EXPECT_EQ(ReadFileBytes(Path()), before);
  }
}

TEST_F(SegmentTest, OpenRejectsAForeignFileAndLeavesItUntouched) {
  std::mt19937_64 random(12345);
  std::string bytes(8192, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  // The magic must be neither "uninitialized" (zero) nor ours, which random bytes almost surely are not.
  bytes[0] = 'X';
  ASSERT_TRUE(WriteNewFile(Path(), bytes));

  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(2000));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_THAT(Message(opened.status()), HasSubstr("not an eshm segment"));
  EXPECT_THAT(Message(opened.status()), HasSubstr(Path()));
  EXPECT_EQ(ReadFileBytes(Path()), bytes);

  // Foreign magic with a zero version word: no creator of ours is at work, so there is nothing to wait for.
  const std::string other = NewName("zero_version");
  bytes[8] = bytes[9] = bytes[10] = bytes[11] = '\0';
  ASSERT_TRUE(WriteNewFile(Segment::PathFor(other), bytes));
  absl::StatusOr<Segment> reopened = Segment::Open(other, Deadline::AfterMs(5000));
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition) << reopened.status();
  EXPECT_THAT(Message(reopened.status()), HasSubstr("not an eshm segment"));
  EXPECT_EQ(ReadFileBytes(Segment::PathFor(other)), bytes);
}

TEST_F(SegmentTest, OpenRefusesAnUnfinishedFileAtOnceAndLeavesItUntouched) {
  // What a creator that named its file before filling it in would leave if it died: eshm never does that,
  // so such a file will not become a segment, and nothing is worth waiting for. The child waits forever
  // if Open waits at all; the watchdog turns that into a failure.
  std::string magic_only(kSegmentHeaderBytes, '\0');
  std::memcpy(magic_only.data(), &kSegmentMagic, sizeof(kSegmentMagic));
  const std::vector<std::pair<std::string, std::string>> files = {
      {"empty", ""},
      {"100 zero bytes", std::string(100, '\0')},
      {"a header of zeros", std::string(kSegmentHeaderBytes, '\0')},
      {"a segment's size of zeros", std::string(ComputeGeometry(4096, 4096).segment_bytes, '\0')},
      {"eshm's magic, no layout version", magic_only},
  };
  for (const auto& [what, bytes] : files) {
    SCOPED_TRACE(what);
    const std::string name = NewName();
    const std::string path = Segment::PathFor(name);
    ASSERT_TRUE(WriteNewFile(path, bytes));
    eshm_test::Child opener = eshm_test::Child::Start([&] {
      absl::StatusOr<Segment> opened = Segment::Open(name, Deadline::Infinite());
      if (opened.status().code() != absl::StatusCode::kFailedPrecondition ||
          Message(opened.status()).find(path) == std::string::npos ||
          Message(opened.status()).find("untouched") == std::string::npos) {
        std::fprintf(stderr, "Open(%s): %s\n", what.c_str(), opened.status().ToString().c_str());
        return 1;
      }
      return 0;
    });
    EXPECT_TRUE(eshm_test::WaitForChild(opener, absl::Seconds(10)));
    EXPECT_EQ(ReadFileBytes(path), bytes);
  }
}

TEST_F(SegmentTest, OpenRefusesANonRegularFileAtOnceNamingWhatItIs) {
  const std::string fifo = NewName("fifo");
  ASSERT_EQ(mkfifo(Segment::PathFor(fifo).c_str(), 0600), 0) << strerror(errno);
  const std::string directory = NewName("dir");
  ASSERT_EQ(mkdir(Segment::PathFor(directory).c_str(), 0700), 0) << strerror(errno);
  for (const auto& [name, what] : {std::pair{fifo, "a FIFO"}, std::pair{directory, "a directory"}}) {
    SCOPED_TRACE(what);
    // Opening a FIFO for reading blocks until a writer comes: the child would hang; the watchdog catches it.
    eshm_test::Child opener = eshm_test::Child::Start([&] {
      absl::StatusOr<Segment> opened = Segment::Open(name, Deadline::Infinite());
      if (opened.status().code() != absl::StatusCode::kFailedPrecondition ||
          Message(opened.status()).find(absl::StrCat(Segment::PathFor(name), " is ", what)) == std::string::npos) {
        std::fprintf(stderr, "Open: %s\n", opened.status().ToString().c_str());
        return 1;
      }
      return 0;
    });
    EXPECT_TRUE(eshm_test::WaitForChild(opener, absl::Seconds(10)));
  }
  struct stat st;
  ASSERT_EQ(lstat(Segment::PathFor(fifo).c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(SegmentTest, OpenRejectsWrongMagicAndLeavesTheFileUntouched) {
  for (const std::uint64_t magic : {std::uint64_t{0x1122334455667788}, kSegmentMagic + 1, std::uint64_t{0}}) {
    SCOPED_TRACE(absl::StrCat("magic ", magic));
    const std::string name = NewName(absl::StrCat(magic));
    absl::StatusOr<Segment> created = Segment::Create(name, SmallOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    // A zero magic with a version set cannot come from a creator that writes the version last.
    created->header()->magic = magic;
    const std::optional<std::string> before = ReadFileBytes(Segment::PathFor(name));
    ASSERT_TRUE(before.has_value());
    absl::StatusOr<Segment> opened = Segment::Open(name, Deadline::AfterMs(2000));
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
    EXPECT_THAT(Message(opened.status()), HasSubstr("not an eshm segment"));
    EXPECT_EQ(ReadFileBytes(Segment::PathFor(name)), before);
  }
}

TEST_F(SegmentTest, OpenRejectsAnInconsistentHeader) {
  struct Corruption {
    const char* what;
    std::function<void(SegmentHeader*)> apply;
  };
  const std::vector<Corruption> corruptions = {
      {"header size", [](SegmentHeader* h) { h->header_bytes = 512; }},
      {"capacity not a power of two", [](SegmentHeader* h) { h->ring_capacity[1] = 3000; }},
      {"capacity too small", [](SegmentHeader* h) { h->ring_capacity[0] = 2048; }},
      {"capacity larger than the file", [](SegmentHeader* h) { h->ring_capacity[0] = 8192; }},
      {"ring offset", [](SegmentHeader* h) { h->ring_offset[1] += kFalseSharingRange; }},
      {"first ring offset", [](SegmentHeader* h) { h->ring_offset[0] = 0; }},
      {"segment size", [](SegmentHeader* h) { h->segment_bytes += 4096; }},
      {"zero maximum message", [](SegmentHeader* h) { h->max_message_bytes = 0; }},
      {"maximum message too large", [](SegmentHeader* h) { h->max_message_bytes = 4096; }},
  };
  for (const Corruption& corruption : corruptions) {
    SCOPED_TRACE(corruption.what);
    const std::string name = NewName();
    absl::StatusOr<Segment> created = Segment::Create(name, SmallOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    corruption.apply(created->header());
    const std::optional<std::string> before = ReadFileBytes(Segment::PathFor(name));
    absl::StatusOr<Segment> opened = Segment::Open(name, Deadline::AfterMs(2000));
    ASSERT_FALSE(opened.ok());
    // DataLoss, not FailedPrecondition: the C ABI and Python report it as CORRUPT by the code alone.
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << opened.status();
    EXPECT_THAT(Message(opened.status()), HasSubstr("corrupt"));
    EXPECT_EQ(ReadFileBytes(Segment::PathFor(name)), before);
  }
}

TEST_F(SegmentTest, BadNamesAreInvalidArguments) {
  const std::vector<std::string> bad = {
      "",
      std::string(kMaxSegmentNameLength + 1, 'a'),
      "a/b",
      "/abs",
      "with space",
      std::string("nul\0byte", 8),
      "\xc3\xa9",  // "é" in UTF-8
      "tab\t",
      "star*",
  };
  for (const std::string& name : bad) {
    SCOPED_TRACE(absl::StrCat("name \"", name, "\" (", name.size(), " bytes)"));
    const std::string_view view(name.data(), name.size());  // keeps an embedded NUL
    EXPECT_EQ(Segment::ValidateName(view).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Segment::Create(view, SmallOptions()).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Segment::Open(view, Deadline::AfterMs(100)).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Segment::Unlink(view).code(), absl::StatusCode::kInvalidArgument);
    // Nothing was created under any reading of the name (c_str() stops at the NUL).
    EXPECT_FALSE(PathExists(Segment::PathFor(view).c_str()));
  }
}

TEST_F(SegmentTest, DotNamesStayInsideDevShm) {
  // '.' is an allowed character, so "." and ".." may be valid names, but never directory references: the
  // file is always named eshm_<name> directly in /dev/shm.
  for (const std::string name : {".", ".."}) {
    SCOPED_TRACE(name);
    const absl::Status status = Segment::ValidateName(name);
    if (status.ok()) {
      EXPECT_EQ(Segment::PathFor(name), "/dev/shm/eshm_" + name);
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST_F(SegmentTest, NameOfMaximumLengthWorks) {
  std::string name = name_;
  name.resize(kMaxSegmentNameLength, 'x');
  ASSERT_EQ(name.size(), 250u);
  RemoveAtTearDown(Segment::PathFor(name));
  EXPECT_TRUE(Segment::ValidateName(name).ok());
  absl::StatusOr<Segment> created = Segment::Create(name, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<Segment> opened = Segment::Open(name, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(PathExists(Segment::PathFor(name)));
  EXPECT_TRUE(Segment::Unlink(name).ok());
  EXPECT_FALSE(PathExists(Segment::PathFor(name)));
}

TEST_F(SegmentTest, AllNameCharactersWork) {
  const std::string name = name_ + "-AZaz09._";
  RemoveAtTearDown(Segment::PathFor(name));
  absl::StatusOr<Segment> created = Segment::Create(name, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(PathExists("/dev/shm/eshm_" + name));
}

TEST_F(SegmentTest, ModeIsAppliedExactlyWhateverTheUmask) {
  struct Case {
    mode_t umask;
    std::optional<mode_t> requested;  // nullopt: the default
    mode_t expected;
  };
  const std::vector<Case> cases = {
      {0, std::nullopt, 0600},   {077, std::nullopt, 0600}, {022, std::nullopt, 0600},
      {077, 0640, 0640},         {077, 0666, 0666},         {0, 0640, 0640},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrFormat("umask 0%o, mode %s", c.umask,
                                 c.requested ? absl::StrFormat("0%o", *c.requested) : "default"));
    const std::string name = NewName();
    SegmentOptions options = SmallOptions();
    if (c.requested) options.mode = *c.requested;
    absl::StatusOr<Segment> created;
    {
      ScopedUmask mask(c.umask);
      created = Segment::Create(name, options);
    }
    ASSERT_TRUE(created.ok()) << created.status();
    struct stat st;
    ASSERT_EQ(stat(Segment::PathFor(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, c.expected);
    EXPECT_EQ(st.st_uid, geteuid());
  }
}

TEST_F(SegmentTest, ModesWithoutOwnerAccessOrWithSpecialBitsAreInvalid) {
  for (const mode_t mode : {mode_t{0400}, mode_t{0200}, mode_t{0000}, mode_t{04600}, mode_t{01600}, mode_t{02600}}) {
    SCOPED_TRACE(absl::StrFormat("mode 0%o", mode));
    SegmentOptions options = SmallOptions();
    options.mode = mode;
    EXPECT_EQ(Segment::Create(name_, options).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(PathExists(Path()));
  }
}

TEST_F(SegmentTest, InvalidCapacityIsRejectedAndLeavesNoFile) {
  for (const std::uint64_t capacity : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2048}, std::uint64_t{3000},
                                       std::uint64_t{4095}, std::uint64_t{4097}, std::uint64_t{12288},
                                       kMaxRingCapacity * 2, kMaxRingCapacity + 4096}) {
    for (const bool m2s : {true, false}) {
      SCOPED_TRACE(absl::StrCat(m2s ? "m2s" : "s2m", " capacity ", capacity));
      SegmentOptions options = SmallOptions();
      (m2s ? options.m2s_capacity : options.s2m_capacity) = capacity;
      const absl::Status status = Segment::Create(name_, options).status();
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
      EXPECT_FALSE(PathExists(Path()));
    }
  }
}

TEST_F(SegmentTest, SmallestCapacityWorks) {
  SegmentOptions options;
  options.m2s_capacity = kMinRingCapacity;
  options.s2m_capacity = kMinRingCapacity;
  absl::StatusOr<Segment> created = Segment::Create(name_, options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->size_bytes(), ComputeGeometry(kMinRingCapacity, kMinRingCapacity).segment_bytes);
}

TEST_F(SegmentTest, MaximumMessageMustFitTheSmallerRing) {
  SegmentOptions options;
  options.m2s_capacity = 8192;
  options.s2m_capacity = 4096;
  const std::uint64_t limit = MaxPayloadForCapacity(4096);

  options.max_message_bytes = limit + 1;
  const absl::Status too_large = Segment::Create(name_, options).status();
  EXPECT_EQ(too_large.code(), absl::StatusCode::kInvalidArgument) << too_large;
  EXPECT_FALSE(PathExists(Path()));

  options.max_message_bytes = std::uint64_t{1} << 33;  // would not even fit the header's u32
  EXPECT_EQ(Segment::Create(name_, options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(PathExists(Path()));

  options.max_message_bytes = limit;
  absl::StatusOr<Segment> created = Segment::Create(name_, options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->max_message_bytes(), limit);
  EXPECT_EQ(created->header()->max_message_bytes, limit);
}

TEST_F(SegmentTest, UnlinkRemovesTheNameButNotLiveMappings) {
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(PathExists(Path()));

  EXPECT_TRUE(Segment::Unlink(name_).ok());
  EXPECT_FALSE(PathExists(Path()));
  EXPECT_EQ(Segment::Open(name_, Deadline::AfterMs(100)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Segment::Unlink(name_).code(), absl::StatusCode::kNotFound);

  // Whoever still maps it keeps working.
  RingProducer producer = created->MakeProducer(Direction::kSlaveToMaster);
  RingConsumer consumer = created->MakeConsumer(Direction::kSlaveToMaster);
  ASSERT_TRUE(producer.TryWrite("still here", 10));
  char buffer[16];
  std::size_t size = 0;
  ASSERT_EQ(consumer.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "still here");

  // And the name can be used again.
  absl::StatusOr<Segment> again = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_NE(again->inode(), 0u);
}

// The last bytes of a segment are the trailer's canary, on a page of its own after a gap that is never
// allocated.
TEST_F(SegmentTest, CreateEndsTheSegmentWithTheTrailerAfterAHole) {
  SegmentOptions options;
  options.m2s_capacity = 1 << 20;
  options.s2m_capacity = 1 << 20;
  absl::StatusOr<Segment> created = Segment::Create(name_, options);
  ASSERT_TRUE(created.ok()) << created.status();
  const SegmentGeometry geometry = ComputeGeometry(options.m2s_capacity, options.s2m_capacity);
  EXPECT_EQ(geometry.trailer_offset % kTrailerAlignment, 0u);
  EXPECT_GE(geometry.trailer_offset, geometry.rings_end);
  const std::optional<std::string> bytes = ReadFileBytes(Path());
  ASSERT_TRUE(bytes.has_value());
  ASSERT_EQ(bytes->size(), geometry.segment_bytes);
  std::uint64_t canary = 0;
  std::memcpy(&canary, bytes->data() + bytes->size() - 8, 8);
  EXPECT_EQ(canary, kTrailerCanary);
  EXPECT_EQ(std::string(bytes->data() + bytes->size() - 8, 8), "ESHMEND!");
  struct stat st;
  ASSERT_EQ(stat(Path().c_str(), &st), 0);
  // Allocated: the rings (rounded to pages) and the trailer's page, not the gap.
  const std::uint64_t page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::uint64_t used = (geometry.rings_end + page - 1) / page * page + page;
  EXPECT_LE(static_cast<std::uint64_t>(st.st_blocks) * 512, used);
  EXPECT_TRUE(created->TrailerIntact());
  EXPECT_FALSE(created->CheckTruncation());
  EXPECT_FALSE(created->truncated());
}

TEST_F(SegmentTest, OpenRejectsAFileWithoutTheTrailerAndLeavesItUntouched) {
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  // What truncating the file and growing it back to its size leaves: zeros at the end.
  const std::uint64_t zero = 0;
  ASSERT_EQ(pwrite(created->fd(), &zero, 8, static_cast<off_t>(created->size_bytes() - 8)), 8);
  const std::optional<std::string> before = ReadFileBytes(Path());
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(100));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_THAT(Message(opened.status()), HasSubstr("trailer"));
  EXPECT_THAT(Message(opened.status()), HasSubstr(Path()));
  EXPECT_EQ(ReadFileBytes(Path()), before);
}

// A peer truncates the file to a size inside a page of ring data (no access past the end needed): both
// checks see it, and truncated() stays set.
TEST_F(SegmentTest, TruncationInsideARingPageIsSeenByBothChecks) {
  const SegmentGeometry geometry = ComputeGeometry(16384, 16384);
  SegmentOptions options;
  options.m2s_capacity = 16384;
  options.s2m_capacity = 16384;
  // Inside the m2s ring's data, inside the s2m ring's data, just before the trailer, and inside the trailer.
  for (const std::uint64_t size : {geometry.ring_offset[0] + kRingControlBytes + 5000,
                                   geometry.ring_offset[1] + kRingControlBytes + 100, geometry.rings_end,
                                   geometry.trailer_offset + 64, geometry.segment_bytes - 1}) {
    for (const bool by_fstat : {true, false}) {
      SCOPED_TRACE(absl::StrCat("truncated to ", size, by_fstat ? ", fstat first" : ", canary first"));
      const std::string name = NewName(absl::StrCat(size, by_fstat));
      absl::StatusOr<Segment> created = Segment::Create(name, options);
      ASSERT_TRUE(created.ok()) << created.status();
      absl::StatusOr<Segment> opened = Segment::Open(name, Deadline::AfterMs(5000));
      ASSERT_TRUE(opened.ok()) << opened.status();
      ASSERT_EQ(ftruncate(created->fd(), static_cast<off_t>(size)), 0);
      if (by_fstat) {
        EXPECT_TRUE(opened->CheckTruncation());
      } else {
        EXPECT_FALSE(opened->TrailerIntact());
      }
      EXPECT_TRUE(opened->truncated());
      EXPECT_FALSE(opened->TrailerIntact());
      EXPECT_TRUE(opened->CheckTruncation());
      EXPECT_TRUE(opened->truncated()) << "sticky";
    }
  }
}

// Truncated, then grown back to its size: the size looks right, the canary is gone.
TEST_F(SegmentTest, TruncationUndoneBySizeIsStillSeen) {
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  const off_t size = static_cast<off_t>(created->size_bytes());
  ASSERT_EQ(ftruncate(created->fd(), size - 4), 0);
  ASSERT_EQ(ftruncate(created->fd(), size), 0);
  EXPECT_FALSE(opened->truncated());
  EXPECT_TRUE(opened->CheckTruncation());
  EXPECT_TRUE(opened->truncated());
}

// The SIGBUS guard once had a fixed table of 1,024 mappings: a truncation of the 1,100th segment a process
// had open killed it. In a child, as the failure was a dead process.
TEST_F(SegmentTest, TruncationUnderTheLastOfManyOpenSegmentsIsSurvived) {
  const std::string name = name_;
  eshm_test::Child child = eshm_test::Child::Start([&]() -> int {
    absl::StatusOr<Segment> created = Segment::Create(name, SmallOptions());
    if (!created.ok()) return 2;
    std::vector<Segment> opened;
    for (int i = 0; i < 1200; ++i) {
      absl::StatusOr<Segment> s = Segment::Open(name, Deadline::AfterMs(5000));
      if (!s.ok()) {
        std::fprintf(stderr, "open %d: %s\n", i, s.status().ToString().c_str());
        return 3;
      }
      opened.push_back(*std::move(s));
    }
    if (ftruncate(created->fd(), 0) != 0) return 4;
    // The header's page is gone: touching it raises SIGBUS, which the guard must absorb.
    const Segment& last = opened.back();
    if (last.header()->magic != 0) return 5;  // the mapping now reads as zeros
    if (!last.truncated()) return 6;
    return 0;
  });
  EXPECT_TRUE(eshm_test::WaitForChild(child, absl::Seconds(60)));
}

TEST_F(SegmentTest, SymlinkToASegmentIsNotFollowed) {
  const std::string target = NewName("target");
  absl::StatusOr<Segment> real = Segment::Create(target, SmallOptions());
  ASSERT_TRUE(real.ok()) << real.status();
  const std::optional<std::string> before = ReadFileBytes(Segment::PathFor(target));
  ASSERT_EQ(symlink(Segment::PathFor(target).c_str(), Path().c_str()), 0) << strerror(errno);

  // The link leads to a valid segment, and still is not opened.
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(2000));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_THAT(Message(opened.status()), HasSubstr("symbolic link"));

  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  EXPECT_FALSE(created.ok());
  EXPECT_EQ(ReadFileBytes(Segment::PathFor(target)), before);
  struct stat st;
  ASSERT_EQ(lstat(Path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST_F(SegmentTest, CreateDoesNotFollowADanglingSymlink) {
  // Pointing the link at a path that does not exist yet: following it would create that file.
  const std::string victim = Segment::PathFor(NewName("victim"));
  ASSERT_EQ(symlink(victim.c_str(), Path().c_str()), 0) << strerror(errno);
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  EXPECT_FALSE(created.ok());
  EXPECT_FALSE(PathExists(victim));
  EXPECT_EQ(Segment::Open(name_, Deadline::AfterMs(100)).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(PathExists(victim));
}

TEST_F(SegmentTest, DirectoryAtThePathIsNotASegment) {
  ASSERT_EQ(mkdir(Path().c_str(), 0700), 0) << strerror(errno);
  EXPECT_FALSE(Segment::Open(name_, Deadline::AfterMs(100)).ok());
  EXPECT_EQ(Segment::Create(name_, SmallOptions()).status().code(), absl::StatusCode::kAlreadyExists);
  struct stat st;
  ASSERT_EQ(lstat(Path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

// True if process `pid` has a file in /dev/shm open (a segment it is creating, named or not).
bool HasShmFileOpen(pid_t pid) {
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  DIR* d = opendir(fds.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (const dirent* e = readdir(d)) {
    char target[4096];
    const ssize_t n = readlink(absl::StrCat(fds, "/", e->d_name).c_str(), target, sizeof(target) - 1);
    if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)).substr(0, 9) == "/dev/shm/") found = true;
  }
  closedir(d);
  return found;
}

TEST_F(SegmentTest, CreateShowsNothingAtThePathUntilTheSegmentIsComplete) {
  SegmentOptions options;
  options.m2s_capacity = options.s2m_capacity = std::uint64_t{64} << 20;  // a while to reserve
  const std::uint64_t full = ComputeGeometry(options.m2s_capacity, options.s2m_capacity).segment_bytes;
  const std::string name = name_;
  eshm_test::Child creator = eshm_test::Child::Start([&] { return Segment::Create(name, options).ok() ? 0 : 2; });
  // Whenever anything is at the path, it is the whole segment, its layout version written.
  int incomplete_sightings = 0;
  for (bool done = false; !done;) {
    done = creator.Poll();
    const int fd = open(Path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    std::uint32_t version = 0;
    if (fstat(fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) != full ||
        pread(fd, &version, sizeof(version), offsetof(SegmentHeader, layout_version)) != sizeof(version) ||
        version != kLayoutVersion) {
      ++incomplete_sightings;
    }
    close(fd);
  }
  EXPECT_TRUE(creator.succeeded()) << creator.Describe();
  EXPECT_EQ(incomplete_sightings, 0) << "the path showed an unfinished segment";
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::Past());
  ASSERT_TRUE(opened.ok()) << opened.status();
}

TEST_F(SegmentTest, CreatorKilledWhileCreatingLeavesNothingAtThePath) {
  SegmentOptions options;
  options.m2s_capacity = options.s2m_capacity = std::uint64_t{256} << 20;  // a while to reserve
  const std::string name = name_;
  eshm_test::Child creator = eshm_test::Child::Start([&] {
    (void)Segment::Create(name, options);
    eshm_test::SleepMs(60'000);  // killed by the parent
    return 3;
  });
  const std::int64_t give_up = MonotonicNowNs() + 10'000'000'000;
  while (!HasShmFileOpen(creator.pid()) && MonotonicNowNs() < give_up) {
  }
  ASSERT_TRUE(HasShmFileOpen(creator.pid())) << "the creator never began";
  ASSERT_FALSE(PathExists(Path())) << "the segment was named before it was complete";
  creator.Kill();
  EXPECT_FALSE(PathExists(Path())) << "a killed creator left a file at the path";
  // And the name is free for the next creator.
  absl::StatusOr<Segment> created = Segment::Create(name_, SmallOptions());
  EXPECT_TRUE(created.ok()) << created.status();
}

TEST_F(SegmentTest, OpenWaitsUntilTheDeadlineForTheSegmentToAppear) {
  const std::string name = name_;
  eshm_test::Child creator = eshm_test::Child::Start([&] {
    eshm_test::SleepMs(50);
    absl::StatusOr<Segment> created = Segment::Create(name, SmallOptions());
    if (!created.ok()) return 2;
    eshm_test::SleepMs(60'000);  // keeps it; killed by the parent
    return 3;
  });
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(10'000));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->header()->creator_pid, static_cast<std::uint32_t>(creator.pid()));
  creator.Kill();
  // Nothing appears under another name: NotFound once the deadline passes.
  absl::StatusOr<Segment> missing = Segment::Open(NewName("missing"), Deadline::AfterMs(20));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
}

TEST_F(SegmentTest, OpenerRacingACreatorInAnotherProcessSucceeds) {
  SegmentOptions options;
  options.m2s_capacity = 1 << 20;  // large enough that the creator spends a while filling it in
  options.s2m_capacity = 65536;
  const std::string name = name_;
  eshm_test::Child creator = eshm_test::Child::Start([&] {
    eshm_test::SleepMs(50);
    return Segment::Create(name, options).ok() ? 0 : 2;
  });
  const pid_t creator_pid = creator.pid();

  // Keep opening until the file appears; from then on Open must wait for it, never fail.
  absl::StatusOr<Segment> opened = absl::NotFoundError("not tried");
  const std::int64_t give_up = MonotonicNowNs() + 10'000'000'000;
  while (MonotonicNowNs() < give_up) {
    opened = Segment::Open(name_, Deadline::AfterMs(10'000));
    if (opened.status().code() != absl::StatusCode::kNotFound) break;
  }
  EXPECT_TRUE(eshm_test::WaitForChild(creator, absl::Seconds(10)));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->ring_capacity(Direction::kMasterToSlave), options.m2s_capacity);
  EXPECT_EQ(opened->ring_capacity(Direction::kSlaveToMaster), options.s2m_capacity);
  EXPECT_EQ(opened->header()->creator_pid, static_cast<std::uint32_t>(creator_pid));
}

// ---------------------------------------------------------------------------------------------------------
// Acquire: the decision about the file at a name. Two open file descriptions in one process behave as two
// processes for the role locks, so most of these need no fork.

AcquireOptions Wanting(AcquireRole role, std::uint64_t capacity = 4096) {
  AcquireOptions options;
  options.role = role;
  options.shape.m2s_capacity = options.shape.s2m_capacity = capacity;
  return options;
}

ino_t InodeAt(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST_F(SegmentTest, AcquireCreatesASegmentWhoseCreatorIsItsMaster) {
  for (const AcquireRole role : {AcquireRole::kMaster, AcquireRole::kAuto}) {
    const std::string name = NewName();
    absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name, Wanting(role, 8192));
    ASSERT_TRUE(acquired.ok()) << acquired.status();
    EXPECT_EQ(acquired->role, Role::kMaster);
    EXPECT_EQ(acquired->segment.ring_capacity(Direction::kSlaveToMaster), 8192u);
    EXPECT_EQ(acquired->segment.name_state(), Segment::NameState::kThis);
    EXPECT_EQ(acquired->segment.inode(), InodeAt(Segment::PathFor(name)));
    // The master lock came with the file: nobody else can be master of it.
    absl::StatusOr<Segment> other = Segment::Open(name, Deadline::Past());
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_TRUE(IsRoleLockedByOther(other->fd(), Role::kMaster));
  }
}

TEST_F(SegmentTest, AcquireJoinsALiveMasterOrIsRefusedByIt) {
  absl::StatusOr<AcquiredSegment> master = Segment::Acquire(name_, Wanting(AcquireRole::kMaster));
  ASSERT_TRUE(master.ok()) << master.status();
  master->segment.header()->roles[0].pid.store(4242);
  absl::StatusOr<AcquiredSegment> second = Segment::Acquire(name_, Wanting(AcquireRole::kMaster));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_THAT(Message(second.status()), HasSubstr("live master (pid 4242)"));
  absl::StatusOr<AcquiredSegment> slave = Segment::Acquire(name_, Wanting(AcquireRole::kAuto));
  ASSERT_TRUE(slave.ok()) << slave.status();
  EXPECT_EQ(slave->role, Role::kSlave);
  EXPECT_EQ(slave->segment.inode(), master->segment.inode());
  absl::StatusOr<AcquiredSegment> third = Segment::Acquire(name_, Wanting(AcquireRole::kAuto));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kAlreadyExists) << third.status();
  absl::StatusOr<AcquiredSegment> second_slave = Segment::Acquire(name_, Wanting(AcquireRole::kSlave));
  EXPECT_EQ(second_slave.status().code(), absl::StatusCode::kAlreadyExists) << second_slave.status();
}

TEST_F(SegmentTest, AcquireTakesADeadMastersSegmentOverInPlace) {
  ino_t inode = 0;
  {
    absl::StatusOr<AcquiredSegment> dead = Segment::Acquire(name_, Wanting(AcquireRole::kMaster));
    ASSERT_TRUE(dead.ok()) << dead.status();
    inode = dead->segment.inode();
    RingProducer producer = dead->segment.MakeProducer(Direction::kMasterToSlave);
    ASSERT_TRUE(producer.TryWrite("kept", 4));
  }  // its descriptor closes: the master lock goes, as when the process dies
  absl::StatusOr<AcquiredSegment> next = Segment::Acquire(name_, Wanting(AcquireRole::kMaster));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->role, Role::kMaster);
  EXPECT_EQ(next->segment.inode(), inode);
  RingConsumer consumer = next->segment.MakeConsumer(Direction::kMasterToSlave);
  char buffer[16];
  std::size_t size = 0;
  ASSERT_EQ(consumer.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "kept");
}

TEST_F(SegmentTest, AcquireReplacesADeadMastersSegmentOfAnotherShape) {
  for (const AcquireRole role : {AcquireRole::kMaster, AcquireRole::kAuto}) {
    const std::string name = NewName();
    absl::StatusOr<Segment> old = Segment::Create(name, SmallOptions());  // nobody holds its master lock
    ASSERT_TRUE(old.ok()) << old.status();
    absl::StatusOr<AcquiredSegment> slave = Segment::Acquire(name, Wanting(AcquireRole::kSlave));
    ASSERT_TRUE(slave.ok()) << slave.status();

    absl::StatusOr<AcquiredSegment> next = Segment::Acquire(name, Wanting(role, 16384));
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_EQ(next->role, Role::kMaster);
    EXPECT_EQ(next->segment.ring_capacity(Direction::kMasterToSlave), 16384u);
    EXPECT_NE(next->segment.inode(), old->inode());
    EXPECT_EQ(InodeAt(Segment::PathFor(name)), next->segment.inode());
    // The old segment's slave sees the name point elsewhere (and follows by inode); its mapping still works.
    EXPECT_EQ(slave->segment.name_state(), Segment::NameState::kOther);
    RingProducer producer = old->MakeProducer(Direction::kSlaveToMaster);
    EXPECT_TRUE(producer.TryWrite("still mapped", 12));
  }
}

TEST_F(SegmentTest, AcquireLeavesALiveMastersSegmentOfAnotherShape) {
  absl::StatusOr<AcquiredSegment> master = Segment::Acquire(name_, Wanting(AcquireRole::kMaster, 8192));
  ASSERT_TRUE(master.ok()) << master.status();
  const std::optional<std::string> before = ReadFileBytes(Path());
  absl::StatusOr<AcquiredSegment> refused = Segment::Acquire(name_, Wanting(AcquireRole::kMaster, 16384));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists) << refused.status();
  // AUTO joins it as slave, in its shape.
  absl::StatusOr<AcquiredSegment> slave = Segment::Acquire(name_, Wanting(AcquireRole::kAuto, 16384));
  ASSERT_TRUE(slave.ok()) << slave.status();
  EXPECT_EQ(slave->role, Role::kSlave);
  EXPECT_EQ(slave->segment.inode(), master->segment.inode());
  EXPECT_EQ(slave->segment.ring_capacity(Direction::kMasterToSlave), 8192u);
  EXPECT_EQ(ReadFileBytes(Path()), before);
}

TEST_F(SegmentTest, AcquireRefusesWhatIsNotACompleteSegmentAndLeavesIt) {
  // A dead master's segment of another layout version, and one with a corrupt header: eshm's, but not
  // ones this eshm can prove it may replace.
  const std::string old_version = NewName("old_version");
  {
    absl::StatusOr<Segment> created = Segment::Create(old_version, SmallOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    created->header()->layout_version.store(kLayoutVersion + 1, std::memory_order_release);
  }
  const std::string corrupt = NewName("corrupt");
  {
    absl::StatusOr<Segment> created = Segment::Create(corrupt, SmallOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    created->header()->ring_offset[1] += kFalseSharingRange;
  }
  std::string foreign(8192, '\0');
  std::memcpy(foreign.data(), "FOREIGN!", 8);
  const std::string foreign_name = NewName("foreign");
  ASSERT_TRUE(WriteNewFile(Segment::PathFor(foreign_name), foreign));
  const std::string zeros = NewName("zeros");
  ASSERT_TRUE(WriteNewFile(Segment::PathFor(zeros), std::string(ComputeGeometry(16384, 16384).segment_bytes, '\0')));
  const std::string fifo = NewName("fifo");
  ASSERT_EQ(mkfifo(Segment::PathFor(fifo).c_str(), 0600), 0);

  for (const std::string& name : {old_version, corrupt, foreign_name, zeros, fifo}) {
    const std::string path = Segment::PathFor(name);
    // (Reading a FIFO would block: only its inode is compared.)
    const std::optional<std::string> before = name == fifo ? std::nullopt : ReadFileBytes(path);
    const ino_t inode = InodeAt(path);
    for (const AcquireRole role : {AcquireRole::kMaster, AcquireRole::kAuto, AcquireRole::kSlave}) {
      SCOPED_TRACE(absl::StrCat(name, ", role ", static_cast<int>(role)));
      AcquireOptions options = Wanting(role, 16384);  // another shape than the leftovers'
      options.deadline = Deadline::Infinite();        // refusals never wait
      absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name, options);
      ASSERT_FALSE(acquired.ok());
      EXPECT_EQ(acquired.status().code(),
                name == corrupt ? absl::StatusCode::kDataLoss : absl::StatusCode::kFailedPrecondition)
          << acquired.status();
      EXPECT_THAT(Message(acquired.status()), HasSubstr(path));
      EXPECT_EQ(InodeAt(path), inode) << "replaced or removed";
      if (name != fifo) {
        EXPECT_EQ(ReadFileBytes(path), before);
      }
    }
  }
}

TEST_F(SegmentTest, AcquireAsSlaveWaitsForTheNameUntilItsDeadline) {
  AcquireOptions options = Wanting(AcquireRole::kSlave);
  options.deadline = Deadline::AfterMs(30);
  absl::StatusOr<AcquiredSegment> missing = Segment::Acquire(name_, options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_FALSE(PathExists(Path())) << "a slave never creates";

  const std::string name = name_;
  eshm_test::Child master = eshm_test::Child::Start([&] {
    eshm_test::SleepMs(50);
    absl::StatusOr<AcquiredSegment> created = Segment::Acquire(name, Wanting(AcquireRole::kMaster));
    if (!created.ok()) return 2;
    eshm_test::SleepMs(60'000);  // keeps it; killed by the parent
    return 3;
  });
  options.deadline = Deadline::AfterMs(10'000);
  options.retry_interval_ms = 5;
  absl::StatusOr<AcquiredSegment> slave = Segment::Acquire(name_, options);
  ASSERT_TRUE(slave.ok()) << slave.status();
  EXPECT_EQ(slave->role, Role::kSlave);
  EXPECT_TRUE(IsRoleLockedByOther(slave->segment.fd(), Role::kMaster));
  master.Kill();
}

// A slave waiting for its master's name does not sleep out its retry interval once the name is there: it
// waits on the directory (inotify) and looks as soon as the name appears.
TEST_F(SegmentTest, AcquireAsSlaveLooksAsSoonAsTheNameAppears) {
  AcquireOptions options = Wanting(AcquireRole::kSlave);
  options.deadline = Deadline::AfterMs(20'000);
  options.retry_interval_ms = 5'000;  // polling alone would find the name only after 5 s
  std::atomic<std::int64_t> created_ns{0};
  std::thread master_thread([&] {
    eshm_test::SleepMs(200);
    absl::StatusOr<AcquiredSegment> created = Segment::Acquire(name_, Wanting(AcquireRole::kMaster));
    created_ns.store(MonotonicNowNs());
    ASSERT_TRUE(created.ok()) << created.status();
    eshm_test::SleepMs(1'000);  // holds the master role while the slave attaches
  });
  absl::StatusOr<AcquiredSegment> slave = Segment::Acquire(name_, options);
  const std::int64_t attached_ns = MonotonicNowNs();
  ASSERT_TRUE(slave.ok()) << slave.status();
  EXPECT_EQ(slave->role, Role::kSlave);
  EXPECT_LT(attached_ns - created_ns.load(), std::int64_t{1'000'000'000})
      << "the slave attached " << (attached_ns - created_ns.load()) / 1'000'000 << " ms after the name appeared";
  master_thread.join();
}

TEST_F(SegmentTest, AcquireWaitsForAnotherProcessDecidingAboutTheSegment) {
  absl::StatusOr<Segment> old = Segment::Create(name_, SmallOptions());  // dead master, another shape
  ASSERT_TRUE(old.ok()) << old.status();
  absl::StatusOr<Segment> decider = Segment::Open(name_, Deadline::Past());
  ASSERT_TRUE(decider.ok()) << decider.status();
  ASSERT_TRUE(*TryLockReplace(decider->fd()));
  for (const AcquireRole role : {AcquireRole::kMaster, AcquireRole::kAuto, AcquireRole::kSlave}) {
    SCOPED_TRACE(static_cast<int>(role));
    AcquireOptions options = Wanting(role, 16384);
    options.deadline = Deadline::AfterMs(30);
    absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name_, options);
    EXPECT_EQ(acquired.status().code(), absl::StatusCode::kDeadlineExceeded) << acquired.status();
    EXPECT_THAT(Message(acquired.status()), HasSubstr("replace lock"));
    EXPECT_EQ(InodeAt(Path()), old->inode());
  }
  UnlockReplace(decider->fd());
  absl::StatusOr<AcquiredSegment> replaced = Segment::Acquire(name_, Wanting(AcquireRole::kMaster, 16384));
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_NE(replaced->segment.inode(), old->inode());
}

TEST_F(SegmentTest, AcquireCreateOnlyRefusesATakenName) {
  AcquireOptions options = Wanting(AcquireRole::kMaster);
  options.create_only = true;
  ino_t inode = 0;
  {
    absl::StatusOr<AcquiredSegment> first = Segment::Acquire(name_, options);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->role, Role::kMaster);
    inode = first->segment.inode();
  }  // its master is gone
  // Neither taken over nor replaced.
  for (const std::uint64_t capacity : {std::uint64_t{4096}, std::uint64_t{8192}}) {
    options.shape.m2s_capacity = capacity;
    absl::StatusOr<AcquiredSegment> again = Segment::Acquire(name_, options);
    EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
    EXPECT_EQ(InodeAt(Path()), inode);
  }
  const std::string foreign = NewName("foreign");
  ASSERT_TRUE(WriteNewFile(Segment::PathFor(foreign), "not a segment"));
  EXPECT_EQ(Segment::Acquire(foreign, options).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileBytes(Segment::PathFor(foreign)), "not a segment");
}

TEST_F(SegmentTest, AcquireWithAnInvalidShapeCreatesNothing) {
  for (const AcquireRole role : {AcquireRole::kMaster, AcquireRole::kAuto}) {
    absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name_, Wanting(role, 3000));
    EXPECT_EQ(acquired.status().code(), absl::StatusCode::kInvalidArgument) << acquired.status();
    EXPECT_FALSE(PathExists(Path()));
  }
}

}  // namespace
}  // namespace eshm
