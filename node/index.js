'use strict';
// eshm for Node.js: the C ABI of libeshm.so (eshm/eshm.h) through koffi, wrapped in a Channel class.
//
// Threading: JavaScript runs on one thread, so synchronous calls can never overlap. The only other thread is
// koffi's worker running the one eshm_waitset_wait that serves every pending readAsync() of the process
// (ReadDispatcher below): while it runs it holds the read side of the channels with pending reads (their
// sync reads are refused anyway), and an eshm_close() of such a channel is deferred until it returns, so
// the handle is never freed under it.

const koffi = require('koffi');

const Role = Object.freeze({ MASTER: 0, SLAVE: 1, AUTO: 2 });

const DisconnectBehavior = Object.freeze({ IMMEDIATELY: 0, ON_TIMEOUT: 1, NEVER: 2 });

// eshm_peer_state's values (ESHM_PEER_* of eshm.h).
const PeerState = Object.freeze({ ABSENT: 0, ALIVE: 1, UNRESPONSIVE: 2, DEAD: 3 });

// The result codes of eshm.h, by their names without the ESHM_ERROR_ prefix.
const ErrorCode = Object.freeze({
  SUCCESS: 0,
  INVALID_PARAM: -1,
  SHM_CREATE: -2,
  SHM_ATTACH: -3,
  SHM_DETACH: -4,
  SHM_DELETE: -5,
  MUTEX_INIT: -6,
  NOT_INITIALIZED: -7,
  BUFFER_TOO_SMALL: -8,
  NO_DATA: -9,
  TIMEOUT: -10,
  MASTER_STALE: -11,
  SLAVE_STALE: -12,
  ROLE_TAKEN: -13,
  MESSAGE_TOO_LARGE: -14,
  RING_FULL: -15,
  CORRUPT: -16,
  CLOSED: -17,
  NOT_FOUND: -18,
  PERMISSION: -19,
  NO_SPACE: -20,
  INCOMPATIBLE: -21,
  INTERNAL: -22,
});

const CODE_NAMES = new Map(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

// eshm.h's wait set events (ESHM_WAIT_*) and the size of an eshm_ready (a pointer and two 32-bit words).
const WAIT_READABLE = 1;
const WAIT_PEER_CHANGED = 4;
const READY_BYTES = 16;

class EshmError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'EshmError';
    this.code = code;
    this.codeName = CODE_NAMES.get(code) || 'UNKNOWN';
  }
}

// ---- The library ----

const LIBRARY_ENV = 'ESHM_LIBESHM';
const LIBRARY_NAME = 'libeshm.so';

// koffi type names are global to the process: declare them once, however many libraries are loaded.
let types = null;
function declareTypes() {
  if (types) return types;
  const handle = koffi.opaque('eshm_handle');
  const waitset = koffi.opaque('eshm_waitset');
  const ready = koffi.struct('eshm_ready', { handle: 'eshm_handle *', events: 'uint32_t', reserved0: 'uint32_t' });
  const config = koffi.struct('eshm_config', {
    struct_size: 'uint32_t',
    role: 'int32_t',
    disconnect_behavior: 'int32_t',
    stale_threshold_ms: 'int32_t',
    heartbeat_interval_ms: 'int32_t',
    reconnect_wait_ms: 'int32_t',
    reconnect_retry_interval_ms: 'int32_t',
    max_reconnect_attempts: 'int32_t',
    auto_cleanup: 'int32_t',
    use_threads: 'int32_t',
    m2s_capacity: 'uint64_t',
    s2m_capacity: 'uint64_t',
    max_message_bytes: 'uint64_t',
    spin_ns: 'int64_t',
    yield_ns: 'int64_t',
    mode: 'uint32_t',
    allow_sleep: 'int32_t',
    allow_other_owner: 'int32_t',
    reserved0: 'uint32_t',
  });
  const stats = koffi.struct('eshm_stats', {
    struct_size: 'uint32_t',
    master_pid: 'uint32_t',
    slave_pid: 'uint32_t',
    master_alive: 'uint32_t',
    slave_alive: 'uint32_t',
    reserved0: 'uint32_t',
    master_heartbeat: 'uint64_t',
    slave_heartbeat: 'uint64_t',
    m2s_write_count: 'uint64_t',
    m2s_read_count: 'uint64_t',
    s2m_write_count: 'uint64_t',
    s2m_read_count: 'uint64_t',
    epoch: 'uint64_t',
    reconnect_count: 'uint64_t',
    m2s_queued_bytes: 'uint64_t',
    m2s_queued_messages: 'uint64_t',
    s2m_queued_bytes: 'uint64_t',
    s2m_queued_messages: 'uint64_t',
    m2s_capacity: 'uint64_t',
    s2m_capacity: 'uint64_t',
    max_message_bytes: 'uint64_t',
    wake_syscalls: 'uint64_t',
    wait_syscalls: 'uint64_t',
    segment_epoch_ns: 'uint64_t',
  });
  // The header fixes these sizes; a mismatch means the declarations above drifted from eshm.h.
  if (koffi.sizeof(config) !== 96 || koffi.sizeof(stats) !== 168 || koffi.sizeof(ready) !== READY_BYTES) {
    throw new Error(
      `eshm: struct sizes ${koffi.sizeof(config)}/${koffi.sizeof(stats)}/${koffi.sizeof(ready)}, ` +
        `expected 96/168/${READY_BYTES}`,
    );
  }
  types = { handle, waitset, ready, config, stats };
  return types;
}

// Bound functions per library path, so many channels share one load.
const libraries = new Map();

function bind(lib) {
  declareTypes();
  return {
    configInitSize: lib.func('int eshm_config_init_size(_Out_ eshm_config *cfg, size_t size)'),
    open: lib.func('int eshm_open(const char *name, const eshm_config *cfg, _Out_ eshm_handle **out)'),
    close: lib.func('int eshm_close(eshm_handle *h)'),
    // Data pointers are void*: Buffers and typed arrays pass their memory directly, without a copy.
    write: lib.func('int eshm_write(eshm_handle *h, const void *data, size_t len, int timeout_ms)'),
    tryWrite: lib.func('int eshm_try_write(eshm_handle *h, const void *data, size_t len)'),
    read: lib.func('int eshm_read(eshm_handle *h, void *buf, size_t cap, void *out_len, int timeout_ms)'),
    tryRead: lib.func('int eshm_try_read(eshm_handle *h, void *buf, size_t cap, void *out_len)'),
    nextMessageSize: lib.func('int eshm_next_message_size(eshm_handle *h, void *out)'),
    maxMessageSize: lib.func('int eshm_max_message_size(eshm_handle *h, void *out)'),
    flush: lib.func('int eshm_flush(eshm_handle *h)'),
    getRole: lib.func('int eshm_get_role(eshm_handle *h, _Out_ int *role)'),
    isRemoteAlive: lib.func('int eshm_is_remote_alive(eshm_handle *h)'),
    peerState: lib.func('int eshm_peer_state(eshm_handle *h, _Out_ int *state)'),
    getStats: lib.func('int eshm_get_stats(eshm_handle *h, _Inout_ eshm_stats *out)'),
    strerror: lib.func('const char *eshm_strerror(int code)'),
    lastError: lib.func('const char *eshm_last_error()'),
    version: lib.func('const char *eshm_version()'),
    // The wait set behind readAsync(). The ready array and the count are raw memory (a Buffer, a
    // BigUint64Array) that the call on koffi's worker fills and the main thread decodes afterwards.
    waitsetCreate: lib.func('int eshm_waitset_create(_Out_ eshm_waitset **out)'),
    waitsetAdd: lib.func('int eshm_waitset_add(eshm_waitset *set, eshm_handle *h, uint32_t interest, size_t write_size)'),
    waitsetRemove: lib.func('int eshm_waitset_remove(eshm_waitset *set, eshm_handle *h)'),
    waitsetWait: lib.func(
      'int eshm_waitset_wait(eshm_waitset *set, void *out, size_t capacity, void *out_count, int timeout_ms)',
    ),
    waitsetWake: lib.func('int eshm_waitset_wake(eshm_waitset *set)'),
    dispatcher: null, // the ReadDispatcher of this library, made by the first readAsync() that waits
  };
}

/**
 * Loads libeshm.so: `libraryPath`, else $ESHM_LIBESHM, else "libeshm.so" through the dynamic loader's
 * search path (LD_LIBRARY_PATH, ld.so.cache). Returns the bound functions.
 */
function loadLibrary(libraryPath) {
  let source = 'the libraryPath option';
  let path = libraryPath;
  if (!path && process.env[LIBRARY_ENV]) [source, path] = [`$${LIBRARY_ENV}`, process.env[LIBRARY_ENV]];
  if (!path) [source, path] = ['the dynamic loader search path', LIBRARY_NAME];
  const cached = libraries.get(path);
  if (cached) return cached;
  let lib;
  try {
    lib = koffi.load(path);
  } catch (err) {
    throw new Error(
      `eshm: cannot load ${path} (from ${source}): ${err.message}. ` +
        `The library is looked up in this order: the libraryPath option of Channel.open(), ` +
        `the ${LIBRARY_ENV} environment variable, then ${LIBRARY_NAME} on the dynamic loader path ` +
        `(LD_LIBRARY_PATH). Build it with: bazel build //eshm:libeshm.so`,
    );
  }
  const bound = bind(lib);
  libraries.set(path, bound);
  return bound;
}

// ---- Arguments ----

// Reads larger than this first try a buffer of this size, then grow to the message (it stays queued).
const INITIAL_READ_BUFFER = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 1000;

function timeoutOf(options, what) {
  const t = options && options.timeoutMs !== undefined ? options.timeoutMs : DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(t) || t < -1 || t > 0x7fffffff) {
    throw new EshmError(ErrorCode.INVALID_PARAM, `${what}: timeoutMs must be an integer >= -1 (-1 = forever), got ${t}`);
  }
  return t;
}

function bytesOf(data, what) {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data; // Buffer too
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new EshmError(ErrorCode.INVALID_PARAM, `${what}: data must be a Buffer, a Uint8Array, an ArrayBuffer or a string`);
}

// eshm_config fields by option name: [C field, check].
const CONFIG_FIELDS = {
  role: ['role', (v) => v === 0 || v === 1 || v === 2],
  disconnectBehavior: ['disconnect_behavior', (v) => v === 0 || v === 1 || v === 2],
  staleThresholdMs: ['stale_threshold_ms', Number.isInteger],
  heartbeatIntervalMs: ['heartbeat_interval_ms', Number.isInteger],
  reconnectWaitMs: ['reconnect_wait_ms', Number.isInteger],
  reconnectRetryIntervalMs: ['reconnect_retry_interval_ms', Number.isInteger],
  maxReconnectAttempts: ['max_reconnect_attempts', Number.isInteger],
  autoCleanup: ['auto_cleanup', (v) => typeof v === 'boolean'],
  useThreads: ['use_threads', (v) => typeof v === 'boolean'],
  m2sCapacity: ['m2s_capacity', Number.isSafeInteger],
  s2mCapacity: ['s2m_capacity', Number.isSafeInteger],
  maxMessageBytes: ['max_message_bytes', Number.isSafeInteger],
  spinNs: ['spin_ns', Number.isSafeInteger],
  yieldNs: ['yield_ns', Number.isSafeInteger],
  mode: ['mode', Number.isInteger],
  allowSleep: ['allow_sleep', (v) => typeof v === 'boolean'],
  allowOtherOwner: ['allow_other_owner', (v) => typeof v === 'boolean'],
};

function buildConfig(lib, options) {
  const cfg = {};
  lib.configInitSize(cfg, koffi.sizeof(types.config));
  for (const [key, value] of Object.entries(options)) {
    if (key === 'libraryPath' || value === undefined) continue;
    const field = CONFIG_FIELDS[key];
    if (!field) throw new EshmError(ErrorCode.INVALID_PARAM, `Channel.open: unknown option ${key}`);
    const [cName, valid] = field;
    if (!valid(value)) {
      throw new EshmError(ErrorCode.INVALID_PARAM, `Channel.open: invalid ${key}: ${String(value)}`);
    }
    // Range checks beyond the type are the library's: it names the field in eshm_last_error().
    cfg[cName] = typeof value === 'boolean' ? (value ? 1 : 0) : value;
  }
  return cfg;
}

// ---- The channel ----

// Stats fields that hold nanoseconds since the epoch exceed 2^53: they stay bigint.
const STATS_BIGINT = new Set(['segment_epoch_ns']);

function camel(name) {
  return name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

class Channel {
  /** Use Channel.open(). */
  constructor(lib, handle, name, role, maxMessageSize, cfg) {
    this._lib = lib;
    // readAsync() needs these to report a gone peer as a single eshm_read would (see _readAsyncNow).
    this._disconnectBehavior = cfg.disconnect_behavior;
    this._reconnectWaitMs = cfg.reconnect_wait_ms;
    this._h = handle;
    this._name = name;
    this._role = role;
    this._maxMessageSize = maxMessageSize;
    this._closed = false;
    // Pending readAsync() calls, served in call order: { timeout, resolve, reject, deadline, goneSince }.
    // The head's deadline (and reconnect window) start when it becomes the head, as each call is served
    // one at a time. Non-empty exactly while the channel is registered with its library's ReadDispatcher.
    this._pending = [];
    this._registered = false; // a member of the dispatcher's wait set
    this._closeWhenIdle = false; // close() while the dispatcher's wait held the read side
    this._address = koffi.address(handle); // how the wait set's report names this channel
    this._outLen = new BigUint64Array(1);
    this._readBuf = Buffer.allocUnsafe(Math.min(INITIAL_READ_BUFFER, Math.max(1, maxMessageSize)));
  }

  static open(name, options = {}) {
    if (typeof name !== 'string') throw new EshmError(ErrorCode.INVALID_PARAM, 'Channel.open: name must be a string');
    const lib = loadLibrary(options.libraryPath);
    const cfg = buildConfig(lib, options);
    const out = [null];
    const rc = lib.open(name, cfg, out);
    if (rc !== 0) throw errorOf(lib, rc, `Channel.open("${name}")`);
    const handle = out[0];
    const role = [0];
    let r = lib.getRole(handle, role);
    const max = new BigUint64Array(1);
    if (r === 0) r = lib.maxMessageSize(handle, max);
    if (r !== 0) {
      const err = errorOf(lib, r, `Channel.open("${name}")`);
      lib.close(handle);
      throw err;
    }
    return new Channel(lib, handle, name, role[0], Number(max[0]), cfg);
  }

  /** The channel's name. */
  get name() {
    return this._name;
  }

  /** Role.MASTER or Role.SLAVE (never AUTO). */
  get role() {
    return this._role;
  }

  /** The largest message the channel accepts, in bytes. */
  get maxMessageSize() {
    return this._maxMessageSize;
  }

  /** True once close() was called. */
  get closed() {
    return this._closed;
  }

  _check(what) {
    if (this._closed) throw new EshmError(ErrorCode.CLOSED, `${what}: channel "${this._name}" is closed`);
  }

  _checkReader(what) {
    this._check(what);
    if (this._pending.length > 0) {
      throw new EshmError(
        ErrorCode.INVALID_PARAM,
        `${what}: a readAsync() is pending on channel "${this._name}"; the channel has one reader at a time: await it first`,
      );
    }
  }

  _fail(rc, what, onWorker = false) {
    return errorOf(this._lib, rc, `${what} on "${this._name}"`, onWorker);
  }

  write(data, options) {
    this._check('write');
    const bytes = bytesOf(data, 'write');
    const timeout = timeoutOf(options, 'write');
    const rc = this._lib.write(this._h, bytes, bytes.length, timeout);
    if (rc !== 0) throw this._fail(rc, 'write');
  }

  tryWrite(data) {
    this._check('tryWrite');
    const bytes = bytesOf(data, 'tryWrite');
    const rc = this._lib.tryWrite(this._h, bytes, bytes.length);
    if (rc === 0) return true;
    if (rc === ErrorCode.RING_FULL) return false;
    throw this._fail(rc, 'tryWrite');
  }

  flush() {
    this._check('flush');
    const rc = this._lib.flush(this._h);
    if (rc !== 0) throw this._fail(rc, 'flush');
  }

  // A copy of the first n bytes of buf, as a Buffer of its own (buf is reused by the next read).
  static _copy(buf, n) {
    const out = Buffer.allocUnsafe(n);
    buf.copy(out, 0, 0, n);
    return out;
  }

  // Makes the sync read buffer at least `size` bytes (the message that did not fit is still queued).
  _grow(size) {
    this._readBuf = Buffer.allocUnsafe(Math.max(size, this._readBuf.length * 2));
  }

  read(options) {
    this._checkReader('read');
    const timeout = timeoutOf(options, 'read');
    for (;;) {
      const rc = this._lib.read(this._h, this._readBuf, this._readBuf.length, this._outLen, timeout);
      const n = Number(this._outLen[0]);
      if (rc === 0) return Channel._copy(this._readBuf, n);
      if (rc === ErrorCode.BUFFER_TOO_SMALL) {
        this._grow(n);
        continue; // at once: the message is there
      }
      throw this._fail(rc, 'read');
    }
  }

  tryRead() {
    this._checkReader('tryRead');
    for (;;) {
      const rc = this._lib.tryRead(this._h, this._readBuf, this._readBuf.length, this._outLen);
      const n = Number(this._outLen[0]);
      if (rc === 0) return Channel._copy(this._readBuf, n);
      if (rc === ErrorCode.NO_DATA) return null;
      if (rc === ErrorCode.BUFFER_TOO_SMALL) {
        this._grow(n);
        continue;
      }
      throw this._fail(rc, 'tryRead');
    }
  }

  nextMessageSize() {
    this._checkReader('nextMessageSize');
    const rc = this._lib.nextMessageSize(this._h, this._outLen);
    if (rc === ErrorCode.NO_DATA) return null;
    if (rc !== 0) throw this._fail(rc, 'nextMessageSize');
    return Number(this._outLen[0]);
  }

  readAsync(options) {
    let timeout;
    try {
      this._check('readAsync');
      timeout = timeoutOf(options, 'readAsync');
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      this._pending.push({ timeout, resolve, reject, deadline: undefined, goneSince: null });
      if (this._pending.length > 1) return; // behind the others: the channel is registered already
      // A queued message (or an immediate failure) settles it here, on this thread, with no wait.
      this._serve(performance.now(), 0);
      if (this._pending.length > 0) dispatcherOf(this._lib).register(this);
    });
  }

  // Settles as many pending reads as it can, on the main thread, in call order: with the queued messages
  // (eshm_try_read, which never waits), or with the error a single eshm_read would have returned by `now`
  // (TIMEOUT, MASTER_STALE / SLAVE_STALE, CORRUPT, ...); the others keep waiting. `events`: what the wait
  // set reported for this channel (WAIT_* bits), 0 if nothing.
  _serve(now, events) {
    while (this._pending.length > 0) {
      const head = this._pending[0];
      if (head.deadline === undefined) {
        head.deadline = head.timeout < 0 ? Infinity : now + head.timeout;
        events |= WAIT_PEER_CHANGED; // a new head looks at the peer once
      }
      const rc = this._tryReadInto();
      if (rc === 0) {
        this._pending.shift();
        head.resolve(Channel._copy(this._readBuf, Number(this._outLen[0])));
        continue;
      }
      if (rc !== ErrorCode.NO_DATA) {
        // A gone peer under IMMEDIATELY (MASTER_STALE / SLAVE_STALE), CORRUPT, ...: as eshm_read fails.
        this._pending.shift();
        head.reject(this._fail(rc, 'readAsync'));
        continue;
      }
      if (this._disconnectBehavior === DisconnectBehavior.ON_TIMEOUT && (events & WAIT_PEER_CHANGED) !== 0) {
        // Only a peer that went away gets reconnectWaitMs; one not attached yet is waited for until the
        // deadline, as eshm_read does.
        const state = this.peerState();
        if (state !== PeerState.DEAD && state !== PeerState.UNRESPONSIVE) head.goneSince = null;
        else if (head.goneSince === null) head.goneSince = now;
      }
      const staleAt = head.goneSince === null ? Infinity : head.goneSince + this._reconnectWaitMs;
      if (now < staleAt && now < head.deadline) return; // it waits
      this._pending.shift();
      head.reject(staleAt <= head.deadline ? this._staleError() : this._timeoutError(head.timeout));
    }
  }

  // When the head read must be looked at even if the wait set reports nothing (its deadline, or the end of
  // its reconnect window), on performance.now()'s clock; Infinity if never.
  _dueAt() {
    const head = this._pending[0];
    if (head === undefined || head.deadline === undefined) return Infinity;
    return Math.min(head.deadline, head.goneSince === null ? Infinity : head.goneSince + this._reconnectWaitMs);
  }

  // eshm_try_read into the read buffer, grown for a larger message. Returns the result code.
  _tryReadInto() {
    for (;;) {
      const rc = this._lib.tryRead(this._h, this._readBuf, this._readBuf.length, this._outLen);
      if (rc !== ErrorCode.BUFFER_TOO_SMALL) return rc;
      this._grow(Number(this._outLen[0])); // the message stays queued: read it again at once
    }
  }

  // Every pending read rejects with `err`.
  _rejectAll(err) {
    const pending = this._pending;
    this._pending = [];
    for (const read of pending) read.reject(err);
  }

  _timeoutError(timeout) {
    return new EshmError(
      ErrorCode.TIMEOUT,
      `readAsync on "${this._name}": no message arrived within ${timeout} ms (${CODE_NAMES.get(ErrorCode.TIMEOUT)})`,
    );
  }

  _staleError() {
    const [code, peer] = this._role === Role.MASTER ? [ErrorCode.SLAVE_STALE, 'slave'] : [ErrorCode.MASTER_STALE, 'master'];
    return new EshmError(
      code,
      `readAsync on "${this._name}": the ${peer} is gone and did not come back within reconnectWaitMs ` +
        `(${this._reconnectWaitMs} ms) (${CODE_NAMES.get(code)})`,
    );
  }

  /** The peer's state: PeerState.ABSENT, ALIVE, UNRESPONSIVE or DEAD. */
  peerState() {
    this._check('peerState');
    const out = [0];
    const rc = this._lib.peerState(this._h, out);
    if (rc !== 0) throw this._fail(rc, 'peerState');
    return out[0];
  }

  isRemoteAlive() {
    this._check('isRemoteAlive');
    const rc = this._lib.isRemoteAlive(this._h);
    if (rc < 0) throw this._fail(rc, 'isRemoteAlive');
    return rc === 1;
  }

  stats() {
    this._check('stats');
    const { stats: statsType } = declareTypes();
    const raw = { struct_size: koffi.sizeof(statsType) };
    const rc = this._lib.getStats(this._h, raw);
    if (rc !== 0) throw this._fail(rc, 'stats');
    const out = {};
    for (const [key, value] of Object.entries(raw)) {
      if (key === 'struct_size' || key === 'reserved0') continue;
      if (key === 'master_alive' || key === 'slave_alive') out[camel(key)] = value !== 0;
      else if (STATS_BIGINT.has(key)) out[camel(key)] = BigInt(value);
      else out[camel(key)] = Number(value);
    }
    return out;
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    // With pending reads the handle is in the dispatcher's wait set: it leaves it before it is closed, and
    // if the wait runs on the worker, that happens (and the reads reject with CLOSED) when the wait
    // returns, which eshm_waitset_wake makes it do at once.
    if (this._registered) this._lib.dispatcher.closeChannel(this);
    else this._release();
  }

  _release() {
    if (this._h !== null) {
      const h = this._h;
      this._h = null;
      this._lib.close(h);
    }
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    const state = this._closed ? 'closed' : Object.keys(Role)[this._role];
    return `Channel { name: '${this._name}', ${state} }`;
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Channel.prototype[Symbol.dispose] = Channel.prototype.close;
}

// ---- readAsync(): one wait for every pending read ----
//
// Every channel of a library with pending readAsync() calls is a member of one eshm wait set, and at most
// one eshm_waitset_wait on it runs on koffi's worker at a time, however many reads are pending: never a
// worker per read. When it returns, the main thread reads the channels it reported (eshm_try_read), settles
// their pending reads in call order, settles the reads whose timeout or reconnect window ended, takes the
// channels without pending reads out of the set, and starts the next wait if any read is still pending, with
// a timeout that ends at the earliest deadline (at most MAX_WAIT_MS). With nothing pending no wait runs, so
// the dispatcher never keeps the process alive. A channel with a new pending read joins the set at once,
// also while the wait runs (eshm_waitset_add takes effect in a running wait); a read whose deadline is
// earlier than the running wait's end, and a close(), end the running wait with eshm_waitset_wake.

// The longest one wait runs: a safety net for a deadline or peer change it could miss, not a poll rate.
const MAX_WAIT_MS = 1000;

// For the tests and for diagnostics: koffi async calls in flight now and at most, waits run.
const asyncCalls = { inFlight: 0, maxInFlight: 0, waits: 0 };

class ReadDispatcher {
  constructor(lib) {
    this._lib = lib;
    const out = [null];
    const rc = lib.waitsetCreate(out);
    if (rc !== 0) throw errorOf(lib, rc, 'readAsync: eshm_waitset_create');
    this._set = out[0];
    this._channels = new Set(); // registered: pending reads, members of the set
    this._byAddress = new Map(); // handle address (bigint) -> registered channel
    this._inFlight = false;
    this._waitEndsAt = 0; // when the running wait times out (performance.now())
    this._capacity = 0;
    this._ready = null; // eshm_ready[capacity], filled by the worker
    this._count = new BigUint64Array(1);
  }

  // `ch` has pending reads: it joins the set (a running wait takes it in at once).
  register(ch) {
    const rc = this._lib.waitsetAdd(this._set, ch._h, WAIT_READABLE, 0);
    if (rc !== 0) {
      ch._rejectAll(errorOf(this._lib, rc, `readAsync on "${ch._name}": eshm_waitset_add`));
      return;
    }
    ch._registered = true;
    this._channels.add(ch);
    this._byAddress.set(ch._address, ch);
    if (!this._inFlight) this._start();
    else if (ch._dueAt() < this._waitEndsAt) this._lib.waitsetWake(this._set); // wait again, shorter
  }

  // close() of a registered channel: it leaves the set, then its handle is closed and its reads reject.
  closeChannel(ch) {
    if (this._inFlight) {
      // The wait holds its read side: the completion closes it, and the wake makes that happen now.
      ch._closeWhenIdle = true;
      this._lib.waitsetWake(this._set);
      return;
    }
    this._unregister(ch);
    ch._release();
    ch._rejectAll(new EshmError(ErrorCode.CLOSED, `readAsync: channel "${ch._name}" was closed while reading`));
  }

  _unregister(ch) {
    this._lib.waitsetRemove(this._set, ch._h);
    ch._registered = false;
    this._channels.delete(ch);
    this._byAddress.delete(ch._address);
  }

  _start() {
    if (this._inFlight || this._channels.size === 0) return;
    const now = performance.now();
    let due = Infinity;
    for (const ch of this._channels) due = Math.min(due, ch._dueAt());
    const timeout = Math.max(0, Math.min(MAX_WAIT_MS, Math.ceil(due - now)));
    if (this._capacity < this._channels.size) {
      this._capacity = Math.max(64, this._channels.size * 2);
      this._ready = Buffer.alloc(this._capacity * READY_BYTES);
    }
    this._inFlight = true;
    this._waitEndsAt = now + timeout;
    asyncCalls.inFlight++;
    asyncCalls.waits++;
    asyncCalls.maxInFlight = Math.max(asyncCalls.maxInFlight, asyncCalls.inFlight);
    const ready = this._ready;
    const capacity = this._capacity;
    this._lib.waitsetWait.async(this._set, ready, capacity, this._count, timeout, (err, rc) => {
      asyncCalls.inFlight--;
      this._inFlight = false;
      this._complete(err, rc, ready);
      this._start();
    });
  }

  _complete(err, rc, ready) {
    const now = performance.now();
    // Closed meanwhile: out of the set first (the wait that held its read side has returned), then freed.
    for (const ch of this._channels) {
      if (ch._closeWhenIdle) this.closeChannel(ch);
    }
    if (err || rc !== 0) {
      // Not expected (the set and the buffers are ours): every pending read learns it.
      const failure = err || errorOf(this._lib, rc, 'readAsync: eshm_waitset_wait', true);
      for (const ch of [...this._channels]) {
        this._unregister(ch);
        ch._rejectAll(failure);
      }
      return;
    }
    const n = Number(this._count[0]);
    for (let i = 0; i < n; i++) {
      const ch = this._byAddress.get(ready.readBigUInt64LE(i * READY_BYTES));
      if (ch !== undefined) ch._serve(now, ready.readUInt32LE(i * READY_BYTES + 8));
    }
    for (const ch of [...this._channels]) {
      if (ch._pending.length > 0 && ch._dueAt() <= now) ch._serve(now, 0);
      if (ch._pending.length === 0) this._unregister(ch);
    }
  }
}

function dispatcherOf(lib) {
  if (!lib.dispatcher) lib.dispatcher = new ReadDispatcher(lib);
  return lib.dispatcher;
}

/**
 * Diagnostics of readAsync(): `asyncCallsInFlight` (koffi async calls running now: 0 or 1 per loaded
 * library), `maxAsyncCallsInFlight` (the most at any time so far), `waits` (eshm_waitset_wait calls so
 * far), `channelsWaiting` (channels with pending reads).
 */
function readAsyncStats() {
  let channelsWaiting = 0;
  for (const lib of libraries.values()) channelsWaiting += lib.dispatcher ? lib.dispatcher._channels.size : 0;
  return {
    asyncCallsInFlight: asyncCalls.inFlight,
    maxAsyncCallsInFlight: asyncCalls.maxInFlight,
    waits: asyncCalls.waits,
    channelsWaiting,
  };
}

function errorOf(lib, rc, what, onWorker = false) {
  // Read right after the failing call: eshm_last_error() is per thread and the next failure replaces it.
  // readAsync()'s eshm_waitset_wait fails on koffi's worker thread, whose message this thread cannot see.
  let detail = onWorker ? '' : lib.lastError();
  if (!detail) detail = lib.strerror(rc);
  return new EshmError(rc, `${what}: ${detail} (${CODE_NAMES.get(rc) || rc})`);
}

/** The version of the loaded libeshm.so, e.g. "2.1.0". */
function libraryVersion(libraryPath) {
  return loadLibrary(libraryPath).version();
}

module.exports = { Channel, Role, DisconnectBehavior, PeerState, EshmError, ErrorCode, libraryVersion, readAsyncStats };
