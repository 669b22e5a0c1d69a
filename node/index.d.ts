// Type declarations of the eshm Node.js package (node/index.js).

/// <reference types="node" />

/** The role of an endpoint: one master and one slave per channel name. */
export declare const Role: {
  /** Creates the channel; at most one live master per name. */
  readonly MASTER: 0;
  /** Attaches to the master's channel (waiting for it); at most one live slave per name. */
  readonly SLAVE: 1;
  /** Master if the master role is free, slave otherwise (race-free). Never the role of an open channel. */
  readonly AUTO: 2;
};
/** One of the values of {@link Role}. */
export type Role = (typeof Role)[keyof typeof Role];

/**
 * What a write (or a read that finds nothing queued) does while the peer is gone: dead, unresponsive or not
 * yet attached. Messages already queued are always delivered first.
 */
export declare const DisconnectBehavior: {
  /** Fail at once with MASTER_STALE / SLAVE_STALE. */
  readonly IMMEDIATELY: 0;
  /**
   * Wait up to `reconnectWaitMs` for a peer that went away, then fail (MASTER_STALE / SLAVE_STALE); wait for
   * a peer not attached yet as long as the call's own timeout allows. The default.
   */
  readonly ON_TIMEOUT: 1;
  /** Wait for the peer as long as the call's own timeout allows. */
  readonly NEVER: 2;
};
/** One of the values of {@link DisconnectBehavior}. */
export type DisconnectBehavior = (typeof DisconnectBehavior)[keyof typeof DisconnectBehavior];

/** The peer's state, as {@link Channel.peerState} reports it (ESHM_PEER_* of eshm.h). */
export declare const PeerState: {
  /** No peer has attached to the channel's segment since this endpoint did. */
  readonly ABSENT: 0;
  /** Holds its role, heartbeat advancing. */
  readonly ALIVE: 1;
  /** Holds its role, heartbeat stale (frozen, stopped, or starved). */
  readonly UNRESPONSIVE: 2;
  /** Its role is free after a peer had attached: it exited or closed. */
  readonly DEAD: 3;
};
/** One of the values of {@link PeerState}. */
export type PeerState = (typeof PeerState)[keyof typeof PeerState];

/** The result codes of eshm.h (`ESHM_SUCCESS`, `ESHM_ERROR_<NAME>`), by name. Every code is distinct. */
export declare const ErrorCode: {
  readonly SUCCESS: 0;
  /** An argument or option is invalid; the message names it. */
  readonly INVALID_PARAM: -1;
  /** The master could not create the shared-memory segment. */
  readonly SHM_CREATE: -2;
  /** The segment could not be opened or mapped. */
  readonly SHM_ATTACH: -3;
  /** Reserved; not returned. */
  readonly SHM_DETACH: -4;
  /** Reserved; not returned. */
  readonly SHM_DELETE: -5;
  /** Reserved; not returned. */
  readonly MUTEX_INIT: -6;
  /** A struct was not initialized (not returned through this package). */
  readonly NOT_INITIALIZED: -7;
  /** Handled inside the package: reads grow their buffer, so no message is ever truncated. */
  readonly BUFFER_TOO_SMALL: -8;
  /** Nothing is queued (tryRead() returns null instead of throwing it). */
  readonly NO_DATA: -9;
  /** The timeout passed: no message arrived, the ring stayed full, or the peer did not come back in time. */
  readonly TIMEOUT: -10;
  /** This endpoint is the slave and its master is gone (and did not come back in time). */
  readonly MASTER_STALE: -11;
  /** This endpoint is the master and its slave is gone (and did not come back in time). */
  readonly SLAVE_STALE: -12;
  /** Channel.open(): a live process already holds the requested role; the message gives its pid. */
  readonly ROLE_TAKEN: -13;
  /** The message is larger than {@link Channel.maxMessageSize}; it can never be written. */
  readonly MESSAGE_TOO_LARGE: -14;
  /** Not thrown by this package: tryWrite() returns false when the ring is full. */
  readonly RING_FULL: -15;
  /** The shared memory is corrupt. Close the channel. */
  readonly CORRUPT: -16;
  /** The channel was closed (a call after close(), or a readAsync() pending when close() was called). */
  readonly CLOSED: -17;
  /** Channel.open() as a slave: no master created the channel in time. */
  readonly NOT_FOUND: -18;
  /** Channel.open(): the operating system refused access to /dev/shm/eshm_<name>. */
  readonly PERMISSION: -19;
  /** Channel.open(): not enough shared memory for the segment. */
  readonly NO_SPACE: -20;
  /** Channel.open(): /dev/shm/eshm_<name> exists but is not a segment this library can use. */
  readonly INCOMPATIBLE: -21;
  /** An unexpected internal error; the message has the details. */
  readonly INTERNAL: -22;
};
/** One of the values of {@link ErrorCode}. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];
/** The name of a result code, e.g. "TIMEOUT". */
export type ErrorCodeName = keyof typeof ErrorCode;

/**
 * Every failure of an eshm call. `code` is the numeric result code of eshm.h (compare it with
 * {@link ErrorCode}), `codeName` its symbolic name, and `message` the library's explanation
 * (eshm_last_error()), prefixed with the call and the channel name.
 */
export declare class EshmError extends Error {
  constructor(code: number, message: string);
  readonly name: 'EshmError';
  /** The numeric result code, e.g. -10 ({@link ErrorCode.TIMEOUT}). */
  readonly code: ErrorCode;
  /** The symbolic name of `code`, e.g. "TIMEOUT" ("UNKNOWN" for a value that is not a code). */
  readonly codeName: ErrorCodeName | 'UNKNOWN';
}

/** Options of {@link Channel.open}: every field of eshm_config, plus where to find libeshm.so. */
export interface OpenOptions {
  /** Default {@link Role.AUTO}. */
  role?: Role;
  /** Default {@link DisconnectBehavior.ON_TIMEOUT}. */
  disconnectBehavior?: DisconnectBehavior;
  /** The peer is unresponsive after this long without a heartbeat; > heartbeatIntervalMs. Default 100. */
  staleThresholdMs?: number;
  /** How often this side beats and checks its peer; > 0. Default 1. */
  heartbeatIntervalMs?: number;
  /** With ON_TIMEOUT: how long a call waits for a gone peer; >= 0. Default 5000. */
  reconnectWaitMs?: number;
  /** Slave: how often it looks for a (new) master; > 0. Default 100. */
  reconnectRetryIntervalMs?: number;
  /** Slave: how many times (0 = unlimited: open() waits forever for its master). Default 50. */
  maxReconnectAttempts?: number;
  /** A master's close() removes the segment name. Default true. */
  autoCleanup?: boolean;
  /** A monitor thread keeps the heartbeat (false: only eshm calls advance it). Default true. */
  useThreads?: boolean;
  /** Master->slave ring bytes, a power of two in [4096, 2^32]; creator only. Default 1 MiB. */
  m2sCapacity?: number;
  /** Slave->master ring bytes, as m2sCapacity. Default 1 MiB. */
  s2mCapacity?: number;
  /** Largest message; 0 = the largest the rings allow (about half the smaller ring); creator only. */
  maxMessageBytes?: number;
  /** Blocking calls busy-poll this long first (ns); >= 0. Default 20000. */
  spinNs?: number;
  /** Then poll with sched_yield() this long (ns); >= 0. Default 30000. */
  yieldNs?: number;
  /** Segment file permission bits (creator only), including 0o600. Default 0o600. */
  mode?: number;
  /** Then sleep on a futex (idle costs no CPU); false never sleeps (a busy core per waiter). Default true. */
  allowSleep?: boolean;
  /**
   * Accept a segment file another user owns (a channel shared between users: docs/operations.md,
   * "Permissions"). Default false: such a file is refused (PERMISSION), since another local user could
   * have created the name first to intercept the channel.
   */
  allowOtherOwner?: boolean;
  /**
   * Path of libeshm.so. Without it: $ESHM_LIBESHM, else "libeshm.so" through the dynamic loader path
   * (LD_LIBRARY_PATH, ld.so.cache).
   */
  libraryPath?: string;
}

/** A timeout in milliseconds: -1 waits forever, 0 does not wait. Default 1000. */
export interface TimeoutOptions {
  timeoutMs?: number;
}

/** What {@link Channel.write} and {@link Channel.tryWrite} accept. Strings are sent as UTF-8. */
export type Message = Buffer | Uint8Array | ArrayBufferView | ArrayBuffer | string;

/** The channel's statistics as this endpoint sees them (eshm_stats). */
export interface Stats {
  /** Pid of the attached master, 0 if none. */
  masterPid: number;
  /** Pid of the attached slave, 0 if none. */
  slavePid: number;
  /** The master is alive, as this endpoint sees it. */
  masterAlive: boolean;
  /** The slave is alive, as this endpoint sees it. */
  slaveAlive: boolean;
  /** The master's heartbeat counter. */
  masterHeartbeat: number;
  /** The slave's heartbeat counter. */
  slaveHeartbeat: number;
  /** Messages written master->slave (this segment's lifetime). */
  m2sWriteCount: number;
  /** Messages read master->slave. */
  m2sReadCount: number;
  /** Messages written slave->master. */
  s2mWriteCount: number;
  /** Messages read slave->master. */
  s2mReadCount: number;
  /** Master attachments to this segment (1 = its creator only). */
  epoch: number;
  /** Times this endpoint saw its peer come back, or re-attached. */
  reconnectCount: number;
  /** Bytes queued master->slave (records, including headers). */
  m2sQueuedBytes: number;
  /** Messages queued master->slave. */
  m2sQueuedMessages: number;
  /** Bytes queued slave->master. */
  s2mQueuedBytes: number;
  /** Messages queued slave->master. */
  s2mQueuedMessages: number;
  /** Master->slave ring capacity, bytes. */
  m2sCapacity: number;
  /** Slave->master ring capacity, bytes. */
  s2mCapacity: number;
  /** Largest message either direction accepts. */
  maxMessageBytes: number;
  /** FUTEX_WAKE system calls, both rings, both sides. */
  wakeSyscalls: number;
  /** FUTEX_WAIT system calls, both rings, both sides. */
  waitSyscalls: number;
  /** When the segment was created, ns since the Unix epoch (a bigint: it exceeds 2^53). */
  segmentEpochNs: bigint;
}

/**
 * One endpoint of a named eshm channel (/dev/shm/eshm_<name>): length-delimited messages, in order,
 * master->slave and slave->master. A master writes what the slave reads and the other way round.
 *
 * Threading: synchronous calls run on the calling (main) thread and block it for at most their timeout.
 * {@link Channel.readAsync} calls of every channel of the process share one wait on a worker thread (see
 * {@link readAsyncStats}); while one is pending on a channel, its read side belongs to readAsync (read(),
 * tryRead() and nextMessageSize() throw INVALID_PARAM) and further readAsync() calls queue behind it.
 * Writes, stats() and isRemoteAlive() may be called at any time. One channel has one reader and one writer:
 * to feed several consumers, open one channel per consumer.
 */
export declare class Channel implements Disposable {
  private constructor();

  /**
   * Opens the endpoint `name` (1-250 characters of [A-Za-z0-9._-]). A master creates the segment; a slave
   * waits for its master (retrying every reconnectRetryIntervalMs, maxReconnectAttempts times).
   * @throws {EshmError} INVALID_PARAM, ROLE_TAKEN, NOT_FOUND, PERMISSION, NO_SPACE, INCOMPATIBLE, ...
   * @throws {Error} if libeshm.so cannot be loaded (the message names the three places looked at).
   */
  static open(name: string, options?: OpenOptions): Channel;

  /** The channel's name. */
  readonly name: string;
  /** {@link Role.MASTER} or {@link Role.SLAVE}; never AUTO. */
  readonly role: typeof Role.MASTER | typeof Role.SLAVE;
  /** The largest message the channel accepts, in bytes. */
  readonly maxMessageSize: number;
  /** True once {@link Channel.close} was called. */
  readonly closed: boolean;

  /**
   * Sends one message, waiting up to `timeoutMs` (default 1000) for room in the ring (backpressure: an
   * unread message is never overwritten) and, per the disconnect behaviour, for a gone peer. Blocks the
   * calling thread meanwhile.
   * @throws {EshmError} MESSAGE_TOO_LARGE, TIMEOUT, MASTER_STALE / SLAVE_STALE, CLOSED, INVALID_PARAM.
   */
  write(data: Message, options?: TimeoutOptions): void;

  /**
   * Sends one message without waiting.
   * @returns false if the ring has no room right now (the reader is behind).
   * @throws {EshmError} MESSAGE_TOO_LARGE, MASTER_STALE / SLAVE_STALE (IMMEDIATELY only), CLOSED.
   */
  tryWrite(data: Message): boolean;

  /** Publishes staged messages; writes publish at once, so this is always safe and rarely needed. */
  flush(): void;

  /**
   * Receives the next message, waiting up to `timeoutMs` (default 1000), as a new Buffer of exactly its
   * length. Blocks the calling thread meanwhile: use {@link Channel.readAsync} in servers.
   * @throws {EshmError} TIMEOUT, MASTER_STALE / SLAVE_STALE, CORRUPT, CLOSED; INVALID_PARAM while a readAsync() is pending.
   */
  read(options?: TimeoutOptions): Buffer;

  /** The next message, or null if none is queued. Never waits. */
  tryRead(): Buffer | null;

  /** The size of the next queued message without consuming it, or null if none is queued. */
  nextMessageSize(): number | null;

  /**
   * Receives the next message without blocking the event loop. A message already queued resolves it at
   * once, with no wait. Otherwise the channel joins the process's one wait set: a single eshm_waitset_wait
   * on koffi's worker thread waits for every channel with a pending readAsync() at once (at most one koffi
   * async call in flight per loaded library, however many reads are pending), and the main thread reads
   * the channels it reports. Calls on one channel are served one at a time, in call order; each one's
   * `timeoutMs` (default 1000) counts from when the ones before it settled. A gone peer ends it as it ends
   * read(): at once under IMMEDIATELY, after `reconnectWaitMs` under ON_TIMEOUT (MASTER_STALE /
   * SLAVE_STALE), at the timeout under NEVER. close() rejects the pending calls with CLOSED.
   * @throws {EshmError} (as a rejection) as {@link Channel.read}.
   */
  readAsync(options?: TimeoutOptions): Promise<Buffer>;

  /** True if the peer holds its role and its heartbeat advances. */
  isRemoteAlive(): boolean;

  /** The peer's state: PeerState.ABSENT (not attached yet), ALIVE, UNRESPONSIVE or DEAD (went away). */
  peerState(): PeerState;

  /** The channel's statistics. */
  stats(): Stats;

  /**
   * Closes the endpoint: releases the role and, for a master with autoCleanup, removes the segment name.
   * Idempotent. Pending readAsync() calls reject with CLOSED; the handle leaves the shared wait first, so
   * it is freed once that wait has returned (at once: close() ends it), never under it.
   */
  close(): void;

  /** Same as {@link Channel.close}, for `using ch = Channel.open(...)`. */
  [Symbol.dispose](): void;
}

/** What {@link readAsyncStats} returns. */
export interface ReadAsyncStats {
  /** koffi async calls (eshm_waitset_wait) running now: 0 or 1 per loaded libeshm.so. */
  asyncCallsInFlight: number;
  /** The most that ever ran at once in this process. */
  maxAsyncCallsInFlight: number;
  /** eshm_waitset_wait calls started so far. */
  waits: number;
  /** Channels with at least one pending readAsync() (members of the wait set). */
  channelsWaiting: number;
}

/**
 * Diagnostics of {@link Channel.readAsync}: how many waits run on koffi's worker threads (never more than
 * one per loaded library), how many ran, and how many channels wait. For tests and monitoring.
 */
export declare function readAsyncStats(): ReadAsyncStats;

/** The version of the loaded libeshm.so, e.g. "2.0.0" (the library is found as in {@link Channel.open}). */
export declare function libraryVersion(libraryPath?: string): string;
