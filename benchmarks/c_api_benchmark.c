/* c_api_benchmark: the cost of one eshm_write + eshm_try_read through the C ABI, on one thread.
 *
 * A master and a slave handle of one channel live in this process; a single thread writes a message on
 * the master and reads it back on the slave, so the ring never fills and nothing ever waits: what is
 * measured is the per-call cost of the C layer and the channel (argument checks, per-side serialization,
 * the ring). Each repetition times `--messages` round trips and prints ns per message; the median of the
 * repetitions is printed last.
 *
 *   bazel build --config=bench //benchmarks:c_api_benchmark
 *   bazel-bin/benchmarks/c_api_benchmark [messages=2000000] [repetitions=5] [bytes=64]
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eshm/eshm.h"

static int64_t NowNs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int CompareDoubles(const void* a, const void* b) {
  const double x = *(const double*)a;
  const double y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  const long messages = argc > 1 ? atol(argv[1]) : 2000000;
  const int repetitions = argc > 2 ? atoi(argv[2]) : 5;
  const size_t bytes = argc > 3 ? (size_t)atol(argv[3]) : 64;
  if (messages <= 0 || repetitions <= 0 || repetitions > 100 || bytes == 0 || bytes > 4096) {
    fprintf(stderr, "usage: %s [messages>0] [repetitions 1..100] [bytes 1..4096]\n", argv[0]);
    return 2;
  }
  char name[64];
  snprintf(name, sizeof name, "c_api_bench_%d", (int)getpid());
  eshm_config cfg;
  eshm_config_init(&cfg);
  cfg.role = ESHM_ROLE_MASTER;
  eshm_handle* master = NULL;
  eshm_handle* slave = NULL;
  if (eshm_open(name, &cfg, &master) != ESHM_SUCCESS) {
    fprintf(stderr, "eshm_open (master): %s\n", eshm_last_error());
    return 1;
  }
  cfg.role = ESHM_ROLE_SLAVE;
  if (eshm_open(name, &cfg, &slave) != ESHM_SUCCESS) {
    fprintf(stderr, "eshm_open (slave): %s\n", eshm_last_error());
    eshm_close(master);
    return 1;
  }
  char message[4096];
  char buffer[4096];
  memset(message, 'm', sizeof message);
  double results[100];
  int failed = 0;
  for (int r = 0; r < repetitions && !failed; ++r) {
    const int64_t start = NowNs();
    for (long i = 0; i < messages; ++i) {
      size_t n = 0;
      memcpy(message, &i, sizeof i);
      if (eshm_write(master, message, bytes, -1) != ESHM_SUCCESS ||
          eshm_try_read(slave, buffer, sizeof buffer, &n) != ESHM_SUCCESS || n != bytes) {
        fprintf(stderr, "message %ld: %s\n", i, eshm_last_error());
        failed = 1;
        break;
      }
    }
    results[r] = (double)(NowNs() - start) / (double)messages;
    printf("repetition %d: %.1f ns/message (eshm_write + eshm_try_read, %zu bytes)\n", r + 1, results[r], bytes);
  }
  eshm_close(slave);
  eshm_close(master);
  if (failed) return 1;
  qsort(results, (size_t)repetitions, sizeof results[0], CompareDoubles);
  printf("median: %.1f ns/message over %d repetitions of %ld messages\n", results[repetitions / 2], repetitions,
         messages);
  return 0;
}
