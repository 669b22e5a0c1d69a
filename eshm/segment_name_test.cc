#include "eshm/segment_name.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

using ::testing::HasSubstr;

TEST(SegmentNameTest, ValidNameKnowsItsPathAndFileName) {
  absl::StatusOr<SegmentName> name = SegmentName::Create("orders-1.v2_AZ");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->name(), "orders-1.v2_AZ");
  EXPECT_EQ(name->path(), "/dev/shm/eshm_orders-1.v2_AZ");
  EXPECT_EQ(name->file_name(), "eshm_orders-1.v2_AZ");
}

TEST(SegmentNameTest, EveryAllowedCharacterIsAccepted) {
  std::string all;
  for (char c = 'a'; c <= 'z'; ++c) all += c;
  for (char c = 'A'; c <= 'Z'; ++c) all += c;
  for (char c = '0'; c <= '9'; ++c) all += c;
  all += "._-";
  absl::StatusOr<SegmentName> name = SegmentName::Create(all);
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->name(), all);
}

TEST(SegmentNameTest, NameOfTheMaximumLengthIsAcceptedAndOneMoreIsNot) {
  ASSERT_EQ(kMaxSegmentNameLength, 250u);
  EXPECT_TRUE(SegmentName::Create(std::string(kMaxSegmentNameLength, 'x')).ok());
  const absl::StatusOr<SegmentName> too_long = SegmentName::Create(std::string(kMaxSegmentNameLength + 1, 'x'));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_long.status().message()), HasSubstr("251 characters long; the limit is 250"));
}

TEST(SegmentNameTest, EmptyNameIsRefused) {
  const absl::StatusOr<SegmentName> empty = SegmentName::Create("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("segment name is empty"));
}

TEST(SegmentNameTest, RefusedCharactersAreNamedWithTheirIndex) {
  struct Case {
    std::string name;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"a/b", "character 0x2f at index 1"},
      {"/abs", "character 0x2f at index 0"},
      {"../up", "character 0x2f at index 2"},
      {"with space", "character 0x20 at index 4"},
      {std::string("nul\0byte", 8), "character 0x00 at index 3"},
      {"\xc3\xa9", "character 0xc3 at index 0"},  // "é" in UTF-8
      {"tab\t", "character 0x09 at index 3"},
      {"esc\x1b[31m", "character 0x1b at index 3"},
      {"star*", "character 0x2a at index 4"},
      {"back\\slash", "character 0x5c at index 4"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.name.size(), " bytes: ", c.says));
    const absl::StatusOr<SegmentName> name = SegmentName::Create(std::string_view(c.name.data(), c.name.size()));
    EXPECT_EQ(name.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(name.status().message()), HasSubstr(c.says));
  }
}

TEST(SegmentNameTest, DotNamesAreFileNamesInsideDevShm) {
  // '.' is allowed, so "." and ".." are names; the prefix makes them ordinary file names in /dev/shm.
  for (const std::string text : {".", ".."}) {
    absl::StatusOr<SegmentName> name = SegmentName::Create(text);
    ASSERT_TRUE(name.ok()) << name.status();
    EXPECT_EQ(name->path(), "/dev/shm/eshm_" + text);
  }
}

TEST(SegmentNameTest, PathOfBuildsThePathOfAnyName) {
  EXPECT_EQ(SegmentName::PathOf("abc"), "/dev/shm/eshm_abc");
  EXPECT_EQ(SegmentName::PathOf("esc\x1b"), "/dev/shm/eshm_esc\x1b");  // listed, never asked for: unchecked
}

TEST(SegmentNameTest, CopiesKeepNameAndPath) {
  absl::StatusOr<SegmentName> name = SegmentName::Create("copied");
  ASSERT_TRUE(name.ok());
  const SegmentName copy = *name;
  EXPECT_EQ(copy.name(), "copied");
  EXPECT_EQ(copy.path(), "/dev/shm/eshm_copied");
  EXPECT_EQ(copy.file_name(), "eshm_copied");
}

}  // namespace
}  // namespace eshm
