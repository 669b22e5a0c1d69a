#include "eshm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using ::testing::HasSubstr;

// This file never starts a thread: several tests fork, and umask is process-wide.

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// The whole file, or nullopt if it cannot be read. Does not follow a symlink at `path`.
std::optional<std::string> ReadFileBytes(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return bytes;
}

// Creates a regular file at `path` (which must not exist) holding `bytes`.
bool WriteNewFile(const std::string& path, const std::string& bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  return close(fd) == 0 && ok;
}

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
  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(5000));
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

TEST_F(SegmentTest, OpenOfAnUninitializedFileWaitsForTheDeadlineThenFails) {
  // What a creator that died before writing the version leaves behind: zeros.
  const std::string zeros(kSegmentHeaderBytes, '\0');
  ASSERT_TRUE(WriteNewFile(Path(), zeros));
  const std::int64_t start = MonotonicNowNs();
  const Deadline deadline = Deadline::AfterMs(100);
  absl::StatusOr<Segment> opened = Segment::Open(name_, deadline);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDeadlineExceeded) << opened.status();
  EXPECT_GE(MonotonicNowNs(), deadline.monotonic_ns());
  EXPECT_GE(MonotonicNowNs() - start, 100'000'000);
  EXPECT_EQ(ReadFileBytes(Path()), zeros);
}

TEST_F(SegmentTest, OpenOfAnEmptyFileWaitsForTheDeadlineThenFails) {
  // What a creator that died between shm_open and sizing the file leaves behind.
  ASSERT_TRUE(WriteNewFile(Path(), ""));
  const Deadline deadline = Deadline::AfterMs(100);
  absl::StatusOr<Segment> opened = Segment::Open(name_, deadline);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_GE(MonotonicNowNs(), deadline.monotonic_ns());
  EXPECT_EQ(ReadFileBytes(Path()), "");
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
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
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

TEST_F(SegmentTest, OpenWaitsForACreatorStillWritingTheHeader) {
  // Stage a creator caught between sizing the file and writing the version: a zero file of the right size.
  const std::uint64_t capacity = 8192;
  const SegmentGeometry geometry = ComputeGeometry(capacity, capacity);
  ASSERT_TRUE(WriteNewFile(Path(), std::string(geometry.segment_bytes, '\0')));
  const std::string path = Path();

  // Another process finishes the header after a while, the version last.
  eshm_test::Child creator = eshm_test::Child::Start([&] {
    const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 2;
    void* base = mmap(nullptr, geometry.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return 3;
    eshm_test::SleepMs(50);
    auto* h = static_cast<SegmentHeader*>(base);
    h->magic = kSegmentMagic;
    h->header_bytes = kSegmentHeaderBytes;
    h->segment_bytes = geometry.segment_bytes;
    h->creation_epoch_ns = 42;
    h->ring_offset[0] = geometry.ring_offset[0];
    h->ring_offset[1] = geometry.ring_offset[1];
    h->ring_capacity[0] = capacity;
    h->ring_capacity[1] = capacity;
    h->max_message_bytes = 100;
    h->creator_pid = static_cast<std::uint32_t>(getpid());
    reinterpret_cast<SegmentTrailer*>(static_cast<std::byte*>(base) + geometry.trailer_offset)
        ->canary.store(kTrailerCanary, std::memory_order_relaxed);
    h->layout_version.store(kLayoutVersion, std::memory_order_release);
    return 0;
  });

  absl::StatusOr<Segment> opened = Segment::Open(name_, Deadline::AfterMs(10'000));
  EXPECT_TRUE(eshm_test::WaitForChild(creator, absl::Seconds(10)));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->creation_epoch_ns(), 42u);
  EXPECT_EQ(opened->max_message_bytes(), 100u);
  EXPECT_EQ(opened->ring_capacity(Direction::kSlaveToMaster), capacity);
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

}  // namespace
}  // namespace eshm
