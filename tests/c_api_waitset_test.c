/* Tests of the wait sets of the C ABI (eshm_waitset_* in eshm/eshm.h), in C11 as a C user would write them.
 * Masters and slaves live in this one process, on two handles of each name; other threads write, read,
 * wake and close while a thread waits.
 *
 *  - TestMisuse: every bad call, with its code and a message that names the problem, and nothing changed.
 *  - TestReadableOne, TestReadableMany (300 members, more than one kernel sleep takes), TestWritable,
 *    TestTimeout, TestWake, TestPeerChanged: what a wait reports, and when.
 *  - TestCloseDuringWait: eshm_close of a member on another thread ends a wait at once, which reports the
 *    member ESHM_WAIT_CLOSED and never touches it again (a use after free would stop ASan); it is removed
 *    by its dangling pointer.
 *  - TestBusySideDoesNotStall: a thread blocked in eshm_read on member A does not keep a message on member
 *    B from being reported; an eshm_read on another thread gets the side a wait holds.
 *  - TestMoreReadyThanCapacity: every ready member is reported across waits, peer changes are not lost.
 *
 * A watchdog thread fails the test (and removes its segments) if it runs longer than kWatchdogSeconds: a
 * wait that never ends becomes a failure. Exits non-zero if any check fails. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eshm/eshm.h"
#include "tests/c_check.h"

/* The ABI as a C compiler lays it out (c_api.cc asserts the same on the C++ side). */
_Static_assert(sizeof(eshm_ready) == sizeof(void*) + 8, "eshm_ready layout");
_Static_assert(offsetof(eshm_ready, events) == sizeof(void*), "eshm_ready layout");
_Static_assert(offsetof(eshm_ready, reserved0) == sizeof(void*) + 4, "eshm_ready layout");
_Static_assert(ESHM_WAIT_READABLE == 1u && ESHM_WAIT_WRITABLE == 2u && ESHM_WAIT_PEER_CHANGED == 4u &&
                   ESHM_WAIT_CLOSED == 8u,
               "event values");

enum {
  kMany = 300,
  kWatchdogSeconds = 120,
};

/* ---- Names, segments, time ---- */

static char g_prefix[64];
static atomic_int g_name_count;

static void NameOf(int i, char* buf, size_t size) { snprintf(buf, size, "%s_%d", g_prefix, i); }

static void RemoveSegments(void) {
  const int n = atomic_load(&g_name_count);
  for (int i = 0; i < n; ++i) {
    char name[96];
    char path[128];
    NameOf(i, name, sizeof name);
    snprintf(path, sizeof path, "/dev/shm/eshm_%s", name);
    unlink(path);
  }
}

static int64_t NowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void SleepMs(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static atomic_int g_done;

static void* Watchdog(void* arg) {
  (void)arg;
  const int64_t end = NowMs() + (int64_t)kWatchdogSeconds * 1000;
  while (!atomic_load(&g_done)) {
    if (NowMs() > end) {
      fprintf(stderr, "FAIL: still running after %d s (a wait that never ended, or a deadlock)\n",
              (int)kWatchdogSeconds);
      RemoveSegments();
      _exit(1);
    }
    SleepMs(50);
  }
  return NULL;
}

/* A master and a slave of a fresh name, small rings. 0 on failure (reported). */
typedef struct {
  eshm_handle* master;
  eshm_handle* slave;
} Pair;

static int OpenPair(Pair* p) {
  char name[96];
  NameOf(atomic_fetch_add(&g_name_count, 1), name, sizeof name);
  eshm_config cfg;
  eshm_config_init(&cfg);
  cfg.role = ESHM_ROLE_MASTER;
  cfg.m2s_capacity = cfg.s2m_capacity = 4096;
  /* Hundreds of channels in a loaded (or sanitized) process: a short threshold would make peers flap
   * between alive and unresponsive, and each flap is a PEER_CHANGED. */
  cfg.stale_threshold_ms = 5000;
  p->master = p->slave = NULL;
  if (eshm_open(name, &cfg, &p->master) != ESHM_SUCCESS) {
    CHECK(0, "eshm_open(%s, master)", name);
    return 0;
  }
  cfg.role = ESHM_ROLE_SLAVE;
  if (eshm_open(name, &cfg, &p->slave) != ESHM_SUCCESS) {
    CHECK(0, "eshm_open(%s, slave)", name);
    eshm_close(p->master);
    p->master = NULL;
    return 0;
  }
  return 1;
}

static void ClosePair(Pair* p) {
  eshm_close(p->slave);
  eshm_close(p->master);
  p->master = p->slave = NULL;
}

/* Waits until the slave sees its master alive (peer changes before the test starts are not its subject). */
static void AwaitAlive(eshm_handle* h) {
  const int64_t end = NowMs() + 10000;
  while (eshm_is_remote_alive(h) != 1 && NowMs() < end) SleepMs(1);
}

/* The index of `h` in ready[0..n), or -1. */
static int Find(const eshm_ready* ready, size_t n, const eshm_handle* h) {
  for (size_t i = 0; i < n; ++i) {
    if (ready[i].handle == h) return (int)i;
  }
  return -1;
}

/* ---- A thread that waits on a set ---- */

typedef struct {
  eshm_waitset* set;
  int timeout_ms;
  eshm_ready ready[8];
  atomic_int started;
  atomic_int finished;
  int rc;
  size_t n;
  int64_t ended_ms;
} Waiter;

static void* WaitThread(void* p) {
  Waiter* w = (Waiter*)p;
  atomic_store(&w->started, 1);
  w->rc = eshm_waitset_wait(w->set, w->ready, 8, &w->n, w->timeout_ms);
  w->ended_ms = NowMs();
  atomic_store(&w->finished, 1);
  return NULL;
}

static void StartWaiter(Waiter* w, pthread_t* t, eshm_waitset* set, int timeout_ms) {
  memset(w, 0, sizeof *w);
  w->set = set;
  w->timeout_ms = timeout_ms;
  atomic_init(&w->started, 0);
  atomic_init(&w->finished, 0);
  if (pthread_create(t, NULL, WaitThread, w) != 0) abort();
  while (!atomic_load(&w->started)) SleepMs(1);
  SleepMs(50); /* long enough to be asleep in the wait (a wait that already ended is checked for) */
}

/* ---------------------------------------------------------------------------------------------------- */

static void TestMisuse(void) {
  CHECK_ERR_MENTIONS(eshm_waitset_create(NULL), ESHM_ERROR_INVALID_PARAM, "out");
  CHECK_RC(eshm_waitset_destroy(NULL), ESHM_SUCCESS);
  CHECK_ERR_MENTIONS(eshm_waitset_wake(NULL), ESHM_ERROR_INVALID_PARAM, "set");
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  CHECK(set != NULL, "eshm_waitset_create stores the set");
  Pair p;
  if (!OpenPair(&p)) return;
  size_t max = 0;
  CHECK_RC(eshm_max_message_size(p.slave, &max), ESHM_SUCCESS);

  /* add */
  CHECK_ERR_MENTIONS(eshm_waitset_add(NULL, p.slave, ESHM_WAIT_READABLE, 0), ESHM_ERROR_INVALID_PARAM, "set");
  CHECK_ERR_MENTIONS(eshm_waitset_add(set, NULL, ESHM_WAIT_READABLE, 0), ESHM_ERROR_INVALID_PARAM, "handle");
  CHECK_ERR_MENTIONS(eshm_waitset_add(set, p.slave, 0, 0), ESHM_ERROR_INVALID_PARAM, "interest");
  CHECK_ERR_MENTIONS(eshm_waitset_add(set, p.slave, ESHM_WAIT_PEER_CHANGED, 0), ESHM_ERROR_INVALID_PARAM,
                     "interest");
  CHECK_ERR_MENTIONS(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE | 16u, 0), ESHM_ERROR_INVALID_PARAM,
                     "interest");
  CHECK_ERR_MENTIONS(eshm_waitset_add(set, p.slave, ESHM_WAIT_WRITABLE, max + 1), ESHM_ERROR_MESSAGE_TOO_LARGE,
                     "write_size");
  /* Nothing was added by the failures: the handle is not a member. */
  CHECK_ERR_MENTIONS(eshm_waitset_remove(set, p.slave), ESHM_ERROR_NOT_FOUND, "not a member");
  /* The largest size is fine; a write size is ignored without ESHM_WAIT_WRITABLE. */
  CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_WRITABLE, max), ESHM_SUCCESS);
  CHECK_ERR_MENTIONS(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE, 0), ESHM_ERROR_INVALID_PARAM,
                     "already in this set");
  CHECK_RC(eshm_waitset_remove(set, p.slave), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE, max + 1), ESHM_SUCCESS);

  /* remove */
  CHECK_ERR_MENTIONS(eshm_waitset_remove(NULL, p.slave), ESHM_ERROR_INVALID_PARAM, "set");
  CHECK_ERR_MENTIONS(eshm_waitset_remove(set, NULL), ESHM_ERROR_INVALID_PARAM, "handle");
  CHECK_ERR_MENTIONS(eshm_waitset_remove(set, p.master), ESHM_ERROR_NOT_FOUND, "not a member");

  /* wait */
  eshm_ready ready[2];
  size_t n = 99;
  CHECK_ERR_MENTIONS(eshm_waitset_wait(NULL, ready, 2, &n, 0), ESHM_ERROR_INVALID_PARAM, "set");
  CHECK(n == 0, "*out_count is 0 after an error");
  CHECK_ERR_MENTIONS(eshm_waitset_wait(set, NULL, 2, &n, 0), ESHM_ERROR_INVALID_PARAM, "out");
  CHECK_ERR_MENTIONS(eshm_waitset_wait(set, ready, 2, NULL, 0), ESHM_ERROR_INVALID_PARAM, "out_count");
  CHECK_ERR_MENTIONS(eshm_waitset_wait(set, ready, 0, &n, 0), ESHM_ERROR_INVALID_PARAM, "capacity");
  CHECK_ERR_MENTIONS(eshm_waitset_wait(set, ready, 2, &n, -2), ESHM_ERROR_INVALID_PARAM, "timeout_ms");

  /* A second waiter, and destroying the set under a wait, are refused and change nothing. */
  Waiter w;
  pthread_t t;
  StartWaiter(&w, &t, set, -1);
  CHECK(!atomic_load(&w.finished), "the first wait is still waiting");
  CHECK_ERR_MENTIONS(eshm_waitset_wait(set, ready, 2, &n, 0), ESHM_ERROR_INVALID_PARAM, "another thread");
  CHECK_ERR_MENTIONS(eshm_waitset_destroy(set), ESHM_ERROR_INVALID_PARAM, "waiting");
  CHECK(!atomic_load(&w.finished), "the first wait is undisturbed");
  /* The member is still there, and the running wait sees its message. */
  CHECK_RC(eshm_write(p.master, "x", 1, 1000), ESHM_SUCCESS);
  pthread_join(t, NULL);
  CHECK_RC(w.rc, ESHM_SUCCESS);
  CHECK(w.n == 1 && w.ready[0].handle == p.slave && w.ready[0].events == ESHM_WAIT_READABLE,
        "the wait reports the member readable (n=%zu events=%u)", w.n, w.n ? w.ready[0].events : 0u);

  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  /* The handle left the destroyed set: it works as before. */
  char buf[8];
  size_t len = 0;
  CHECK_RC(eshm_try_read(p.slave, buf, sizeof buf, &len), ESHM_SUCCESS);
  ClosePair(&p);
  printf("misuse: every bad call refused with its code and message\n");
}

static void TestReadableOne(void) {
  Pair p;
  if (!OpenPair(&p)) return;
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  AwaitAlive(p.slave);
  CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);
  eshm_ready ready[4];
  size_t n = 99;
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 0), ESHM_SUCCESS);
  CHECK(n == 0, "nothing is ready yet (n=%zu)", n);
  CHECK_RC(eshm_write(p.master, "hello", 5, 1000), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 5000), ESHM_SUCCESS);
  CHECK(n == 1 && ready[0].handle == p.slave && ready[0].events == ESHM_WAIT_READABLE && ready[0].reserved0 == 0,
        "the slave is reported readable (n=%zu)", n);
  /* The wait holds no side when it returns: this thread reads at once. */
  char buf[16];
  size_t len = 0;
  CHECK_RC(eshm_try_read(p.slave, buf, sizeof buf, &len), ESHM_SUCCESS);
  CHECK(len == 5 && memcmp(buf, "hello", 5) == 0, "the message");
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 0), ESHM_SUCCESS);
  CHECK(n == 0, "nothing is ready after the read (n=%zu)", n);
  /* A message written from another thread while the wait sleeps ends it. */
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  ClosePair(&p);
  printf("readable: one member\n");
}

typedef struct {
  Pair* pairs;
  atomic_int go;
} ManyWriterArgs;

/* Writes message i to pair order[i] in a scrambled order, a few at a time. */
static void* ManyWriter(void* arg) {
  ManyWriterArgs* a = (ManyWriterArgs*)arg;
  while (!atomic_load(&a->go)) SleepMs(1);
  for (int k = 0; k < kMany; ++k) {
    const int i = (k * 7919) % kMany; /* 7919 is prime: a permutation */
    char msg[32];
    const int len = snprintf(msg, sizeof msg, "to %d", i);
    if (eshm_write(a->pairs[i].master, msg, (size_t)len, 5000) != ESHM_SUCCESS) {
      fprintf(stderr, "FAIL: eshm_write to %d: %s\n", i, eshm_last_error());
      ++g_failures;
    }
    if (k % 10 == 0) SleepMs(1);
  }
  return NULL;
}

static void TestReadableMany(void) {
  Pair* pairs = calloc(kMany, sizeof *pairs);
  int* got = calloc(kMany, sizeof *got);
  eshm_ready* ready = calloc(kMany, sizeof *ready);
  if (pairs == NULL || got == NULL || ready == NULL) abort();
  int opened = 0;
  while (opened < kMany && OpenPair(&pairs[opened])) ++opened;
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  if (opened == kMany) {
    for (int i = 0; i < kMany; ++i) AwaitAlive(pairs[i].slave);
    for (int i = 0; i < kMany; ++i) CHECK_RC(eshm_waitset_add(set, pairs[i].slave, ESHM_WAIT_READABLE, 0), 0);
    ManyWriterArgs args = {pairs, 0};
    atomic_init(&args.go, 0);
    pthread_t writer;
    if (pthread_create(&writer, NULL, ManyWriter, &args) != 0) abort();
    atomic_store(&args.go, 1);
    int received = 0;
    int waits = 0;
    const int64_t end = NowMs() + 60000;
    while (received < kMany && NowMs() < end) {
      size_t n = 0;
      const int rc = eshm_waitset_wait(set, ready, kMany, &n, 1000);
      ++waits;
      if (rc != ESHM_SUCCESS) {
        CHECK(0, "eshm_waitset_wait returned %d", rc);
        break;
      }
      for (size_t k = 0; k < n; ++k) {
        int i = -1;
        for (int j = 0; j < kMany; ++j) {
          if (pairs[j].slave == ready[k].handle) i = j;
        }
        CHECK(i >= 0, "a reported handle is a member");
        if (i < 0) continue;
        /* Peer changes may come along (a slow, sanitized process): only READABLE matters here. */
        if ((ready[k].events & ESHM_WAIT_READABLE) == 0) continue;
        char buf[32];
        size_t len = 0;
        const int r = eshm_try_read(pairs[i].slave, buf, sizeof buf - 1, &len);
        CHECK(r == ESHM_SUCCESS, "member %d reported readable has a message (rc %d)", i, r);
        if (r != ESHM_SUCCESS) continue;
        buf[len] = '\0';
        char want[32];
        snprintf(want, sizeof want, "to %d", i);
        CHECK(strcmp(buf, want) == 0, "member %d got \"%s\", expected \"%s\"", i, buf, want);
        ++got[i];
        ++received;
      }
    }
    pthread_join(writer, NULL);
    int missing = 0;
    int twice = 0;
    for (int i = 0; i < kMany; ++i) {
      missing += got[i] == 0;
      twice += got[i] > 1;
    }
    CHECK(missing == 0 && twice == 0, "%d members never reported their message, %d twice", missing, twice);
    size_t n = 99;
    CHECK_RC(eshm_waitset_wait(set, ready, kMany, &n, 0), ESHM_SUCCESS);
    int readable = 0;
    for (size_t k = 0; k < n; ++k) readable += (ready[k].events & ESHM_WAIT_READABLE) != 0;
    CHECK(readable == 0, "nothing readable once all were read (%d)", readable);
    printf("readable: %d members, %d messages from another thread in %d waits\n", kMany, received, waits);
  }
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  for (int i = 0; i < opened; ++i) ClosePair(&pairs[i]);
  free(ready);
  free(got);
  free(pairs);
}

static void TestWritable(void) {
  Pair p;
  if (!OpenPair(&p)) return;
  AwaitAlive(p.slave);
  char fill[64] = {0};
  int filled = 0;
  while (eshm_try_write(p.slave, fill, sizeof fill) == ESHM_SUCCESS) ++filled;
  CHECK(filled > 0, "the slave's outgoing ring filled up");
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_WRITABLE, sizeof fill), ESHM_SUCCESS);
  eshm_ready ready[2];
  size_t n = 99;
  CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 50), ESHM_SUCCESS);
  CHECK(n == 0, "a full ring is not writable (n=%zu)", n);
  /* The master reads from another thread's point of view (this one, between waits); then room is there. */
  char buf[64];
  size_t len = 0;
  for (int i = 0; i < 4; ++i) CHECK_RC(eshm_try_read(p.master, buf, sizeof buf, &len), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 5000), ESHM_SUCCESS);
  CHECK(n == 1 && ready[0].handle == p.slave && ready[0].events == ESHM_WAIT_WRITABLE,
        "the slave is reported writable (n=%zu events=%u)", n, n ? ready[0].events : 0u);
  CHECK_RC(eshm_try_write(p.slave, fill, sizeof fill), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  ClosePair(&p);
  printf("writable: reported once the reader made room\n");
}

static void TestTimeout(void) {
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  eshm_ready ready[2];
  size_t n = 99;
  int64_t t0 = NowMs();
  CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 100), ESHM_SUCCESS);
  CHECK(n == 0 && NowMs() - t0 >= 99, "an empty set waits for the timeout (n=%zu, %lld ms)", n,
        (long long)(NowMs() - t0));
  Pair p;
  if (OpenPair(&p)) {
    AwaitAlive(p.slave);
    CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);
    t0 = NowMs();
    CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 150), ESHM_SUCCESS);
    CHECK(n == 0 && NowMs() - t0 >= 149, "an idle member: the timeout passes (n=%zu, %lld ms)", n,
          (long long)(NowMs() - t0));
    CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 0), ESHM_SUCCESS);
    CHECK(n == 0, "timeout 0 only looks");
  }
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  if (p.master != NULL) ClosePair(&p);
  printf("timeout: a wait returns empty at its timeout\n");
}

static void TestWake(void) {
  Pair p;
  if (!OpenPair(&p)) return;
  AwaitAlive(p.slave);
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);
  Waiter w;
  pthread_t t;
  StartWaiter(&w, &t, set, -1);
  CHECK(!atomic_load(&w.finished), "the wait waits");
  const int64_t woke = NowMs();
  CHECK_RC(eshm_waitset_wake(set), ESHM_SUCCESS);
  pthread_join(t, NULL); /* forever without the wake: the watchdog fails the test */
  CHECK_RC(w.rc, ESHM_SUCCESS);
  CHECK(w.n == 0, "a woken wait reports nothing ready (n=%zu)", w.n);
  printf("wake: the wait ended %lld ms after eshm_waitset_wake\n", (long long)(w.ended_ms - woke));
  /* A wake with no wait running ends the next one at once, and only that one. */
  CHECK_RC(eshm_waitset_wake(set), ESHM_SUCCESS);
  eshm_ready ready[2];
  size_t n = 99;
  CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, -1), ESHM_SUCCESS);
  CHECK(n == 0, "the next wait returns at once");
  const int64_t t0 = NowMs();
  CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 100), ESHM_SUCCESS);
  CHECK(NowMs() - t0 >= 99, "the wake was used up (%lld ms)", (long long)(NowMs() - t0));
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  ClosePair(&p);
}

typedef struct {
  eshm_handle* handle;
  int64_t at_ms;
} CloseArgs;

static void* CloseThread(void* arg) {
  CloseArgs* a = (CloseArgs*)arg;
  a->at_ms = NowMs();
  if (eshm_close(a->handle) != ESHM_SUCCESS) {
    fprintf(stderr, "FAIL: eshm_close: %s\n", eshm_last_error());
    ++g_failures;
  }
  return NULL;
}

static void TestCloseDuringWait(void) {
  Pair a, b;
  if (!OpenPair(&a)) return;
  if (!OpenPair(&b)) {
    ClosePair(&a);
    return;
  }
  AwaitAlive(a.slave);
  AwaitAlive(b.slave);
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  /* A waits to read and to write (a message of the largest size): the wait holds both its sides. Its
   * outgoing ring is nearly full, so that it is not writable and the wait sleeps. */
  char fill[64] = {0};
  while (eshm_try_write(a.slave, fill, sizeof fill) == ESHM_SUCCESS) {
  }
  size_t max = 0;
  CHECK_RC(eshm_max_message_size(a.slave, &max), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, a.slave, ESHM_WAIT_READABLE | ESHM_WAIT_WRITABLE, max), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, b.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);
  Waiter w;
  pthread_t t;
  StartWaiter(&w, &t, set, -1);
  CHECK(!atomic_load(&w.finished), "the wait waits");
  /* eshm_close on a third thread: it must end the wait, and return once the wait let go of the handle. */
  eshm_handle* const gone = a.slave;
  CloseArgs ca = {gone, 0};
  pthread_t closer;
  if (pthread_create(&closer, NULL, CloseThread, &ca) != 0) abort();
  pthread_join(t, NULL); /* forever if the close did not end it: the watchdog fails the test */
  pthread_join(closer, NULL);
  a.slave = NULL;
  CHECK_RC(w.rc, ESHM_SUCCESS);
  CHECK(w.n == 1 && w.ready[0].handle == gone && w.ready[0].events == ESHM_WAIT_CLOSED,
        "the closed member is reported CLOSED (n=%zu events=%u)", w.n, w.n ? w.ready[0].events : 0u);
  const long long ms = (long long)(w.ended_ms - ca.at_ms);
  /* Not a timing claim about the machine: a wait that noticed the close by polling would take 10+ ms;
   * this one is told. Generous for a loaded, sanitized run. */
  CHECK(ms < 500, "the wait ended %lld ms after eshm_close", ms);
  printf("close during a wait: the wait ended %lld ms after eshm_close began\n", ms);
  /* Reported by every wait until removed, and never dereferenced (ASan would catch a use after free). */
  eshm_ready ready[4];
  size_t n = 99;
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, -1), ESHM_SUCCESS);
  CHECK(n == 1 && ready[0].handle == gone && ready[0].events == ESHM_WAIT_CLOSED, "still reported (n=%zu)", n);
  CHECK_RC(eshm_waitset_remove(set, gone), ESHM_SUCCESS); /* by its dangling pointer */
  CHECK_ERR_MENTIONS(eshm_waitset_remove(set, gone), ESHM_ERROR_NOT_FOUND, "not a member");
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 0), ESHM_SUCCESS);
  CHECK(n == 0, "nothing left to report (n=%zu)", n);
  /* The other member works on. */
  CHECK_RC(eshm_write(b.master, "b", 1, 1000), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 5000), ESHM_SUCCESS);
  CHECK(n == 1 && ready[0].handle == b.slave && ready[0].events == ESHM_WAIT_READABLE, "B readable (n=%zu)", n);

  /* A member closed while no wait runs: the next wait reports it at once. */
  CHECK_RC(eshm_close(b.slave), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, -1), ESHM_SUCCESS);
  CHECK(n == 1 && ready[0].handle == b.slave && ready[0].events == ESHM_WAIT_CLOSED, "B closed (n=%zu)", n);
  /* A set destroyed with a closed member still in it never touches it either. */
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  eshm_close(a.master);
  eshm_close(b.master);
}

typedef struct {
  eshm_handle* handle;
  int timeout_ms;
  atomic_int started;
  atomic_int finished;
  int rc;
  char buf[32];
  size_t len;
} Reader;

static void* ReadThread(void* arg) {
  Reader* r = (Reader*)arg;
  atomic_store(&r->started, 1);
  r->rc = eshm_read(r->handle, r->buf, sizeof r->buf, &r->len, r->timeout_ms);
  atomic_store(&r->finished, 1);
  return NULL;
}

static void StartReader(Reader* r, pthread_t* t, eshm_handle* h, int timeout_ms) {
  memset(r, 0, sizeof *r);
  r->handle = h;
  r->timeout_ms = timeout_ms;
  atomic_init(&r->started, 0);
  atomic_init(&r->finished, 0);
  if (pthread_create(t, NULL, ReadThread, r) != 0) abort();
  while (!atomic_load(&r->started)) SleepMs(1);
  SleepMs(50); /* inside eshm_read, holding the read side */
}

static void TestBusySideDoesNotStall(void) {
  Pair a, b;
  if (!OpenPair(&a)) return;
  if (!OpenPair(&b)) {
    ClosePair(&a);
    return;
  }
  AwaitAlive(a.slave);
  AwaitAlive(b.slave);
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, a.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, b.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);

  /* 1. A thread blocked in eshm_read on A (forever) holds A's read side; B's message is reported. */
  Reader r;
  pthread_t rt;
  StartReader(&r, &rt, a.slave, -1);
  CHECK(!atomic_load(&r.finished), "the read on A is blocked");
  CHECK_RC(eshm_write(b.master, "to b", 4, 1000), ESHM_SUCCESS);
  eshm_ready ready[4];
  size_t n = 99;
  int64_t t0 = NowMs();
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 10000), ESHM_SUCCESS);
  const long long ms = (long long)(NowMs() - t0);
  CHECK(n == 1 && ready[0].handle == b.slave && ready[0].events == ESHM_WAIT_READABLE,
        "B reported while A is busy (n=%zu)", n);
  CHECK(ms < 5000, "B reported after %lld ms", ms);
  printf("busy side: B reported %lld ms into the wait while a read blocked on A\n", ms);
  char buf[32];
  size_t len = 0;
  CHECK_RC(eshm_try_read(b.slave, buf, sizeof buf, &len), ESHM_SUCCESS);
  /* The blocked read on A gets its message, not the wait. */
  CHECK_RC(eshm_write(a.master, "to a", 4, 1000), ESHM_SUCCESS);
  pthread_join(rt, NULL);
  CHECK_RC(r.rc, ESHM_SUCCESS);
  CHECK(r.len == 4 && memcmp(r.buf, "to a", 4) == 0, "the blocked read got A's message");
  /* A is free again: the wait looks at it again. */
  CHECK_RC(eshm_write(a.master, "again", 5, 1000), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_wait(set, ready, 4, &n, 10000), ESHM_SUCCESS);
  CHECK(n == 1 && ready[0].handle == a.slave && ready[0].events == ESHM_WAIT_READABLE, "A back (n=%zu)", n);
  CHECK_RC(eshm_try_read(a.slave, buf, sizeof buf, &len), ESHM_SUCCESS);

  /* 2. A wait sleeping with A's read side: an eshm_read on another thread gets the side (not a TIMEOUT for
   *    a busy side) and the message written next. */
  Waiter w;
  pthread_t wt;
  StartWaiter(&w, &wt, set, -1);
  CHECK(!atomic_load(&w.finished), "the wait waits");
  StartReader(&r, &rt, a.slave, 10000);
  CHECK(!atomic_load(&r.finished), "the read waits for a message");
  CHECK(!atomic_load(&w.finished), "the wait is still waiting, A left out of it");
  CHECK_RC(eshm_write(a.master, "mine", 4, 1000), ESHM_SUCCESS);
  pthread_join(rt, NULL);
  CHECK_RC(r.rc, ESHM_SUCCESS);
  CHECK(r.len == 4 && memcmp(r.buf, "mine", 4) == 0, "the read got the message");
  /* The wait did not report A (the read took the message) and still works for B. */
  CHECK_RC(eshm_write(b.master, "b2", 2, 1000), ESHM_SUCCESS);
  pthread_join(wt, NULL);
  CHECK_RC(w.rc, ESHM_SUCCESS);
  CHECK(w.n >= 1 && Find(w.ready, w.n, b.slave) >= 0, "the wait reports B (n=%zu)", w.n);
  const int ia = Find(w.ready, w.n, a.slave);
  CHECK(ia < 0 || (w.ready[ia].events & ESHM_WAIT_READABLE) == 0, "A is not reported readable");

  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  ClosePair(&a);
  ClosePair(&b);
}

static void TestPeerChanged(void) {
  Pair p;
  if (!OpenPair(&p)) return;
  AwaitAlive(p.slave);
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  CHECK_RC(eshm_waitset_add(set, p.slave, ESHM_WAIT_READABLE, 0), ESHM_SUCCESS);
  Waiter w;
  pthread_t t;
  StartWaiter(&w, &t, set, 20000);
  CHECK_RC(eshm_close(p.master), ESHM_SUCCESS); /* the slave's master is gone */
  p.master = NULL;
  pthread_join(t, NULL);
  CHECK_RC(w.rc, ESHM_SUCCESS);
  CHECK(w.n == 1 && w.ready[0].handle == p.slave && (w.ready[0].events & ESHM_WAIT_PEER_CHANGED) != 0,
        "the peer's death is reported (n=%zu events=%u)", w.n, w.n ? w.ready[0].events : 0u);
  int state = -1;
  CHECK_RC(eshm_peer_state(p.slave, &state), ESHM_SUCCESS);
  CHECK(state == ESHM_PEER_DEAD, "the peer is dead (%d)", state);
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  eshm_close(p.slave);
  printf("peer changed: a master's close is reported to its slave's set\n");
}

static void TestMoreReadyThanCapacity(void) {
  enum { kPairs = 5 };
  Pair pairs[kPairs];
  int opened = 0;
  while (opened < kPairs && OpenPair(&pairs[opened])) ++opened;
  eshm_waitset* set = NULL;
  CHECK_RC(eshm_waitset_create(&set), ESHM_SUCCESS);
  if (opened == kPairs) {
    for (int i = 0; i < kPairs; ++i) AwaitAlive(pairs[i].slave);
    for (int i = 0; i < kPairs; ++i) CHECK_RC(eshm_waitset_add(set, pairs[i].slave, ESHM_WAIT_READABLE, 0), 0);
    for (int i = 0; i < kPairs; ++i) CHECK_RC(eshm_write(pairs[i].master, "m", 1, 1000), ESHM_SUCCESS);
    /* Capacity 2, messages left queued: the least recently reported go first, so every member is reported
     * within three waits. */
    int seen[kPairs] = {0};
    for (int k = 0; k < 3; ++k) {
      eshm_ready ready[2];
      size_t n = 0;
      CHECK_RC(eshm_waitset_wait(set, ready, 2, &n, 1000), ESHM_SUCCESS);
      CHECK(n == 2, "wait %d reported %zu", k, n);
      for (size_t j = 0; j < n; ++j) {
        for (int i = 0; i < kPairs; ++i) seen[i] += ready[j].handle == pairs[i].slave;
      }
    }
    int unseen = 0;
    for (int i = 0; i < kPairs; ++i) unseen += seen[i] == 0;
    CHECK(unseen == 0, "%d ready members never reported with capacity 2", unseen);
  }
  CHECK_RC(eshm_waitset_destroy(set), ESHM_SUCCESS);
  for (int i = 0; i < opened; ++i) ClosePair(&pairs[i]);
  printf("capacity: %d ready members reported 2 at a time\n", (int)kPairs);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(g_prefix, sizeof g_prefix, "capi_ws_%d", (int)getpid());
  atomic_init(&g_name_count, 0);
  atomic_init(&g_failures, 0);
  atomic_init(&g_done, 0);
  pthread_t watchdog;
  if (pthread_create(&watchdog, NULL, Watchdog, NULL) != 0) abort();
  TestMisuse();
  TestReadableOne();
  TestReadableMany();
  TestWritable();
  TestTimeout();
  TestWake();
  TestCloseDuringWait();
  TestBusySideDoesNotStall();
  TestPeerChanged();
  TestMoreReadyThanCapacity();
  atomic_store(&g_done, 1);
  pthread_join(watchdog, NULL);
  RemoveSegments();
  if (atomic_load(&g_failures) != 0) {
    fprintf(stderr, "c_api_waitset_test: %d of %d checks FAILED\n", atomic_load(&g_failures),
            atomic_load(&g_checks));
    return 1;
  }
  printf("c_api_waitset_test: all %d checks passed\n", atomic_load(&g_checks));
  return 0;
}
