#include "eshm/segment_name.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace eshm {

absl::StatusOr<SegmentName> SegmentName::Create(std::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("segment name is empty: use 1 to 250 characters from [A-Za-z0-9._-]");
  }
  if (name.size() > kMaxSegmentNameLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "segment name is %d characters long; the limit is %d (the file /dev/shm/eshm_<name> must fit NAME_MAX)",
        name.size(), kMaxSegmentNameLength));
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "segment name has character 0x%02x at index %d; only [A-Za-z0-9._-] are allowed (no '/', spaces, "
          "NUL or non-ASCII)",
          c, i));
    }
  }
  return SegmentName(name);
}

std::string SegmentName::PathOf(std::string_view name) {
  return absl::StrCat(kSegmentDirectory, "/", kSegmentFilePrefix, absl::string_view(name.data(), name.size()));
}

SegmentName::SegmentName(std::string_view name) : name_(name), path_(PathOf(name)) {}

}  // namespace eshm
