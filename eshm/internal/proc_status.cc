#include "eshm/internal/proc_status.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eshm::internal {

std::uint64_t OwnPidNamespace() {
  static const std::uint64_t ns = [] {
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
  }();
  return ns;
}

int OpenThreadStatus(pid_t pid, pid_t tid) {
  if (pid <= 0 || tid <= 0) return -1;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/status", static_cast<int>(pid), static_cast<int>(tid));
  return open(path, O_RDONLY | O_CLOEXEC);
}

bool ReadVoluntarySwitches(int status_fd, std::uint64_t* switches) {
  char buffer[4096];
  const ssize_t n = pread(status_fd, buffer, sizeof(buffer) - 1, 0);
  if (n <= 0) return false;
  buffer[n] = '\0';
  static constexpr char kKey[] = "\nvoluntary_ctxt_switches:";
  const char* at = strstr(buffer, kKey);
  if (at == nullptr) return false;
  const char* digits = at + sizeof(kKey) - 1;
  char* end = nullptr;
  const unsigned long long value = strtoull(digits, &end, 10);
  if (end == digits) return false;
  *switches = value;
  return true;
}

}  // namespace eshm::internal
