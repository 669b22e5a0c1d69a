#include "benchmarks/eshm_bench/progress.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "benchmarks/eshm_bench/clock.h"

namespace eshm_bench {

namespace {
constexpr std::int64_t kPlainIntervalNs = 5'000'000'000;
std::int64_t NowNs() { return static_cast<std::int64_t>(Clock::MonotonicNs()); }
}  // namespace

Progress::Progress(int total_steps) : total_(total_steps), tty_(isatty(STDERR_FILENO) == 1), start_ns_(NowNs()) {}

void Progress::Step(const std::string& what) {
  ++done_;
  const std::int64_t now = NowNs();
  const int elapsed_s = static_cast<int>((now - start_ns_) / 1'000'000'000);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K[%d/%d %d:%02d] %s", done_, total_, elapsed_s / 60, elapsed_s % 60, what.c_str());
    line_shown_ = true;
  } else if (last_plain_ns_ < 0 || now - last_plain_ns_ >= kPlainIntervalNs) {
    std::fprintf(stderr, "eshm-bench: [%d/%d, %d s] %s\n", done_, total_, elapsed_s, what.c_str());
    last_plain_ns_ = now;
  }
  std::fflush(stderr);
}

void Progress::Note(const std::string& message) {
  if (tty_ && line_shown_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "eshm-bench: %s\n", message.c_str());
  line_shown_ = false;
  std::fflush(stderr);
}

void Progress::Done() {
  if (tty_ && line_shown_) std::fprintf(stderr, "\r\033[K");
  line_shown_ = false;
  std::fflush(stderr);
}

}  // namespace eshm_bench
