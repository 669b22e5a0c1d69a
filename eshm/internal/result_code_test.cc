#include "eshm/internal/result_code.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"

namespace eshm::internal {
namespace {

std::string NewName(const std::string& tag) {
  static int counter = 0;
  return absl::StrCat("result_code_test_", getpid(), "_", counter++, "_", tag);
}

SegmentOptions Small() {
  SegmentOptions o;
  o.m2s_capacity = o.s2m_capacity = kMinRingCapacity;
  return o;
}

// The code comes from the status code alone: message text never changes it (a file name, a peer's words
// or a payload could hold any text).
TEST(ResultCodeTest, TheMessageNeverChangesTheCode) {
  for (const char* text : {"", "corrupt", "the segment is corrupt", "closed", "timeout", "recheck"}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ResultCodeFor(absl::FailedPreconditionError(text), Operation::kOpen, ChannelRole::kMaster),
              ESHM_ERROR_INCOMPATIBLE);
    EXPECT_EQ(ResultCodeFor(absl::DataLossError(text), Operation::kOpen, ChannelRole::kMaster), ESHM_ERROR_CORRUPT);
    EXPECT_EQ(ResultCodeFor(absl::FailedPreconditionError(text), Operation::kRead, ChannelRole::kSlave),
              ESHM_ERROR_CLOSED);
    EXPECT_EQ(ResultCodeFor(absl::AbortedError(text), Operation::kRead, ChannelRole::kSlave), ESHM_ERROR_INTERNAL);
  }
}

TEST(ResultCodeTest, EachCallsMeaning) {
  EXPECT_EQ(ResultCodeFor(absl::OkStatus(), Operation::kWrite, ChannelRole::kMaster), ESHM_SUCCESS);
  EXPECT_EQ(ResultCodeFor(absl::InvalidArgumentError("x"), Operation::kWrite, ChannelRole::kMaster),
            ESHM_ERROR_MESSAGE_TOO_LARGE);
  EXPECT_EQ(ResultCodeFor(absl::InvalidArgumentError("x"), Operation::kRead, ChannelRole::kMaster),
            ESHM_ERROR_INVALID_PARAM);
  EXPECT_EQ(ResultCodeFor(absl::ResourceExhaustedError("x"), Operation::kWrite, ChannelRole::kMaster),
            ESHM_ERROR_RING_FULL);
  EXPECT_EQ(ResultCodeFor(absl::ResourceExhaustedError("x"), Operation::kRead, ChannelRole::kMaster),
            ESHM_ERROR_NO_DATA);
  EXPECT_EQ(ResultCodeFor(absl::ResourceExhaustedError("x"), Operation::kOpen, ChannelRole::kMaster),
            ESHM_ERROR_NO_SPACE);
  // The stale one is the peer.
  EXPECT_EQ(ResultCodeFor(absl::UnavailableError("x"), Operation::kRead, ChannelRole::kMaster),
            ESHM_ERROR_SLAVE_STALE);
  EXPECT_EQ(ResultCodeFor(absl::UnavailableError("x"), Operation::kWrite, ChannelRole::kSlave),
            ESHM_ERROR_MASTER_STALE);
  EXPECT_EQ(ResultCodeFor(absl::InternalError("x"), Operation::kOpen, ChannelRole::kSlave), ESHM_ERROR_SHM_ATTACH);
  EXPECT_EQ(ResultCodeFor(absl::InternalError("x"), Operation::kOpen, ChannelRole::kAuto), ESHM_ERROR_SHM_CREATE);
}

// What the engine really returns for files it refuses, mapped: a header that contradicts itself is
// CORRUPT, a file of another size than its header says (or not a regular file) is INCOMPATIBLE.
TEST(ResultCodeTest, RefusedFilesMapByWhatIsWrongWithThem) {
  const std::string corrupt = NewName("corrupt");
  {
    absl::StatusOr<Segment> created = Segment::Create(corrupt, Small());
    ASSERT_TRUE(created.ok()) << created.status();
    created->header()->ring_offset[1] += kFalseSharingRange;
  }
  absl::StatusOr<Segment> opened = Segment::Open(corrupt, Deadline::AfterMs(100));
  EXPECT_EQ(ResultCodeFor(opened.status(), Operation::kOpen, ChannelRole::kSlave), ESHM_ERROR_CORRUPT)
      << opened.status();
  ASSERT_TRUE(Segment::Unlink(corrupt).ok());

  const std::string resized = NewName("resized");
  {
    absl::StatusOr<Segment> created = Segment::Create(resized, Small());
    ASSERT_TRUE(created.ok()) << created.status();
  }
  ASSERT_EQ(truncate(Segment::PathFor(resized).c_str(), 1 << 20), 0);
  opened = Segment::Open(resized, Deadline::AfterMs(100));
  EXPECT_EQ(ResultCodeFor(opened.status(), Operation::kOpen, ChannelRole::kSlave), ESHM_ERROR_INCOMPATIBLE)
      << opened.status();
  ASSERT_TRUE(Segment::Unlink(resized).ok());

  const std::string fifo = NewName("fifo");
  ASSERT_EQ(mkfifo(Segment::PathFor(fifo).c_str(), 0600), 0);
  opened = Segment::Open(fifo, Deadline::AfterMs(100));
  EXPECT_EQ(ResultCodeFor(opened.status(), Operation::kOpen, ChannelRole::kMaster), ESHM_ERROR_INCOMPATIBLE)
      << opened.status();
  ASSERT_TRUE(Segment::Unlink(fifo).ok());
}

}  // namespace
}  // namespace eshm::internal
