/* The checks of the C ABI tests (C11): each failure prints the file, line, what was expected and
 * eshm_last_error(), and counts; the test's main exits non-zero if g_failures is not 0. Counters are atomic:
 * tests check from several threads. Include once per test binary. */
#ifndef ESHM_TESTS_C_CHECK_H_
#define ESHM_TESTS_C_CHECK_H_

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "eshm/eshm.h"

static atomic_int g_failures;
static atomic_int g_checks;

static void Check(int ok, const char* file, int line, const char* fmt, ...) {
  ++g_checks;
  if (ok) return;
  ++g_failures;
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n    eshm_last_error(): %s\n", eshm_last_error());
}

#define CHECK(cond, ...) Check((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

/* The call must return `want`; on an error, eshm_last_error() must be non-empty. */
#define CHECK_RC(call, want)                                                                          \
  do {                                                                                                \
    const int rc_ = (call);                                                                           \
    const int want_ = (want);                                                                         \
    Check(rc_ == want_, __FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", #call, rc_,      \
          eshm_strerror(rc_), want_, eshm_strerror(want_));                                           \
    if (rc_ == want_ && want_ < 0) {                                                                  \
      Check(eshm_last_error()[0] != '\0', __FILE__, __LINE__, "%s: eshm_last_error() is empty", #call); \
    }                                                                                                 \
  } while (0)

/* An error (`want`) whose eshm_last_error() mentions `word` (the argument or field it is about). */
#define CHECK_ERR_MENTIONS(call, want, word)                                                               \
  do {                                                                                                     \
    const int rc_ = (call);                                                                                \
    Check(rc_ == (want), __FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", #call, rc_,          \
          eshm_strerror(rc_), (want), eshm_strerror(want));                                                \
    Check(strstr(eshm_last_error(), (word)) != NULL, __FILE__, __LINE__,                                   \
          "%s: eshm_last_error() should mention \"%s\"", #call, (word));                                    \
  } while (0)

#endif  /* ESHM_TESTS_C_CHECK_H_ */
