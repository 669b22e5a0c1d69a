// A segment's name, checked once: the segment lives at /dev/shm/eshm_<name>.
//
// A name that a program asks for must stay one file name directly in /dev/shm, whatever bytes a caller (or
// a C or Python caller's string) brings: 1 to kMaxSegmentNameLength characters from [A-Za-z0-9._-], so no
// '/', no NUL and nothing a terminal or a shell would interpret. SegmentName::Create checks that once; every
// function that takes a SegmentName trusts it and checks nothing again.
//
// Anyone who can write to /dev/shm can still put a file of any name there: a tool that lists the directory
// gets names that are not SegmentNames (SegmentName::PathOf builds their paths; see segment_inspection.h).
//
// Threading: a value type (thread-compatible).
#ifndef ESHM_SEGMENT_NAME_H_
#define ESHM_SEGMENT_NAME_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace eshm {

// Where segments live, and how their file names begin: /dev/shm/eshm_<name>.
inline constexpr char kSegmentDirectory[] = "/dev/shm";
inline constexpr char kSegmentFilePrefix[] = "eshm_";

// Longest segment name: the file name eshm_<name> must fit NAME_MAX (255).
inline constexpr std::size_t kMaxSegmentNameLength = 255 - (sizeof(kSegmentFilePrefix) - 1);

class SegmentName {
 public:
  // The name, or InvalidArgument saying what is wrong with it (empty, too long, or which character at
  // which index is not allowed).
  static absl::StatusOr<SegmentName> Create(std::string_view name);

  // "/dev/shm/eshm_<name>" for any name, checked or not: for messages, and for files found in the directory.
  static std::string PathOf(std::string_view name);

  const std::string& name() const { return name_; }
  // "/dev/shm/eshm_<name>".
  const std::string& path() const { return path_; }
  // "eshm_<name>": the file's name in kSegmentDirectory.
  std::string_view file_name() const {
    return std::string_view(path_).substr(sizeof(kSegmentDirectory));  // past the directory and its '/'
  }

 private:
  explicit SegmentName(std::string_view name);

  std::string name_;
  std::string path_;
};

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_SEGMENT_NAME_H_
