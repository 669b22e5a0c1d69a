#include "tools/bridge/window_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tools/bridge/crc32c.h"

namespace eshm::bridge {
namespace {

class WindowFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    path_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/window_file_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    unlink(path_.c_str());
  }
  void TearDown() override { unlink(path_.c_str()); }

  static std::vector<std::byte> Message(std::uint64_t seq) {
    std::vector<std::byte> message(1 + seq % 37);
    for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<std::byte>(seq * 31 + i);
    return message;
  }
  static std::uint64_t Append(WindowFile& file, std::uint64_t seq) {
    const std::vector<std::byte> message = Message(seq);
    return file.Append(message, Crc32c(message));
  }
  static void ExpectEntry(const WindowFile& file, const WindowFile::Entry& entry) {
    std::vector<std::byte> out(entry.length);
    ASSERT_TRUE(file.Read(entry, out).ok());
    EXPECT_EQ(out, Message(entry.seq));
  }
  // Overwrites `size` bytes at `offset` of the file.
  void Poke(off_t offset, const void* bytes, std::size_t size) {
    const int fd = open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, bytes, size, offset), static_cast<ssize_t>(size));
    close(fd);
  }

  std::string path_;
};

TEST_F(WindowFileTest, ReopenKeepsTheWindowAndThePosition) {
  std::uint64_t stream = 0;
  {
    absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 4096);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_TRUE(file->created());
    stream = file->stream_id();
    EXPECT_NE(stream, 0u);
    for (std::uint64_t seq = 1; seq <= 10; ++seq) EXPECT_EQ(Append(*file, seq), seq);
    file->Acknowledge(4);
    file->AdoptFarStream(77, 5);
    file->SetDelivered(9);
  }
  absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 999999);  // an existing file keeps its capacity
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE(file->created());
  EXPECT_EQ(file->capacity(), 4096u);
  EXPECT_EQ(file->stream_id(), stream);
  EXPECT_EQ(file->oldest_seq(), 5u);
  EXPECT_EQ(file->next_seq(), 11u);
  ASSERT_EQ(file->entries().size(), 6u);
  for (const WindowFile::Entry& entry : file->entries()) ExpectEntry(*file, entry);
  EXPECT_EQ(file->far_stream_id(), 77u);
  EXPECT_EQ(file->far_delivered_seq(), 9u);
}

TEST_F(WindowFileTest, FullWindowPushesBackAndWrapsAround) {
  absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 256);
  ASSERT_TRUE(file.ok()) << file.status();
  std::uint64_t next = 1;
  for (int round = 0; round < 200; ++round) {
    while (file->Fits(Message(next).size())) Append(*file, next++);
    EXPECT_LE(file->used_bytes(), file->capacity());
    EXPECT_FALSE(file->entries().empty());
    file->Acknowledge(file->oldest_seq() + 1);  // acknowledge two
  }
  EXPECT_GT(next, 350u);  // about 15 KiB through a 256-byte log: wrapped around many times
  file = absl::UnknownError("closed");  // releases the file and its lock
  absl::StatusOr<WindowFile> reopened = WindowFile::Open(path_, 256);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->next_seq(), next);
  for (const WindowFile::Entry& entry : reopened->entries()) ExpectEntry(*reopened, entry);
  EXPECT_FALSE(reopened->Fits(300));  // larger than the window: never fits
}

TEST_F(WindowFileTest, KillBetweenTailAndNextSeqLosesNothing) {
  {
    absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 4096);
    ASSERT_TRUE(file.ok());
    for (std::uint64_t seq = 1; seq <= 3; ++seq) Append(*file, seq);
  }
  // The tail covers record 3 but next_seq still says 3, as if the bridge died between the two stores.
  const std::uint64_t stale_next = 3;
  Poke(48, &stale_next, 8);
  absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 4096);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->next_seq(), 4u);
  EXPECT_EQ(file->entries().size(), 3u);
}

TEST_F(WindowFileTest, DamagedFilesAreRefusedWithTheirName) {
  {
    absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 4096);
    ASSERT_TRUE(file.ok());
    for (std::uint64_t seq = 1; seq <= 3; ++seq) Append(*file, seq);
  }
  const std::byte flipped{0x5a};
  Poke(128 + 16, &flipped, 1);  // the first record's payload
  absl::StatusOr<WindowFile> file = WindowFile::Open(path_, 4096);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(file.status().message().find(path_), std::string::npos) << file.status();
  EXPECT_NE(file.status().message().find("move"), std::string::npos) << file.status();

  const std::uint64_t huge_tail = 1 << 20;  // positions beyond the capacity
  Poke(40, &huge_tail, 8);
  EXPECT_EQ(WindowFile::Open(path_, 4096).status().code(), absl::StatusCode::kDataLoss);

  const char foreign[] = "not a state file";
  Poke(0, foreign, sizeof(foreign));
  EXPECT_EQ(WindowFile::Open(path_, 4096).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(WindowFileTest, OneBridgePerFile) {
  absl::StatusOr<WindowFile> first = WindowFile::Open(path_, 4096);
  ASSERT_TRUE(first.ok());
  absl::StatusOr<WindowFile> second = WindowFile::Open(path_, 4096);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
}

}  // namespace
}  // namespace eshm::bridge
