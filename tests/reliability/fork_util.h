// Copy of tests/fork_util.h (its target is private to //tests).
// Helpers for tests that fork: run a child with a watchdog, name segments uniquely, and tell when a
// thread or process is asleep in a given system call.
//
// Children never return into GoogleTest: they run a body and leave with _exit(code), so a failure is an
// exit code (plus whatever the body printed to stderr), and no atexit handler, gtest report or sanitizer
// leak check of the parent's state runs twice. Fork only while the parent has a single thread.
#ifndef ESHM_TESTS_RELIABILITY_FORK_UTIL_H_
#define ESHM_TESTS_RELIABILITY_FORK_UTIL_H_

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace eshm_test {

inline std::int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline void SleepMs(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1'000'000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// A segment name no other test (in this process or a concurrent one) uses: pid, a counter, the test name.
inline std::string UniqueSegmentName(const std::string& tag = "") {
  static std::atomic<int> counter{0};
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info != nullptr ? info->name() : "none";
  for (char& c : test) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) c = '_';
  }
  // Leave room for a tag and stay well inside the 250-character limit.
  if (test.size() > 120) test.resize(120);
  return absl::StrCat("eshmtest_", getpid(), "_", counter.fetch_add(1), "_", test, tag.empty() ? "" : "_", tag);
}

// A forked child process, killed and reaped on destruction if still running, so an early ASSERT return in
// the parent never leaves it behind.
class Child {
 public:
  // Runs `body()` (returning an exit code) in a new process. The child dies with the parent.
  template <typename Body>
  static Child Start(Body&& body) {
    std::fflush(nullptr);  // or buffered output would be printed twice
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(120);  // the parent died before prctl took effect
      const int code = body();
      _exit(code);
    }
    return Child(pid);
  }

  Child(Child&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)), status_(other.status_), reaped_(other.reaped_), killed_(other.killed_) {}
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child() { Kill(); }

  pid_t pid() const { return pid_; }

  // Reaps the child if it has exited. True once reaped.
  bool Poll() {
    if (pid_ <= 0) return true;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      status_ = r == pid_ ? status : -1;
      pid_ = -1;
      reaped_ = true;
      return true;
    }
    return false;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
    killed_ = true;
    pid_ = -1;
    reaped_ = true;
  }

  bool succeeded() const { return reaped_ && !killed_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }

  std::string Describe() const {
    if (!reaped_) return "still running";
    if (killed_) return "killed by the watchdog";
    if (status_ == -1) return "not started (fork failed) or lost (waitpid failed)";
    if (WIFEXITED(status_)) return absl::StrCat("exited with code ", WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) return absl::StrCat("killed by signal ", WTERMSIG(status_));
    return absl::StrCat("ended with wait status ", status_);
  }

 private:
  // A failed fork is a child that is already reaped and did not succeed.
  explicit Child(pid_t pid) : pid_(pid), status_(pid > 0 ? 0 : -1), reaped_(pid <= 0) {}

  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  bool killed_ = false;
};

// Waits for every child to exit, up to `timeout` in all. As soon as one fails (or time runs out) the others
// are killed: their peer is gone, so they would only wait for their own deadlines.
inline ::testing::AssertionResult WaitForChildren(std::initializer_list<Child*> children, absl::Duration timeout) {
  const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(timeout);
  bool failed = false;
  for (;;) {
    bool all_done = true;
    for (Child* child : children) {
      if (!child->Poll()) {
        all_done = false;
      } else if (!child->succeeded()) {
        failed = true;
      }
    }
    if (all_done) break;
    if (failed || NowNs() >= give_up) {
      for (Child* child : children) child->Kill();
      break;
    }
    SleepMs(2);
  }
  std::string report;
  bool ok = true;
  int index = 0;
  for (Child* child : children) {
    if (!child->succeeded()) ok = false;
    absl::StrAppend(&report, index == 0 ? "" : "; ", "child ", index, ": ", child->Describe());
    ++index;
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << report;
}

inline ::testing::AssertionResult WaitForChild(Child& child, absl::Duration timeout) {
  return WaitForChildren({&child}, timeout);
}

enum class BlockedState { kBlocked, kTimedOut, kUnsupported };

// Waits until the task whose /proc "syscall" file is `path` (/proc/self/task/<tid>/syscall for a thread,
// /proc/<pid>/syscall for a child's main thread) is blocked in system call `number` with first argument
// `first_arg`. kUnsupported if the kernel does not offer the file; callers then fall back to a short sleep.
inline BlockedState WaitUntilBlockedIn(const std::string& path, long number, std::uintptr_t first_arg,
                                       absl::Duration timeout) {
  const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(timeout);
  for (;;) {
    std::ifstream file(path);
    if (!file) return BlockedState::kUnsupported;
    std::string nr_text, arg_text;
    file >> nr_text >> arg_text;
    if (nr_text.empty()) return BlockedState::kUnsupported;  // e.g. no permission to read it
    // A running task shows "running"; a blocked one "<nr> 0x<arg1> ...".
    if (nr_text != "running" && !arg_text.empty()) {
      char* end = nullptr;
      const long nr = std::strtol(nr_text.c_str(), &end, 10);
      const unsigned long long arg = std::strtoull(arg_text.c_str(), nullptr, 16);
      if (*end == '\0' && nr == number && arg == first_arg) return BlockedState::kBlocked;
    }
    if (NowNs() >= give_up) return BlockedState::kTimedOut;
    SleepMs(1);
  }
}

}  // namespace eshm_test

#endif  // ESHM_TESTS_RELIABILITY_FORK_UTIL_H_
