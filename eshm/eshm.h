/*
 * eshm.h - the C ABI of eshm, a lock-free shared-memory IPC engine for Linux.
 *
 * One named channel (/dev/shm/eshm_<name>) connects exactly one MASTER and one SLAVE process through two
 * rings of length-delimited messages: master->slave and slave->master. A full ring pushes back on the
 * writer; an unread message is never overwritten. Each side sees the other's liveness (role lock plus
 * heartbeat) and reconnects by itself when the peer comes back.
 *
 * This header is plain C (C99 or later, and C++): fixed-width integer types, no enums in signatures, no
 * bit fields, no padding in the structs. It is meant to be bound from any FFI (Python ctypes/cffi,
 * Node koffi, JNI/JNA, Rust bindgen, Go cgo). The shared library libeshm.so exports exactly the eshm_*
 * functions declared here.
 *
 * Conventions, for every function below:
 *  - Functions return an int result code: ESHM_SUCCESS (0) or a negative ESHM_ERROR_* code, unless stated
 *    otherwise. No function aborts, throws, or crashes on a NULL pointer or an out-of-range argument:
 *    those return ESHM_ERROR_INVALID_PARAM, and eshm_last_error() names the offending argument.
 *    (A pointer that is neither NULL nor valid, such as a handle already passed to eshm_close(), cannot be
 *    detected and is undefined behaviour, as in any C API.)
 *  - After a function returns an error, eshm_last_error() describes it (a message of the calling thread).
 *  - Timeouts are in milliseconds: -1 waits forever, 0 does not wait, a positive value waits at most that
 *    long. Any other negative value is ESHM_ERROR_INVALID_PARAM.
 *  - Messages are byte strings of 0..max_message_size bytes, delivered whole and in order. eshm adds no
 *    terminator: to send a C string, send strlen() bytes (or strlen()+1 to interoperate with old peers that
 *    expect the NUL).
 *  - Structs carry a `struct_size` first field, for ABI evolution: set it to sizeof(the struct) as your
 *    header declares it (eshm_config_init() does it for eshm_config). A library newer than your header
 *    reads/writes only the fields you know; an older library accepts a newer, larger struct as long as the
 *    fields it does not know are zero (eshm_config) and fills only the fields it knows (eshm_stats).
 *
 * Threading: a handle is thread-safe. Its two sides are serialized separately: write-side calls
 * (eshm_write, eshm_try_write, eshm_flush) from any number of threads take turns, and so do read-side calls
 * (eshm_read, eshm_try_read, eshm_next_message_size), while a write and a read still run in parallel. Each
 * message is written and read whole; messages written by different threads at the same time reach the
 * reader in some order, those of one thread in the order it wrote them. Taking a turn costs about two atomic
 * instructions when no other thread is on that side. A thread that finds its side busy:
 *  - eshm_write / eshm_read wait for their turn within their own timeout (ESHM_ERROR_TIMEOUT if another
 *    thread keeps the side past it, e.g. a read blocked with timeout -1);
 *  - eshm_try_write returns ESHM_ERROR_RING_FULL, eshm_try_read and eshm_next_message_size return
 *    ESHM_ERROR_NO_DATA (another thread is writing or reading right now: retry, as for a full or empty ring),
 *    and eshm_flush returns ESHM_SUCCESS (that thread's writes publish themselves).
 * eshm_get_role, eshm_is_remote_alive, eshm_peer_state, eshm_get_stats and eshm_max_message_size may be
 * called from any thread at any time. eshm_close may be called while other threads are inside calls on the
 * handle: calls blocked in eshm_read or eshm_write return ESHM_ERROR_CLOSED, at once if they wait for a
 * message, for room or for the peer, within about 50 ms if they wait for their turn on the handle, and
 * eshm_close returns only after every call in
 * progress has let go of the handle. No call may start on the handle once eshm_close has been called (it is
 * freed), and eshm_close must be called once. Different handles are independent.
 *
 * Signals: blocking calls (eshm_open as a slave waiting for its master, eshm_write, eshm_read) are not
 * interrupted by signals; use a finite timeout and check your own flag between calls.
 *
 * Example (error handling shortened):
 *
 *   eshm_config cfg;
 *   eshm_config_init(&cfg);
 *   cfg.role = ESHM_ROLE_MASTER;
 *   eshm_handle* h = NULL;
 *   if (eshm_open("demo", &cfg, &h) != ESHM_SUCCESS) {
 *     fprintf(stderr, "open: %s\n", eshm_last_error());
 *     return 1;
 *   }
 *   eshm_write(h, "hello", 5, 1000);
 *   char buf[4096];
 *   size_t n = 0;
 *   int rc = eshm_read(h, buf, sizeof buf, &n, 1000);  // ESHM_SUCCESS: buf[0..n) holds the reply
 *   eshm_close(h);
 */
#ifndef ESHM_ESHM_H_
#define ESHM_ESHM_H_

#include <stddef.h>
#include <stdint.h>

/* Marks the exported API (libeshm.so also limits its exports to eshm_* with a linker version script). */
#if defined(__GNUC__)
#define ESHM_API __attribute__((visibility("default")))
#else
#define ESHM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header; eshm_version() reports the library's. */
#define ESHM_VERSION_MAJOR 2
#define ESHM_VERSION_MINOR 1
#define ESHM_VERSION_PATCH 0
#define ESHM_VERSION_STRING "2.1.0"

/* ---- Roles (eshm_config.role, eshm_get_role) ---- */
#define ESHM_ROLE_MASTER 0 /* creates the channel; at most one live master per name */
#define ESHM_ROLE_SLAVE 1  /* attaches to the master's channel; at most one live slave per name */
#define ESHM_ROLE_AUTO 2   /* master if the master role is free, slave otherwise (race-free) */

/* ---- Disconnect behaviour (eshm_config.disconnect_behavior) ----
 * What a write (or a read that finds nothing queued) does while the peer is gone: dead, unresponsive, or
 * not yet attached. Messages already queued are always delivered first. */
#define ESHM_DISCONNECT_IMMEDIATELY 0 /* fail at once: ESHM_ERROR_MASTER_STALE / ESHM_ERROR_SLAVE_STALE */
#define ESHM_DISCONNECT_ON_TIMEOUT 1  /* wait up to reconnect_wait_ms for a peer that went away (exited or
                                         unresponsive), then fail (*_STALE); a peer that has not attached
                                         yet is waited for as long as the call's timeout allows */
#define ESHM_DISCONNECT_NEVER 2       /* wait for the peer as long as the call's own timeout allows */

/* ---- Result codes ----
 * Every code is distinct. 0 and -8..-11 keep the values of the original ESHM library. */
#define ESHM_SUCCESS 0
/* An argument is NULL, out of range, or inconsistent (a bad name, a bad config field, a NULL buffer with a
 * nonzero length, a negative timeout other than -1...). eshm_last_error() names the argument. */
#define ESHM_ERROR_INVALID_PARAM -1
/* The master could not create the shared-memory segment (an operating-system error other than
 * permissions or lack of space; see eshm_last_error()). */
#define ESHM_ERROR_SHM_CREATE -2
/* The segment could not be opened or mapped (an operating-system error other than the more specific codes
 * below). */
#define ESHM_ERROR_SHM_ATTACH -3
/* Reserved (the original library's detach failure); not returned by this version. */
#define ESHM_ERROR_SHM_DETACH -4
/* Reserved (the original library's segment removal failure); not returned by this version: a master's
 * eshm_close() removes the name best-effort. */
#define ESHM_ERROR_SHM_DELETE -5
/* Reserved (the original library's mutex initialization failure); eshm uses no locks in shared memory
 * and never returns it. */
#define ESHM_ERROR_MUTEX_INIT -6
/* A struct was passed without being initialized: its struct_size is 0. Call eshm_config_init(), or set
 * stats.struct_size = sizeof(eshm_stats). */
#define ESHM_ERROR_NOT_INITIALIZED -7
/* The next message is larger than the buffer. It stays queued; *out_len holds its size: read it again
 * with a buffer at least that large. */
#define ESHM_ERROR_BUFFER_TOO_SMALL -8
/* Nothing is queued (eshm_try_read, eshm_next_message_size). */
#define ESHM_ERROR_NO_DATA -9
/* The timeout passed: no message arrived (read), the ring stayed full (write), or the peer did not come
 * back in time. Also: a segment whose creator never finished initializing it. */
#define ESHM_ERROR_TIMEOUT -10
/* This endpoint is the slave and its master is gone (exited, unresponsive, or never attached) and, per the
 * disconnect behaviour, did not come back in time. Retrying later is fine: the slave reconnects by itself. */
#define ESHM_ERROR_MASTER_STALE -11
/* This endpoint is the master and its slave is gone (exited, unresponsive, or not attached yet); see
 * ESHM_ERROR_MASTER_STALE. */
#define ESHM_ERROR_SLAVE_STALE -12
/* eshm_open: a live process already holds the requested role (or, with ESHM_ROLE_AUTO, both roles).
 * eshm_last_error() gives its pid. */
#define ESHM_ERROR_ROLE_TAKEN -13
/* The message is larger than the channel's maximum message size (eshm_max_message_size()); it can never
 * be written. */
#define ESHM_ERROR_MESSAGE_TOO_LARGE -14
/* eshm_try_write: the outgoing ring has no room for the message right now (the reader is behind). */
#define ESHM_ERROR_RING_FULL -15
/* The shared memory is corrupt: the peer broke the ring's invariants, the segment's header is
 * inconsistent, or another process truncated the segment file (a read never returns a message such a
 * truncation damaged). Close the handle; remove the segment once no process uses it. */
#define ESHM_ERROR_CORRUPT -16
/* The channel is closed: a call that was in progress (blocked in eshm_read or eshm_write, or waiting for
 * its turn on the handle) when another thread called eshm_close. Also meant for bindings that wrap a
 * handle in an object and report a call after its close() with it. */
#define ESHM_ERROR_CLOSED -17
/* eshm_open as a slave: no master created the channel within max_reconnect_attempts retries. */
#define ESHM_ERROR_NOT_FOUND -18
/* eshm_open: /dev/shm/eshm_<name> belongs to another user and cfg.allow_other_owner is 0, or its owner,
 * group and mode do not let this process read and write it. eshm_last_error() names the owner and mode
 * and the fix (docs/operations.md, "Permissions"). */
#define ESHM_ERROR_PERMISSION -19
/* eshm_open: not enough shared memory for the segment (/dev/shm is full, or too many open files / too
 * little memory). Free space, use smaller capacities, or enlarge /dev/shm (docker run --shm-size=...). */
#define ESHM_ERROR_NO_SPACE -20
/* eshm_open: /dev/shm/eshm_<name> exists but is not a segment this library can use: another program's
 * file, a different eshm layout version, a symbolic link, or a truncated file. */
#define ESHM_ERROR_INCOMPATIBLE -21
/* An unexpected internal error; eshm_last_error() has the details. */
#define ESHM_ERROR_INTERNAL -22

/* The lowest (most negative) result code, for table-driven bindings: codes are ESHM_ERROR_LAST..0. */
#define ESHM_ERROR_LAST ESHM_ERROR_INTERNAL

/* An open endpoint. Opaque: create with eshm_open, destroy with eshm_close. */
typedef struct eshm_handle eshm_handle;

/* Channel options. Initialize with eshm_config_init(), then change what you need.
 * Layout (bytes): 96, no padding; offsets in the comments. Headers before 2.1 declared its first 88 bytes
 * (up to allow_sleep); the library still accepts that config, with allow_other_owner 0. */
typedef struct eshm_config {
  uint32_t struct_size;                /*  0: sizeof(eshm_config); set by eshm_config_init */
  int32_t role;                        /*  4: ESHM_ROLE_*; default ESHM_ROLE_AUTO */
  int32_t disconnect_behavior;         /*  8: ESHM_DISCONNECT_*; default ESHM_DISCONNECT_ON_TIMEOUT */
  int32_t stale_threshold_ms;          /* 12: peer is unresponsive after this long without a heartbeat;
                                                 > heartbeat_interval_ms; default 100 */
  int32_t heartbeat_interval_ms;       /* 16: the longest time between two beats of this side; >= 0;
                                                 default 0: a quarter of the smaller stale threshold of the
                                                 two sides */
  int32_t reconnect_wait_ms;           /* 20: ON_TIMEOUT: how long a call waits for a gone peer; >= 0;
                                                 default 5000 */
  int32_t reconnect_retry_interval_ms; /* 24: slave: how often it looks for a (new) master; > 0;
                                                 default 100 */
  int32_t max_reconnect_attempts;      /* 28: slave: how many times; 0 = unlimited (then eshm_open as a
                                                 slave waits forever for its master); default 50 */
  int32_t auto_cleanup;                /* 32: 1: a master's eshm_close removes the segment name; 0 or 1;
                                                 default 1 */
  int32_t use_threads;                 /* 36: 1: a monitor thread keeps the heartbeat; 0: the heartbeat
                                                 advances only inside eshm calls (call at least every
                                                 heartbeat interval); 0 or 1; default 1 */
  uint64_t m2s_capacity;               /* 40: master->slave ring bytes, a power of two in [4096, 2^32];
                                                 used by the creator only; default 1 MiB */
  uint64_t s2m_capacity;               /* 48: slave->master ring bytes, as above; default 1 MiB */
  uint64_t max_message_bytes;          /* 56: largest message; 0 = the largest the rings allow (about
                                                 half the smaller ring); creator only; default 0 */
  int64_t spin_ns;                     /* 64: blocking calls busy-poll this long first; >= 0;
                                                 default 20000 */
  int64_t yield_ns;                    /* 72: then poll with sched_yield() this long; >= 0;
                                                 default 30000 */
  uint32_t mode;                       /* 80: segment file permissions (creator only), permission bits
                                                 including 0600; default 0600 */
  int32_t allow_sleep;                 /* 84: 1: then sleep on a futex (idle costs no CPU); 0: never sleep
                                                 (lowest latency, a busy core per waiter); default 1 */
  int32_t allow_other_owner;           /* 88: 1: accept a segment file that another user owns (a channel
                                                 shared between users: see docs/operations.md,
                                                 "Permissions"); 0: refuse it with ESHM_ERROR_PERMISSION,
                                                 since another local user could have created the name
                                                 first to intercept the channel; default 0 */
  uint32_t reserved0;                  /* 92: 0 */
} eshm_config;

/* Statistics of a channel, as seen by one endpoint. Set struct_size = sizeof(eshm_stats) before calling
 * eshm_get_stats; the library sets it to the number of bytes it filled.
 * Layout (bytes): 168, no padding. The first ten fields after struct_size are the original library's. */
typedef struct eshm_stats {
  uint32_t struct_size;          /* in: sizeof(eshm_stats); out: bytes filled */
  uint32_t master_pid;           /* pid of the attached master, 0 if none */
  uint32_t slave_pid;            /* pid of the attached slave, 0 if none */
  uint32_t master_alive;         /* 1 if the master is alive (as this endpoint sees it) */
  uint32_t slave_alive;          /* 1 if the slave is alive (as this endpoint sees it) */
  uint32_t reserved0;            /* 0; keeps the 64-bit fields aligned */
  uint64_t master_heartbeat;     /* the master's heartbeat counter */
  uint64_t slave_heartbeat;      /* the slave's heartbeat counter */
  uint64_t m2s_write_count;      /* messages written master->slave (this segment's lifetime) */
  uint64_t m2s_read_count;       /* messages read master->slave */
  uint64_t s2m_write_count;      /* messages written slave->master */
  uint64_t s2m_read_count;       /* messages read slave->master */
  uint64_t epoch;                /* master attachments to this segment (1 = its creator only) */
  uint64_t reconnect_count;      /* times this endpoint saw its peer come back, or re-attached */
  uint64_t m2s_queued_bytes;     /* bytes queued master->slave (records, including headers) */
  uint64_t m2s_queued_messages;  /* messages queued master->slave */
  uint64_t s2m_queued_bytes;     /* bytes queued slave->master */
  uint64_t s2m_queued_messages;  /* messages queued slave->master */
  uint64_t m2s_capacity;         /* master->slave ring capacity, bytes */
  uint64_t s2m_capacity;         /* slave->master ring capacity, bytes */
  uint64_t max_message_bytes;    /* largest message either direction accepts */
  uint64_t wake_syscalls;        /* FUTEX_WAKE system calls, both rings, both sides */
  uint64_t wait_syscalls;        /* FUTEX_WAIT system calls, both rings, both sides */
  uint64_t segment_epoch_ns;     /* when the segment was created, ns since the Unix epoch */
} eshm_stats;

/* Fills the first `size` bytes of *cfg with the defaults (those of the original ESHM library): role AUTO,
 * disconnect ON_TIMEOUT, stale_threshold_ms 100, heartbeat_interval_ms 0 (automatic), reconnect_wait_ms 5000,
 * reconnect_retry_interval_ms 100, max_reconnect_attempts 50, auto_cleanup 1, use_threads 1, 1 MiB rings,
 * the largest message size, mode 0600, adaptive waits (spin 20 us, yield 30 us, then sleep),
 * allow_other_owner 0, and struct_size = size. Pass sizeof(eshm_config) as your header declares it (the
 * eshm_config_init macro below does): bytes past the config this library knows are zeroed, and nothing past
 * `size` is written, so a program built against an older or newer header stays in bounds.
 * ESHM_ERROR_INVALID_PARAM (nothing written) if cfg is NULL or size is below 88 (the oldest config). */
ESHM_API int eshm_config_init_size(eshm_config* cfg, size_t size);

/* The same for the 88-byte config of headers before 2.1 (without allow_other_owner); kept for programs built
 * against them, and for FFI declarations of that layout. NULL is ignored. New code gets the macro. */
ESHM_API void(eshm_config_init)(eshm_config* cfg);
#define eshm_config_init(cfg) ((void)eshm_config_init_size((cfg), sizeof(eshm_config)))

/* Opens the endpoint `name` of a channel and stores its handle in *out (set to NULL on failure).
 *  name: 1 to 250 characters from [A-Za-z0-9._-], NUL-terminated; the segment is /dev/shm/eshm_<name>.
 *  cfg:  NULL for the defaults, or a struct initialized with eshm_config_init().
 * A master (or AUTO) creates the segment, or takes over one whose master is dead. A slave waits for the
 * master to create it, retrying every reconnect_retry_interval_ms up to max_reconnect_attempts times
 * (0 = forever): with the defaults, about 5 s. Errors: INVALID_PARAM, NOT_INITIALIZED, ROLE_TAKEN,
 * NOT_FOUND, PERMISSION, NO_SPACE, INCOMPATIBLE, CORRUPT, TIMEOUT, SHM_CREATE, SHM_ATTACH. */
ESHM_API int eshm_open(const char* name, const eshm_config* cfg, eshm_handle** out);

/* Closes the endpoint: publishes anything still staged, releases the role and, for a master with
 * auto_cleanup, removes the segment name. Frees the handle: do not use it afterwards. NULL is a no-op.
 * Calls in progress on other threads end first (blocked ones with ESHM_ERROR_CLOSED, within about 50 ms;
 * see Threading above). Returns ESHM_SUCCESS. */
ESHM_API int eshm_close(eshm_handle* handle);

/* Sends one message of `len` bytes (data may be NULL only when len is 0), waiting up to timeout_ms for
 * room in the ring (backpressure) and, per the disconnect behaviour, for a gone peer. A message written
 * while the peer is absent is queued for it (unless ESHM_DISCONNECT_IMMEDIATELY). Errors: INVALID_PARAM,
 * MESSAGE_TOO_LARGE, TIMEOUT, MASTER_STALE / SLAVE_STALE, CLOSED (eshm_close on another thread). */
ESHM_API int eshm_write(eshm_handle* handle, const void* data, size_t len, int timeout_ms);

/* Sends one message without waiting. ESHM_ERROR_RING_FULL when the ring has no room right now (or another
 * thread is writing on this handle right now); MASTER_STALE / SLAVE_STALE only under
 * ESHM_DISCONNECT_IMMEDIATELY. Other errors as eshm_write. */
ESHM_API int eshm_try_write(eshm_handle* handle, const void* data, size_t len);

/* Receives the next message into buf[0..cap), waiting up to timeout_ms, and stores its length in
 * *out_len. buf may be NULL only when cap is 0 (a way to learn the next message's size).
 * ESHM_ERROR_BUFFER_TOO_SMALL: the message is larger than cap; it stays queued and *out_len holds its
 * size. Other errors: INVALID_PARAM, TIMEOUT, MASTER_STALE / SLAVE_STALE, CORRUPT, CLOSED (eshm_close on
 * another thread). With the peer gone,
 * messages it queued are delivered first; then ON_TIMEOUT waits up to min(timeout_ms, reconnect_wait_ms)
 * for it: TIMEOUT if timeout_ms ran out first, MASTER_STALE / SLAVE_STALE if reconnect_wait_ms did (a
 * peer that has not attached yet only ends the wait at timeout_ms: TIMEOUT).
 * *out_len is 0 after any other error. */
ESHM_API int eshm_read(eshm_handle* handle, void* buf, size_t cap, size_t* out_len, int timeout_ms);

/* Receives the next message without waiting: as eshm_read, but ESHM_ERROR_NO_DATA when nothing is
 * queued or another thread is reading on this handle right now (and MASTER_STALE / SLAVE_STALE only under
 * ESHM_DISCONNECT_IMMEDIATELY). */
ESHM_API int eshm_try_read(eshm_handle* handle, void* buf, size_t cap, size_t* out_len);

/* Stores the size of the next queued message in *out without consuming it; ESHM_ERROR_NO_DATA (and
 * *out = 0) when nothing is queued, or another thread is reading on this handle right now (the size would
 * be of the message that thread takes). Read-side call. */
ESHM_API int eshm_next_message_size(eshm_handle* handle, size_t* out);

/* Stores the largest message size this channel accepts, in bytes, in *out. */
ESHM_API int eshm_max_message_size(eshm_handle* handle, size_t* out);

/* Publishes any staged messages. eshm_write / eshm_try_write publish at once, so this is only needed by
 * future batching calls; it is always safe. Write-side call (ESHM_SUCCESS at once if another thread is
 * writing on this handle right now). */
ESHM_API int eshm_flush(eshm_handle* handle);

/* Stores the role this endpoint holds, ESHM_ROLE_MASTER or ESHM_ROLE_SLAVE (never AUTO), in *role. */
ESHM_API int eshm_get_role(eshm_handle* handle, int* role);

/* Returns 1 if the peer is alive (holds its role and its heartbeat advances), 0 if it is absent, dead or
 * unresponsive, or a negative ESHM_ERROR_* code (ESHM_ERROR_INVALID_PARAM for a NULL handle). */
ESHM_API int eshm_is_remote_alive(eshm_handle* handle);

/* ---- Peer states (eshm_peer_state) ---- */
#define ESHM_PEER_ABSENT 0       /* no peer has attached to this channel's segment since this endpoint did */
#define ESHM_PEER_ALIVE 1        /* holds its role, heartbeat advancing */
#define ESHM_PEER_UNRESPONSIVE 2 /* holds its role, heartbeat stale (frozen, stopped, or starved) */
#define ESHM_PEER_DEAD 3         /* its role is free after a peer had attached (it exited or closed) */

/* Stores the peer's state, ESHM_PEER_*, in *state: what eshm_is_remote_alive tells apart further (a peer
 * that went away, which ON_TIMEOUT gives reconnect_wait_ms to come back, from one not attached yet). */
ESHM_API int eshm_peer_state(eshm_handle* handle, int* state);

/* Fills *out with the channel's statistics. Set out->struct_size = sizeof(eshm_stats) first
 * (ESHM_ERROR_NOT_INITIALIZED if it is 0); on return it holds the number of bytes filled. */
ESHM_API int eshm_get_stats(eshm_handle* handle, eshm_stats* out);

/* ---- Wait sets: waiting on many handles at once ----
 *
 * A wait set sleeps until any of its members is readable (a message is queued), writable (a message of a
 * given size fits) or its peer changed state, so that one thread serves many channels without polling them
 * (the C form of eshm::WaitSet, eshm/wait_set.h). While messages flow a wait polls and makes no system call;
 * when all members are idle it sleeps once, on all of them together (FUTEX_WAITV, Linux 5.16+; a set of more
 * than 127 members sleeps on the 127 most recently ready ones and looks at the others every millisecond).
 *
 * Example (error handling shortened):
 *
 *   eshm_waitset* set = NULL;
 *   eshm_waitset_create(&set);
 *   eshm_waitset_add(set, a, ESHM_WAIT_READABLE, 0);
 *   eshm_waitset_add(set, b, ESHM_WAIT_READABLE, 0);
 *   eshm_ready ready[2];
 *   size_t n = 0;
 *   while (eshm_waitset_wait(set, ready, 2, &n, 1000) == ESHM_SUCCESS) {
 *     for (size_t i = 0; i < n; ++i) {
 *       if (ready[i].events & ESHM_WAIT_CLOSED) { eshm_waitset_remove(set, ready[i].handle); continue; }
 *       if (ready[i].events & ESHM_WAIT_READABLE) eshm_try_read(ready[i].handle, buf, sizeof buf, &len);
 *     }
 *   }
 *   eshm_waitset_destroy(set);
 *
 * Threading. eshm_waitset_add, eshm_waitset_remove and eshm_waitset_wake may be called from any thread,
 * also while another thread waits on the set (a running wait takes the change into account at once). One
 * thread at a time may wait on a set. A wait takes turns with the members' own calls (see Threading at the
 * top): while it looks at a member it holds that member's read side (members it waits to read from) and
 * write side (members it waits to write to), and it never waits for a side: a member whose side another
 * thread's call holds (an eshm_read blocked on another thread, say) is left out of the wait and looked at
 * again every 2 ms until the side is free, so one busy member never stalls the others (a handle in two sets
 * waited on at the same time is watched by one of them at a time, the other polls it). A blocking call on
 * another thread that needs a side the wait holds (eshm_read, eshm_write) gets it at once: the wait lets go
 * of it and leaves that member out while the call runs. Non-blocking calls on another thread do not wait:
 * while a wait holds the read side, eshm_try_read and eshm_next_message_size return ESHM_ERROR_NO_DATA
 * (as when another thread reads), and while it holds the write side eshm_try_write returns
 * ESHM_ERROR_RING_FULL. When eshm_waitset_wait returns it holds no side: the caller (this thread or any
 * other) then reads and writes the ready members with the usual calls (eshm_try_read, eshm_try_write...).
 *
 * Closing a member. eshm_close on a member, from any thread, also while a wait runs, is safe: the set learns
 * it from the handle (a handle knows the sets it is in), never touches the handle again, and reports it with
 * ESHM_WAIT_CLOSED (a running wait returns within a few microseconds of the eshm_close: it lets go of the
 * handle's sides, which eshm_close waits for before it frees the handle). The member stays in the set, and
 * is reported ESHM_WAIT_CLOSED by every wait, until eshm_waitset_remove removes it by its (dangling) pointer,
 * which is only compared, never dereferenced. Remove it before a new handle can reuse its address (a handle
 * at the address of a closed member still in the set cannot be added: ESHM_ERROR_INVALID_PARAM).
 *
 * Falls short: eshm_waitset_wake is async-signal-safe only when it succeeds (a set that is valid); the
 * left-out members of a wait are polled, not slept on (every 2 ms, each time waking the waiting thread). */

/* Events (eshm_waitset_add's interest, eshm_ready.events): the values of eshm::WaitSet::Event. */
#define ESHM_WAIT_READABLE 1u     /* a message is queued (or the ring is corrupt: a read reports it) */
#define ESHM_WAIT_WRITABLE 2u     /* a message of the member's write_size fits now */
#define ESHM_WAIT_PEER_CHANGED 4u /* the peer's state changed since the set last reported it: see
                                     eshm_peer_state (always reported, not an interest) */
#define ESHM_WAIT_CLOSED 8u       /* eshm_close was called on the handle: remove it; the pointer is no longer
                                     valid (always reported, not an interest) */

/* A wait set. Opaque: create with eshm_waitset_create, destroy with eshm_waitset_destroy. */
typedef struct eshm_waitset eshm_waitset;

/* One ready member, as eshm_waitset_wait reports it.
 * Layout: the pointer, then two 32-bit words; no padding (16 bytes on 64-bit targets). */
typedef struct eshm_ready {
  eshm_handle* handle; /* the member (with ESHM_WAIT_CLOSED: a pointer that must not be used, only compared) */
  uint32_t events;     /* ESHM_WAIT_* bits, at least one */
  uint32_t reserved0;  /* 0 */
} eshm_ready;

/* Creates an empty wait set and stores it in *out (NULL on failure). Errors: INVALID_PARAM (out is NULL),
 * INTERNAL (out of memory). */
ESHM_API int eshm_waitset_create(eshm_waitset** out);

/* Destroys the set: its members leave it (they stay open). NULL is a no-op (ESHM_SUCCESS), as for
 * eshm_close. ESHM_ERROR_INVALID_PARAM, and the set is left intact, while a wait runs on it on another
 * thread: end it with eshm_waitset_wake and destroy the set once eshm_waitset_wait has returned. */
ESHM_API int eshm_waitset_destroy(eshm_waitset* set);

/* Adds `handle` to the set, to wait until it is readable and/or writable (`interest`: ESHM_WAIT_READABLE,
 * ESHM_WAIT_WRITABLE or both; peer changes and closing are always reported). `write_size`: with
 * ESHM_WAIT_WRITABLE, the size of message that must fit (0 and any size up to eshm_max_message_size);
 * ignored otherwise. May be called while another thread waits on the set. Errors:
 *  - INVALID_PARAM: set or handle is NULL (or not an open handle / a live set), interest is 0 or has other
 *    bits, the handle is already a member (to change its interest, remove it and add it again), or a
 *    closed member with the same address is still in the set (remove it first);
 *  - MESSAGE_TOO_LARGE: write_size is larger than the channel's maximum message size (it would never be
 *    writable);
 *  - CLOSED: eshm_close is running on the handle (on another thread).
 * Nothing changes on an error. */
ESHM_API int eshm_waitset_add(eshm_waitset* set, eshm_handle* handle, uint32_t interest, size_t write_size);

/* Removes `handle` from the set, found by its pointer, which is never dereferenced: also a member that was
 * closed (reported ESHM_WAIT_CLOSED), whose handle is freed. May be called while another thread waits on the
 * set (that wait then lets go of the handle's sides at once and never looks at it again). Errors:
 * INVALID_PARAM (set or handle is NULL, or set is not a live set), NOT_FOUND (the handle is not a member). */
ESHM_API int eshm_waitset_remove(eshm_waitset* set, eshm_handle* handle);

/* Waits until at least one member is ready, then fills out[0..*out_count) with the ready members (each
 * once, with all its events) and returns ESHM_SUCCESS. Also returns ESHM_SUCCESS, with *out_count 0, when
 * timeout_ms passes (-1: never; 0: only look, do not wait) or when eshm_waitset_wake ends the wait (or was
 * called since the last wait). An empty set just waits for the timeout or a wake.
 * More ready members than `capacity`: the first `capacity` are reported, and the next waits report the
 * others (at once): READABLE and WRITABLE are looked at afresh, PEER_CHANGED and CLOSED are kept until they
 * are reported. Members are listed from a rotating start, so a busy member never hides the others.
 * Holds the sides of the members while it looks at them, never waiting for one (see Threading above).
 * Errors (*out_count is 0):
 *  - INVALID_PARAM: set, out or out_count is NULL, capacity is 0, timeout_ms is below -1, or another thread
 *    is waiting on this set right now (one waiter at a time);
 *  - MESSAGE_TOO_LARGE: a member's write_size no longer fits its channel (a slave that followed its master
 *    to a segment with a smaller maximum message size); remove that member;
 *  - INTERNAL: an unexpected failure (out of memory). */
ESHM_API int eshm_waitset_wait(eshm_waitset* set, eshm_ready* out, size_t capacity, size_t* out_count,
                               int timeout_ms);

/* Ends the wait in progress on the set early (it returns ESHM_SUCCESS with what is ready, possibly nothing),
 * or, if none is in progress, the next one. Any thread; async-signal-safe when it succeeds (it only stores
 * to atomics and makes one futex system call), so a signal handler may call it. Errors: INVALID_PARAM (set
 * is NULL, or not a live set). */
ESHM_API int eshm_waitset_wake(eshm_waitset* set);

/* A static, human-readable description of a result code ("success", "no data available", ...), never
 * NULL; "unknown error code" for a value that is not a code. */
ESHM_API const char* eshm_strerror(int code);

/* The message of the last failure of an eshm_* call on the calling thread (the full explanation, with the
 * channel name, paths, pids and what to do), or "" if none has failed on this thread. Never NULL. The
 * pointer stays valid until the next failing eshm_* call on the same thread; copy the text to keep it.
 * Successful calls leave it unchanged, so read it only right after a call returned an error. */
ESHM_API const char* eshm_last_error(void);

/* The library's version, e.g. "2.0.0" (static string). */
ESHM_API const char* eshm_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ESHM_ESHM_H_ */
