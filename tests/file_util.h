// Files for tests that put things at segment paths: read one whole, create one with given bytes.
#ifndef ESHM_TESTS_FILE_UTIL_H_
#define ESHM_TESTS_FILE_UTIL_H_

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <optional>
#include <string>

namespace eshm_test {

// The whole file, or nullopt if it cannot be read. Never follows a symlink at `path`, never blocks on a FIFO.
inline std::optional<std::string> ReadFileBytes(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
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

// Creates a regular file at `path`, which must not exist, holding `bytes` (mode 0600).
inline bool WriteNewFile(const std::string& path, const std::string& bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = bytes.empty() || write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  return close(fd) == 0 && ok;
}

}  // namespace eshm_test

#endif  // ESHM_TESTS_FILE_UTIL_H_
