// A progress line on stderr during long runs: rewritten in place when stderr is a terminal, otherwise a
// plain line at most every few seconds (logs stay short). Never on stdout, which may carry the JSON.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_PROGRESS_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_PROGRESS_H_

#include <cstdint>
#include <string>

namespace eshm_bench {

class Progress {
 public:
  explicit Progress(int total_steps);
  // Announces the step about to run.
  void Step(const std::string& what);
  // One more step than announced (a repetition run again).
  void AddStep() { ++total_; }
  // Prints a message on its own line (an error, say) without garbling the progress line.
  void Note(const std::string& message);
  // Clears the progress line.
  void Done();

 private:
  int total_;
  int done_ = 0;
  const bool tty_;
  const std::int64_t start_ns_;
  std::int64_t last_plain_ns_ = -1;
  bool line_shown_ = false;
};

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_PROGRESS_H_
