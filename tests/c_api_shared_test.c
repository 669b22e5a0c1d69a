/* libeshm.so as an FFI user sees it (ctypes, koffi, JNA): loaded with dlopen, every function looked up by
 * name, nothing but the eshm_* functions exported. Also proves eshm.h is plain C99 (this file is built
 * with -std=c99 -pedantic-errors). Exits non-zero on failure. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eshm/eshm.h"

static int g_failures = 0;

#define CHECK(cond, msg)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      ++g_failures;                                                   \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, (msg)); \
    }                                                                 \
  } while (0)

typedef void (*ConfigInitFn)(eshm_config*);
typedef int (*ConfigInitSizeFn)(eshm_config*, size_t);
typedef int (*OpenFn)(const char*, const eshm_config*, eshm_handle**);
typedef int (*CloseFn)(eshm_handle*);
typedef int (*WriteFn)(eshm_handle*, const void*, size_t, int);
typedef int (*ReadFn)(eshm_handle*, void*, size_t, size_t*, int);
typedef int (*StatsFn)(eshm_handle*, eshm_stats*);
typedef const char* (*StringFn)(void);
typedef const char* (*StrerrorFn)(int);

/* dlsym returns void*; converting it to a function pointer through a union keeps -pedantic quiet. */
typedef union {
  void* object;
  void (*function)(void);
} Symbol;

static void (*Lookup(void* lib, const char* name))(void) {
  Symbol s;
  s.object = dlsym(lib, name);
  return s.function;
}

int main(void) {
  static const char* const kExported[] = {
      "eshm_config_init", "eshm_config_init_size", "eshm_open",  "eshm_close",        "eshm_write",
      "eshm_try_write",   "eshm_read",         "eshm_try_read",     "eshm_next_message_size",
      "eshm_max_message_size", "eshm_flush",   "eshm_get_role",     "eshm_is_remote_alive",
      "eshm_get_stats",   "eshm_strerror",     "eshm_last_error",   "eshm_version",      "eshm_peer_state",
      "eshm_waitset_create", "eshm_waitset_destroy", "eshm_waitset_add", "eshm_waitset_remove",
      "eshm_waitset_wait", "eshm_waitset_wake",
  };
  /* C++ internals that must stay hidden (eshm::Channel::Close(), eshm::Segment::Unlink(string_view)). */
  static const char* const kHidden[] = {
      "_ZN4eshm7Channel5CloseEv",
      "_ZN4eshm7Segment6UnlinkESt17basic_string_viewIcSt11char_traitsIcEE",
      "_ZN4eshm7WaitSet4WakeEv",
  };
  char path[4096];
  const char* srcdir = getenv("TEST_SRCDIR");
  if (srcdir != NULL) {
    snprintf(path, sizeof path, "%s/eshm/eshm/libeshm.so", srcdir);
  } else {
    snprintf(path, sizeof path, "eshm/libeshm.so");
  }
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "FAIL: dlopen(%s): %s\n", path, dlerror());
    return 1;
  }
  size_t i;
  for (i = 0; i < sizeof kExported / sizeof kExported[0]; ++i) {
    if (Lookup(lib, kExported[i]) == NULL) {
      ++g_failures;
      fprintf(stderr, "FAIL: %s is not exported by %s\n", kExported[i], path);
    }
  }
  for (i = 0; i < sizeof kHidden / sizeof kHidden[0]; ++i) {
    if (Lookup(lib, kHidden[i]) != NULL) {
      ++g_failures;
      fprintf(stderr, "FAIL: internal symbol %s is exported by %s\n", kHidden[i], path);
    }
  }
  if (g_failures != 0) return 1;

  ConfigInitFn config_init_v1 = (ConfigInitFn)Lookup(lib, "eshm_config_init");
  ConfigInitSizeFn config_init_size = (ConfigInitSizeFn)Lookup(lib, "eshm_config_init_size");
  OpenFn open_fn = (OpenFn)Lookup(lib, "eshm_open");
  CloseFn close_fn = (CloseFn)Lookup(lib, "eshm_close");
  WriteFn write_fn = (WriteFn)Lookup(lib, "eshm_write");
  ReadFn read_fn = (ReadFn)Lookup(lib, "eshm_read");
  StatsFn stats_fn = (StatsFn)Lookup(lib, "eshm_get_stats");
  StringFn version = (StringFn)Lookup(lib, "eshm_version");
  StringFn last_error = (StringFn)Lookup(lib, "eshm_last_error");
  StrerrorFn strerror_fn = (StrerrorFn)Lookup(lib, "eshm_strerror");

  CHECK(strcmp(version(), ESHM_VERSION_STRING) == 0, "the library's version matches the header's");
  CHECK(strcmp(strerror_fn(ESHM_ERROR_TIMEOUT), "timed out") == 0, "eshm_strerror through dlsym");

  char name[64];
  snprintf(name, sizeof name, "capi_shared_%d", (int)getpid());
  /* The symbol eshm_config_init is the pre-2.1 88-byte init, for binaries built against those headers: it
   * writes exactly 88 bytes. */
  unsigned char v1[88 + 8];
  memset(v1, 0xAB, sizeof v1);
  config_init_v1((eshm_config*)v1);
  uint32_t v1_size = 0;
  memcpy(&v1_size, v1, sizeof v1_size);
  CHECK(v1_size == 88, "the old init sets struct_size 88");
  int v1_tail_untouched = 1;
  for (size_t at = 88; at < sizeof v1; ++at) v1_tail_untouched &= v1[at] == 0xAB;
  CHECK(v1_tail_untouched, "the old init writes nothing past byte 88");

  eshm_config cfg;
  CHECK(config_init_size(&cfg, sizeof cfg) == ESHM_SUCCESS, "eshm_config_init_size through dlsym");
  cfg.role = ESHM_ROLE_MASTER;
  eshm_handle* master = NULL;
  eshm_handle* slave = NULL;
  int rc = open_fn(name, &cfg, &master);
  if (rc != ESHM_SUCCESS) fprintf(stderr, "open master: %s\n", last_error());
  CHECK(rc == ESHM_SUCCESS, "open master through libeshm.so");
  cfg.role = ESHM_ROLE_SLAVE;
  rc = open_fn(name, &cfg, &slave);
  if (rc != ESHM_SUCCESS) fprintf(stderr, "open slave: %s\n", last_error());
  CHECK(rc == ESHM_SUCCESS, "open slave through libeshm.so");
  if (master != NULL && slave != NULL) {
    char buf[64];
    size_t n = 0;
    CHECK(write_fn(master, "Hello from master #0", 20, 1000) == ESHM_SUCCESS, "write");
    CHECK(read_fn(slave, buf, sizeof buf, &n, 1000) == ESHM_SUCCESS, "read");
    CHECK(n == 20 && memcmp(buf, "Hello from master #0", 20) == 0, "message intact");
    CHECK(write_fn(slave, "ACK from slave #0", 17, 1000) == ESHM_SUCCESS, "reply");
    CHECK(read_fn(master, buf, sizeof buf, &n, 1000) == ESHM_SUCCESS, "read reply");
    CHECK(n == 17 && memcmp(buf, "ACK from slave #0", 17) == 0, "reply intact");
    eshm_stats st;
    st.struct_size = sizeof st;
    CHECK(stats_fn(master, &st) == ESHM_SUCCESS, "stats");
    CHECK(st.m2s_write_count == 1 && st.s2m_read_count == 1, "stats counts");
    CHECK(read_fn(slave, buf, sizeof buf, &n, -5) == ESHM_ERROR_INVALID_PARAM, "bad timeout");
    CHECK(strstr(last_error(), "timeout_ms") != NULL, "last_error through dlsym names the argument");
  }
  CHECK(close_fn(slave) == ESHM_SUCCESS, "close slave");
  CHECK(close_fn(master) == ESHM_SUCCESS, "close master");
  dlclose(lib);
  if (g_failures != 0) {
    fprintf(stderr, "c_api_shared_test: %d checks FAILED\n", g_failures);
    return 1;
  }
  printf("c_api_shared_test: ok\n");
  return 0;
}
