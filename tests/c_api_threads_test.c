/* Many threads on one handle of the C ABI (eshm/eshm.h): each side (writing, reading) is serialized by the
 * library, so any number of threads may write, and any number read, on one handle at once.
 *
 *  - TestManyWritersManyReaders: 4 threads write checksummed, sequence-numbered messages on one master
 *    handle (eshm_write, eshm_try_write and eshm_flush, through a small ring that keeps filling up) while
 *    2 threads read them on one slave handle (eshm_read, eshm_try_read, eshm_next_message_size). Every
 *    message must arrive once, whole, and each writer's messages in the order it wrote them.
 *  - TestCloseEndsBlockedCalls: threads blocked in eshm_read (an empty ring), in eshm_write (a full ring)
 *    and waiting for a side another thread holds: eshm_close on another thread ends them all with
 *    ESHM_ERROR_CLOSED and returns once they have left.
 *  - TestATimeoutCoversTheWaitForTheSide: a call that waits for its turn on a side, then for a message or
 *    room, ends at its one timeout.
 *
 * A watchdog thread fails the test (and removes its segments) if it makes no progress for 30 s. Meaningful
 * under --config=tsan too: without the library's serialization, ThreadSanitizer reports the race on the
 * producer's tail. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eshm/eshm.h"

enum {
  kWriters = 4,
  kReaders = 2,
  kMinBytes = 16,  /* the header */
  kMaxBytes = 300,
  kStallSeconds = 30,
};

/* Fewer messages under a sanitizer, which runs this 5-20 times slower. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
enum { kPerWriter = 5000 };
#else
enum { kPerWriter = 50000 };
#endif

static int g_failures = 0;
static char g_names[4][96];
static int g_name_count = 0;
static atomic_long g_progress;  /* bumped by every thread that gets something done */
static atomic_int g_done;

#define FAIL(...)                                          \
  do {                                                     \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
    fprintf(stderr, __VA_ARGS__);                          \
    fprintf(stderr, "\n");                                 \
    ++g_failures;                                          \
  } while (0)

static const char* NewName(void) {
  char* name = g_names[g_name_count++];
  snprintf(name, sizeof g_names[0], "capi_threads_%d_%d", (int)getpid(), g_name_count);
  return name;
}

static void RemoveSegments(void) {
  for (int i = 0; i < g_name_count; ++i) {
    char path[sizeof g_names[0] + 16];
    snprintf(path, sizeof path, "/dev/shm/eshm_%.95s", g_names[i]);
    unlink(path);
  }
}

static void SleepMs(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Fails the whole test if no thread made progress for kStallSeconds: a hang becomes a failure. */
static void* Watchdog(void* arg) {
  (void)arg;
  long last = -1;
  int still = 0;
  while (!atomic_load(&g_done)) {
    SleepMs(100);
    const long now = atomic_load(&g_progress);
    still = now == last ? still + 1 : 0;
    last = now;
    if (still >= kStallSeconds * 10) {
      fprintf(stderr, "FAIL: no progress for %d s (a lost message, or a deadlock)\n", (int)kStallSeconds);
      RemoveSegments();
      _exit(1);
    }
  }
  return NULL;
}

/* ---- Messages: [writer u32][seq u32][length u32][checksum u32] then filler derived from all three ---- */

static uint32_t SizeOf(uint32_t writer, uint32_t seq) {
  return kMinBytes + (seq * 37u + writer * 11u) % (kMaxBytes - kMinBytes + 1);
}

static uint8_t Filler(uint32_t writer, uint32_t seq, uint32_t i) { return (uint8_t)(seq * 131u + writer * 7u + i); }

static uint32_t Checksum(const uint8_t* bytes, uint32_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (uint32_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 16777619u;
  return h;
}

static uint32_t MakeMessage(uint32_t writer, uint32_t seq, uint8_t* out) {
  const uint32_t n = SizeOf(writer, seq);
  for (uint32_t i = kMinBytes; i < n; ++i) out[i] = Filler(writer, seq, i);
  const uint32_t sum = Checksum(out + kMinBytes, n - kMinBytes);
  memcpy(out, &writer, 4);
  memcpy(out + 4, &seq, 4);
  memcpy(out + 8, &n, 4);
  memcpy(out + 12, &sum, 4);
  return n;
}

/* 1 if `bytes` is a whole, intact message; sets *writer and *seq. */
static int ParseMessage(const uint8_t* bytes, size_t n, uint32_t* writer, uint32_t* seq) {
  if (n < kMinBytes) return 0;
  uint32_t length, sum;
  memcpy(writer, bytes, 4);
  memcpy(seq, bytes + 4, 4);
  memcpy(&length, bytes + 8, 4);
  memcpy(&sum, bytes + 12, 4);
  if (*writer >= kWriters || *seq >= kPerWriter || length != n || n != SizeOf(*writer, *seq)) return 0;
  for (uint32_t i = kMinBytes; i < n; ++i) {
    if (bytes[i] != Filler(*writer, *seq, i)) return 0;
  }
  return Checksum(bytes + kMinBytes, (uint32_t)n - kMinBytes) == sum;
}

/* ---- Many writers, many readers ---- */

typedef struct {
  eshm_handle* handle;
  uint32_t id;
  int failures;
} WriterArgs;

static void* WriterThread(void* p) {
  WriterArgs* a = (WriterArgs*)p;
  uint8_t message[kMaxBytes];
  for (uint32_t seq = 0; seq < kPerWriter; ++seq) {
    const uint32_t n = MakeMessage(a->id, seq, message);
    int rc;
    if ((seq + a->id) % 4 == 0) {
      /* The non-blocking path: retry while the ring is full (or another thread holds the write side). */
      while ((rc = eshm_try_write(a->handle, message, n)) == ESHM_ERROR_RING_FULL) sched_yield();
    } else {
      rc = eshm_write(a->handle, message, n, 10000);
    }
    if (rc != ESHM_SUCCESS) {
      fprintf(stderr, "writer %u: message %u: %s (%s)\n", a->id, seq, eshm_strerror(rc), eshm_last_error());
      ++a->failures;
      return NULL;
    }
    if (seq % 1000 == 999 && (rc = eshm_flush(a->handle)) != ESHM_SUCCESS) {
      fprintf(stderr, "writer %u: eshm_flush: %s\n", a->id, eshm_last_error());
      ++a->failures;
      return NULL;
    }
    atomic_fetch_add(&g_progress, 1);
  }
  return NULL;
}

typedef struct {
  eshm_handle* handle;
  uint32_t id;
  atomic_int* received;        /* messages taken by all readers */
  atomic_uchar* seen;          /* [kWriters * kPerWriter]: 1 once delivered */
  int failures;
  long duplicates;
  long corrupt;
  long out_of_order;
} ReaderArgs;

static void* ReaderThread(void* p) {
  ReaderArgs* a = (ReaderArgs*)p;
  uint8_t buffer[kMaxBytes];
  int64_t last_seq[kWriters];
  for (int w = 0; w < kWriters; ++w) last_seq[w] = -1;
  const int total = kWriters * kPerWriter;
  for (uint32_t i = 0; atomic_load(a->received) < total; ++i) {
    size_t n = 0;
    int rc;
    if ((i + a->id) % 3 == 0) {
      size_t next = 0;
      rc = eshm_next_message_size(a->handle, &next);
      if (rc == ESHM_SUCCESS && next > sizeof buffer) {
        fprintf(stderr, "reader %u: the next message is %zu bytes, larger than any written\n", a->id, next);
        ++a->corrupt;
      }
      rc = eshm_try_read(a->handle, buffer, sizeof buffer, &n);
      if (rc == ESHM_ERROR_NO_DATA) {
        sched_yield();
        continue;
      }
    } else {
      rc = eshm_read(a->handle, buffer, sizeof buffer, &n, 50);
      if (rc == ESHM_ERROR_TIMEOUT) continue;
    }
    if (rc != ESHM_SUCCESS) {
      fprintf(stderr, "reader %u: %s (%s)\n", a->id, eshm_strerror(rc), eshm_last_error());
      ++a->failures;
      return NULL;
    }
    uint32_t writer, seq;
    if (!ParseMessage(buffer, n, &writer, &seq)) {
      if (a->corrupt++ < 5) fprintf(stderr, "reader %u: a torn or corrupt message of %zu bytes\n", a->id, n);
      atomic_fetch_add(a->received, 1);
      continue;
    }
    if (atomic_exchange(&a->seen[writer * kPerWriter + seq], 1) != 0) {
      if (a->duplicates++ < 5) fprintf(stderr, "reader %u: message %u/%u delivered twice\n", a->id, writer, seq);
    }
    if ((int64_t)seq <= last_seq[writer]) {
      if (a->out_of_order++ < 5) {
        fprintf(stderr, "reader %u: writer %u's message %u after its message %lld\n", a->id, writer, seq,
                (long long)last_seq[writer]);
      }
    }
    last_seq[writer] = seq;
    atomic_fetch_add(a->received, 1);
    atomic_fetch_add(&g_progress, 1);
  }
  return NULL;
}

static void TestManyWritersManyReaders(void) {
  const char* name = NewName();
  eshm_config cfg;
  eshm_config_init(&cfg);
  cfg.role = ESHM_ROLE_MASTER;
  cfg.m2s_capacity = 1 << 16; /* small: the ring fills, writers wait, readers find it empty */
  eshm_handle* master = NULL;
  eshm_handle* slave = NULL;
  if (eshm_open(name, &cfg, &master) != ESHM_SUCCESS) {
    FAIL("eshm_open(master): %s", eshm_last_error());
    return;
  }
  cfg.role = ESHM_ROLE_SLAVE;
  if (eshm_open(name, &cfg, &slave) != ESHM_SUCCESS) {
    FAIL("eshm_open(slave): %s", eshm_last_error());
    eshm_close(master);
    return;
  }
  atomic_int received;
  atomic_init(&received, 0);
  atomic_uchar* seen = calloc((size_t)kWriters * kPerWriter, sizeof *seen);
  WriterArgs writers[kWriters];
  ReaderArgs readers[kReaders];
  pthread_t writer_threads[kWriters], reader_threads[kReaders];
  for (uint32_t r = 0; r < kReaders; ++r) {
    readers[r] = (ReaderArgs){slave, r, &received, seen, 0, 0, 0, 0};
    if (pthread_create(&reader_threads[r], NULL, ReaderThread, &readers[r]) != 0) abort();
  }
  for (uint32_t w = 0; w < kWriters; ++w) {
    writers[w] = (WriterArgs){master, w, 0};
    if (pthread_create(&writer_threads[w], NULL, WriterThread, &writers[w]) != 0) abort();
  }
  int writer_failures = 0;
  for (int w = 0; w < kWriters; ++w) {
    pthread_join(writer_threads[w], NULL);
    writer_failures += writers[w].failures;
  }
  if (writer_failures != 0) {
    /* Readers would wait for messages that were never sent. */
    FAIL("%d writer thread(s) failed", writer_failures);
    RemoveSegments();
    _exit(1);
  }
  long duplicates = 0, corrupt = 0, out_of_order = 0;
  int reader_failures = 0;
  for (int r = 0; r < kReaders; ++r) {
    pthread_join(reader_threads[r], NULL);
    duplicates += readers[r].duplicates;
    corrupt += readers[r].corrupt;
    out_of_order += readers[r].out_of_order;
    reader_failures += readers[r].failures;
  }
  long missing = 0;
  for (long i = 0; i < (long)kWriters * kPerWriter; ++i) missing += atomic_load(&seen[i]) == 0;
  free(seen);
  if (reader_failures != 0) FAIL("%d reader thread(s) failed", reader_failures);
  if (corrupt != 0) FAIL("%ld torn or corrupt message(s)", corrupt);
  if (duplicates != 0) FAIL("%ld message(s) delivered twice", duplicates);
  if (out_of_order != 0) FAIL("%ld message(s) out of their writer's order", out_of_order);
  if (missing != 0) FAIL("%ld of %d message(s) lost", missing, kWriters * kPerWriter);
  size_t left = 0;
  if (eshm_try_read(slave, NULL, 0, &left) != ESHM_ERROR_NO_DATA) FAIL("messages left over after the test");
  printf("many writers, many readers: %d messages from %d threads read by %d threads\n", kWriters * kPerWriter,
         kWriters, kReaders);
  eshm_close(slave);
  eshm_close(master);
}

/* ---- eshm_close while other threads are blocked on the handle ---- */

typedef struct {
  eshm_handle* handle;
  int write;       /* 1: eshm_write of a message that cannot fit now; 0: eshm_read */
  int timeout_ms;  /* -1: until the close */
  atomic_int started;
  atomic_int rc;
} BlockedArgs;

static void* BlockedThread(void* p) {
  BlockedArgs* a = (BlockedArgs*)p;
  char buffer[64] = {0};
  size_t n = 0;
  atomic_store(&a->started, 1);
  const int rc = a->write ? eshm_write(a->handle, buffer, sizeof buffer, a->timeout_ms)
                          : eshm_read(a->handle, buffer, sizeof buffer, &n, a->timeout_ms);
  atomic_store(&a->rc, rc);
  atomic_fetch_add(&g_progress, 1);
  return NULL;
}

/* Starts a thread making `a`'s call; returns once it has begun. */
static pthread_t StartBlocked(BlockedArgs* a, eshm_handle* handle, int write, int timeout_ms) {
  a->handle = handle;
  a->write = write;
  a->timeout_ms = timeout_ms;
  atomic_init(&a->started, 0);
  atomic_init(&a->rc, 1);
  pthread_t thread;
  if (pthread_create(&thread, NULL, BlockedThread, a) != 0) abort();
  while (!atomic_load(&a->started)) SleepMs(1);
  return thread;
}

/* A master and a slave whose outgoing ring is full (the master never reads it), so that the slave's reads
 * find nothing and its writes find no room. 0 if they could not be opened (the failure is recorded). */
static int OpenBlockedPair(eshm_handle** master, eshm_handle** slave) {
  const char* name = NewName();
  eshm_config cfg;
  eshm_config_init(&cfg);
  cfg.role = ESHM_ROLE_MASTER;
  cfg.s2m_capacity = 4096;
  cfg.disconnect_behavior = ESHM_DISCONNECT_NEVER;
  if (eshm_open(name, &cfg, master) != ESHM_SUCCESS) {
    FAIL("eshm_open(master): %s", eshm_last_error());
    return 0;
  }
  cfg.role = ESHM_ROLE_SLAVE;
  if (eshm_open(name, &cfg, slave) != ESHM_SUCCESS) {
    FAIL("eshm_open(slave): %s", eshm_last_error());
    eshm_close(*master);
    return 0;
  }
  char fill[64] = {0};
  int filled = 0;
  while (eshm_try_write(*slave, fill, sizeof fill) == ESHM_SUCCESS) ++filled;
  if (filled == 0) FAIL("could not fill the ring");
  return 1;
}

static void TestCloseEndsBlockedCalls(void) {
  eshm_handle* master = NULL;
  eshm_handle* slave = NULL;
  if (!OpenBlockedPair(&master, &slave)) return;
  /* Two blocked reads (one holds the read side, one waits for it) and two blocked writes, alike. */
  BlockedArgs args[4];
  pthread_t threads[4];
  for (int i = 0; i < 4; ++i) threads[i] = StartBlocked(&args[i], slave, i % 2, -1);
  SleepMs(200); /* long enough for every call to be inside its wait */
  for (int i = 0; i < 4; ++i) {
    if (atomic_load(&args[i].rc) != 1) FAIL("call %d returned %d before the close", i, atomic_load(&args[i].rc));
  }
  /* It returns once every call has let go of the handle (under AddressSanitizer, a call still touching it
   * afterwards would be a use after free); the watchdog fails the test if it never does. */
  if (eshm_close(slave) != ESHM_SUCCESS) FAIL("eshm_close: %s", eshm_last_error());
  for (int i = 0; i < 4; ++i) pthread_join(threads[i], NULL);
  for (int i = 0; i < 4; ++i) {
    const int rc = atomic_load(&args[i].rc);
    if (rc != ESHM_ERROR_CLOSED) {
      FAIL("blocked eshm_%s %d returned %d (%s) after eshm_close, expected ESHM_ERROR_CLOSED",
           args[i].write ? "write" : "read", i, rc, eshm_strerror(rc));
    }
  }
  eshm_close(master);
  printf("eshm_close ended 2 blocked reads and 2 blocked writes\n");
}

static long NowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* One timeout covers a call's whole wait: the wait for its turn on the side and then for room or a message.
 * Another thread holds the side for ~600 ms (its own call waiting 600 ms); a call with a 700 ms timeout
 * must end within about 700 ms, not 600 + 700. */
static void TestATimeoutCoversTheWaitForTheSide(void) {
  eshm_handle* master = NULL;
  eshm_handle* slave = NULL;
  if (!OpenBlockedPair(&master, &slave)) return;
  for (int write = 0; write <= 1; ++write) {
    BlockedArgs holder;
    const pthread_t thread = StartBlocked(&holder, slave, write, 600);
    SleepMs(20);
    const long start = NowMs();
    char buffer[64] = {0};
    size_t n = 0;
    const int rc = write ? eshm_write(slave, buffer, sizeof buffer, 700)
                         : eshm_read(slave, buffer, sizeof buffer, &n, 700);
    const long took = NowMs() - start;
    pthread_join(thread, NULL);
    if (atomic_load(&holder.rc) != ESHM_ERROR_TIMEOUT) FAIL("the holding eshm_%s returned %d", write ? "write" : "read",
                                                             atomic_load(&holder.rc));
    if (rc != ESHM_ERROR_TIMEOUT) FAIL("eshm_%s returned %d (%s)", write ? "write" : "read", rc, eshm_strerror(rc));
    if (took < 650 || took > 1000) {
      FAIL("eshm_%s with a 700 ms timeout, its side busy for ~580 ms of it, took %ld ms", write ? "write" : "read",
           took);
    }
    printf("eshm_%s with a 700 ms timeout behind another thread's turn ended after %ld ms\n",
           write ? "write" : "read", took);
  }
  eshm_close(slave);
  eshm_close(master);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  atomic_init(&g_progress, 0);
  atomic_init(&g_done, 0);
  pthread_t watchdog;
  if (pthread_create(&watchdog, NULL, Watchdog, NULL) != 0) abort();
  TestManyWritersManyReaders();
  TestCloseEndsBlockedCalls();
  TestATimeoutCoversTheWaitForTheSide();
  atomic_store(&g_done, 1);
  pthread_join(watchdog, NULL);
  RemoveSegments();
  if (g_failures != 0) {
    fprintf(stderr, "c_api_threads_test: %d check(s) FAILED\n", g_failures);
    return 1;
  }
  printf("c_api_threads_test: all checks passed\n");
  return 0;
}
