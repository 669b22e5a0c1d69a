#include "eshm/internal/name_watch.h"

#include <poll.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "eshm/segment_name.h"

namespace eshm::internal {

NameWatch::NameWatch(std::string_view file_name) : file_name_(file_name) {
  fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd_ >= 0 && inotify_add_watch(fd_, kSegmentDirectory, IN_CREATE | IN_MOVED_TO) < 0) {
    close(fd_);
    fd_ = -1;
  }
}

NameWatch::~NameWatch() {
  if (fd_ >= 0) close(fd_);
}

bool NameWatch::Appeared() {
  alignas(inotify_event) char buffer[8 * 1024];
  bool appeared = false;
  for (;;) {
    const ssize_t n = read(fd_, buffer, sizeof(buffer));
    if (n <= 0) return appeared;  // EAGAIN: nothing more pending
    for (ssize_t offset = 0; offset < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      // An overflowed queue may have lost our name's event: look.
      if ((event->mask & IN_Q_OVERFLOW) != 0) appeared = true;
      if (event->len != 0 && std::string_view(event->name, strnlen(event->name, event->len)) == file_name_) {
        appeared = true;
      }
    }
  }
}

bool NameWatch::Wait(std::int64_t ns, Deadline deadline) {
  deadline = deadline.Started();
  const std::int64_t end = deadline.CappedAfterNs(ns).monotonic_ns();
  for (;;) {
    const std::int64_t left = end - MonotonicNowNs();
    if (left <= 0) return false;
    if (fd_ < 0) {
      const timespec pause{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
      nanosleep(&pause, nullptr);
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    const int timeout_ms = static_cast<int>(std::min<std::int64_t>((left + 999'999) / 1'000'000, INT_MAX));
    if (poll(&p, 1, timeout_ms) > 0 && Appeared()) return true;
    // Other names' events, a signal, or the time is up: the loop looks at the clock again.
  }
}

}  // namespace eshm::internal
