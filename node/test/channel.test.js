'use strict';
// The Channel API over libeshm.so ($ESHM_LIBESHM; node/run_tests.sh builds it). Both endpoints live in
// this process: the library allows a master and a slave of one name in one process.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');

const { Channel, Role, DisconnectBehavior, PeerState, EshmError, ErrorCode, libraryVersion } = require('..');
const { uniqueName, segmentExists, cleanup, payload, waitFor } = require('./helpers');

const open = [];
function track(ch) {
  open.push(ch);
  return ch;
}

/** A master and a slave on a fresh channel. */
function pair(tag, options = {}) {
  const name = uniqueName(tag);
  const master = track(Channel.open(name, { role: Role.MASTER, ...options }));
  const slave = track(Channel.open(name, { role: Role.SLAVE, ...options }));
  return { name, master, slave };
}

function assertEshmError(fn, code) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof EshmError, `expected EshmError, got ${err}`);
    assert.ok(err instanceof Error);
    assert.equal(err.code, code, err.message);
    assert.equal(ErrorCode[err.codeName], code);
    assert.ok(err.message.length > 0);
    return true;
  });
}

test.after(() => cleanup(open));

test('exports the codes of eshm.h', () => {
  assert.equal(ErrorCode.SUCCESS, 0);
  assert.equal(ErrorCode.NO_DATA, -9);
  assert.equal(ErrorCode.TIMEOUT, -10);
  assert.equal(ErrorCode.MASTER_STALE, -11);
  assert.equal(ErrorCode.INTERNAL, -22);
  assert.equal(new Set(Object.values(ErrorCode)).size, 23);
  assert.deepEqual(Role, { MASTER: 0, SLAVE: 1, AUTO: 2 });
  assert.deepEqual(DisconnectBehavior, { IMMEDIATELY: 0, ON_TIMEOUT: 1, NEVER: 2 });
  assert.match(libraryVersion(), /^\d+\.\d+\.\d+$/);
});

test('open: master, slave and AUTO roles', async () => {
  const name = uniqueName('roles');
  const first = track(Channel.open(name, { role: Role.AUTO }));
  assert.equal(first.role, Role.MASTER);
  assert.equal(first.name, name);
  assert.ok(segmentExists(name));
  const second = track(Channel.open(name)); // AUTO is the default
  assert.equal(second.role, Role.SLAVE);
  // Alive once each has seen the other's heartbeat advance.
  await waitFor(() => first.isRemoteAlive() && second.isRemoteAlive(), 'both sides alive');
  // Both roles are held: a third endpoint is refused, whatever it asks for.
  assertEshmError(() => Channel.open(name, { role: Role.MASTER }), ErrorCode.ROLE_TAKEN);
  assertEshmError(() => Channel.open(name, { role: Role.AUTO }), ErrorCode.ROLE_TAKEN);
  second.close();
  first.close();
  assert.equal(segmentExists(name), false, 'a master with autoCleanup removes its segment');
});

test('open: a slave without a master fails with NOT_FOUND', () => {
  const name = uniqueName('nomaster');
  assertEshmError(
    () => Channel.open(name, { role: Role.SLAVE, maxReconnectAttempts: 2, reconnectRetryIntervalMs: 10 }),
    ErrorCode.NOT_FOUND,
  );
});

test('open: bad arguments are INVALID_PARAM, and the message names them', () => {
  assertEshmError(() => Channel.open('bad/name', { role: Role.MASTER }), ErrorCode.INVALID_PARAM);
  assertEshmError(() => Channel.open(uniqueName('opt'), { rolee: Role.MASTER }), ErrorCode.INVALID_PARAM);
  assertEshmError(() => Channel.open(uniqueName('opt'), { role: 7 }), ErrorCode.INVALID_PARAM);
  assertEshmError(() => Channel.open(uniqueName('opt'), { autoCleanup: 1 }), ErrorCode.INVALID_PARAM);
  // Checked by the library, which names the field.
  assert.throws(
    () => Channel.open(uniqueName('cap'), { role: Role.MASTER, m2sCapacity: 1000 }),
    (err) => err.code === ErrorCode.INVALID_PARAM && /m2s_capacity/.test(err.message),
  );
});

test('open: every config field reaches the library', async () => {
  const { master, slave } = pair('config', {
    m2sCapacity: 8192,
    s2mCapacity: 16384,
    maxMessageBytes: 1000,
    disconnectBehavior: DisconnectBehavior.IMMEDIATELY,
    staleThresholdMs: 500,
    heartbeatIntervalMs: 5,
    reconnectWaitMs: 100,
    reconnectRetryIntervalMs: 20,
    maxReconnectAttempts: 5,
    autoCleanup: true,
    useThreads: true,
    spinNs: 0,
    yieldNs: 0,
    mode: 0o600,
    allowSleep: true,
    allowOtherOwner: false,
  });
  const stats = master.stats();
  assert.equal(stats.m2sCapacity, 8192);
  assert.equal(stats.s2mCapacity, 16384);
  assert.equal(stats.maxMessageBytes, 1000);
  assert.equal(master.maxMessageSize, 1000);
  assert.equal(slave.maxMessageSize, 1000);
  slave.close();
  await waitFor(() => !master.isRemoteAlive(), 'the slave seen gone');
  // IMMEDIATELY: a write with the slave gone fails at once instead of waiting for it.
  assertEshmError(() => master.write('x', { timeoutMs: 5000 }), ErrorCode.SLAVE_STALE);
});

test('allowOtherOwner: a segment of another user is refused unless allowed', {
  skip: process.getuid() !== 0 && 'needs root to hand a segment to another uid',
}, () => {
  const name = uniqueName('owner');
  const path = `/dev/shm/eshm_${name}`;
  // A segment that another user (uid 4231) created and left for a peer, group-shared as the recipe says.
  Channel.open(name, { role: Role.MASTER, mode: 0o660, autoCleanup: false }).close();
  fs.chownSync(path, 4231, 4231);
  try {
    assert.throws(
      () => Channel.open(name, { role: Role.SLAVE, maxReconnectAttempts: 1 }),
      (err) =>
        err.code === ErrorCode.PERMISSION &&
        /belongs to another user \(uid 4231/.test(err.message) &&
        /mode 0660/.test(err.message) &&
        /allow_other_owner/.test(err.message),
    );
    assert.equal(fs.statSync(path).uid, 4231, 'the refused file is left as it was');
    const master = Channel.open(name, { role: Role.MASTER, allowOtherOwner: true, autoCleanup: false });
    const slave = Channel.open(name, { role: Role.SLAVE, allowOtherOwner: true });
    master.write('shared');
    assert.equal(slave.read().toString(), 'shared');
    slave.close();
    master.close();
  } finally {
    fs.rmSync(path, { force: true });
  }
});

test('libraryPath: a library that does not load names all three places', () => {
  assert.throws(
    () => Channel.open(uniqueName('lib'), { libraryPath: '/nonexistent/libeshm.so' }),
    (err) =>
      /\/nonexistent\/libeshm\.so/.test(err.message) &&
      /libraryPath/.test(err.message) &&
      /ESHM_LIBESHM/.test(err.message) &&
      /LD_LIBRARY_PATH/.test(err.message),
  );
});

test('round trips of many sizes, binary, both directions', () => {
  const { master, slave } = pair('sizes');
  const max = master.maxMessageSize;
  const sizes = [0, 1, 2, 7, 8, 63, 64, 65, 255, 256, 4095, 4096, 4097, 65535, 65536, 65537, 300000, max - 1, max];
  sizes.forEach((size, i) => {
    const data = payload(size, i);
    master.write(data, { timeoutMs: 5000 });
    const got = slave.read({ timeoutMs: 5000 });
    assert.ok(Buffer.isBuffer(got));
    assert.equal(got.length, size);
    assert.ok(got.equals(data), `m2s size ${size}`);
    slave.write(got, { timeoutMs: 5000 });
    const echo = master.read({ timeoutMs: 5000 });
    assert.equal(crypto.createHash('sha256').update(echo).digest('hex'),
      crypto.createHash('sha256').update(data).digest('hex'), `s2m size ${size}`);
  });
});

test('messages arrive whole and in order; returned Buffers are independent copies', () => {
  const { master, slave } = pair('order');
  const n = 500;
  for (let i = 0; i < n; i++) master.write(`message #${i}`);
  const got = [];
  for (let i = 0; i < n; i++) got.push(slave.read());
  got.forEach((buf, i) => assert.equal(buf.toString(), `message #${i}`));
  assert.equal(slave.tryRead(), null);
});

test('write accepts strings (UTF-8), Uint8Array views, ArrayBuffers and other typed arrays', () => {
  const { master, slave } = pair('encodings');
  master.write('héllo wörld ✓ \u{1F600}');
  assert.equal(slave.read().toString('utf8'), 'héllo wörld ✓ \u{1F600}');
  master.write('');
  assert.equal(slave.read().length, 0);
  const whole = new Uint8Array([9, 8, 7, 6, 5, 4]);
  master.write(whole.subarray(2, 5)); // a view with an offset: only its own bytes
  assert.deepEqual([...slave.read()], [7, 6, 5]);
  master.write(new Uint8Array([1, 2, 3]).buffer);
  assert.deepEqual([...slave.read()], [1, 2, 3]);
  master.write(new Uint16Array([0x0102]));
  assert.equal(slave.read().length, 2);
  master.write('a\0b\0'); // NULs are data: no terminator is added or stripped
  assert.deepEqual([...slave.read()], [0x61, 0, 0x62, 0]);
  assertEshmError(() => master.write(42), ErrorCode.INVALID_PARAM);
  assertEshmError(() => master.write({}), ErrorCode.INVALID_PARAM);
});

test('timeouts: read and write give TIMEOUT; bad timeouts are INVALID_PARAM', () => {
  const { master, slave } = pair('timeouts', { m2sCapacity: 4096 });
  const t0 = Date.now();
  assertEshmError(() => slave.read({ timeoutMs: 30 }), ErrorCode.TIMEOUT);
  assert.ok(Date.now() - t0 >= 25, 'read waited for its timeout');
  assertEshmError(() => slave.read({ timeoutMs: 0 }), ErrorCode.TIMEOUT);
  // Fill the 4 KiB ring: the next write waits for room, then times out (backpressure, nothing dropped).
  let written = 0;
  while (master.tryWrite(Buffer.alloc(500, written))) written++;
  assert.ok(written > 0);
  assertEshmError(() => master.write(Buffer.alloc(500), { timeoutMs: 20 }), ErrorCode.TIMEOUT);
  for (let i = 0; i < written; i++) assert.ok(slave.read().equals(Buffer.alloc(500, i)));
  assertEshmError(() => slave.read({ timeoutMs: -2 }), ErrorCode.INVALID_PARAM);
  assertEshmError(() => slave.read({ timeoutMs: 1.5 }), ErrorCode.INVALID_PARAM);
  assertEshmError(() => master.write('x', { timeoutMs: 'soon' }), ErrorCode.INVALID_PARAM);
});

test('tryRead and tryWrite never wait', () => {
  const { master, slave } = pair('try', { m2sCapacity: 4096 });
  assert.equal(slave.tryRead(), null);
  assert.equal(slave.nextMessageSize(), null);
  assert.equal(master.tryWrite('abc'), true);
  assert.equal(slave.nextMessageSize(), 3);
  assert.equal(slave.tryRead().toString(), 'abc');
  assert.equal(slave.tryRead(), null);
  let accepted = 0;
  while (master.tryWrite(Buffer.alloc(1000))) accepted++;
  assert.equal(master.tryWrite(Buffer.alloc(1000)), false, 'a full ring refuses, it does not throw');
  assert.ok(accepted >= 1);
});

test('oversized: a message over the maximum is refused and the queue stays intact', () => {
  const { master, slave } = pair('oversized', { maxMessageBytes: 2048 });
  master.write('before');
  assertEshmError(() => master.write(Buffer.alloc(2049)), ErrorCode.MESSAGE_TOO_LARGE);
  assertEshmError(() => master.tryWrite(Buffer.alloc(2049)), ErrorCode.MESSAGE_TOO_LARGE);
  master.write(Buffer.alloc(2048, 1)); // exactly the maximum is fine
  master.write('after');
  assert.equal(slave.read().toString(), 'before');
  assert.ok(slave.read().equals(Buffer.alloc(2048, 1)));
  assert.equal(slave.read().toString(), 'after');
});

test('a message larger than the read buffer stays queued and is read whole (never truncated)', () => {
  const { master, slave } = pair('grow', { m2sCapacity: 1 << 20 });
  // The first read buffer is 64 KiB: these need the BUFFER_TOO_SMALL path (message stays queued, grow, retry).
  const big = payload(200000, 1);
  const bigger = payload(400000, 2);
  master.write(big);
  master.write(bigger);
  master.write('small');
  assert.equal(slave.nextMessageSize(), 200000);
  assert.ok(slave.read().equals(big));
  assert.equal(slave.nextMessageSize(), 400000);
  assert.ok(slave.tryRead().equals(bigger));
  assert.equal(slave.read().toString(), 'small');
});

test('stats: every eshm_stats field, camelCase, with counts that follow the traffic', async () => {
  const { master, slave } = pair('stats');
  await waitFor(() => master.stats().slaveAlive, 'the slave alive');
  for (let i = 0; i < 3; i++) master.write('m');
  slave.read();
  slave.write('s');
  const st = master.stats();
  const expected = [
    'masterPid', 'slavePid', 'masterAlive', 'slaveAlive', 'masterHeartbeat', 'slaveHeartbeat',
    'm2sWriteCount', 'm2sReadCount', 's2mWriteCount', 's2mReadCount', 'epoch', 'reconnectCount',
    'm2sQueuedBytes', 'm2sQueuedMessages', 's2mQueuedBytes', 's2mQueuedMessages', 'm2sCapacity',
    's2mCapacity', 'maxMessageBytes', 'wakeSyscalls', 'waitSyscalls', 'segmentEpochNs',
  ];
  assert.deepEqual(Object.keys(st).sort(), [...expected].sort());
  assert.equal(st.masterPid, process.pid);
  assert.equal(st.slavePid, process.pid);
  assert.equal(st.masterAlive, true);
  assert.equal(st.slaveAlive, true);
  assert.equal(st.m2sWriteCount, 3);
  assert.equal(st.m2sReadCount, 1);
  assert.equal(st.m2sQueuedMessages, 2);
  assert.ok(st.m2sQueuedBytes >= 2);
  assert.equal(st.s2mWriteCount, 1);
  assert.equal(st.s2mQueuedMessages, 1);
  assert.equal(st.epoch, 1);
  assert.equal(typeof st.segmentEpochNs, 'bigint');
  const createdMs = Number(st.segmentEpochNs / 1000000n);
  assert.ok(Math.abs(createdMs - Date.now()) < 600000, `segment created ${new Date(createdMs).toISOString()}`);
});

test('close: idempotent, later calls fail with CLOSED, a master removes its segment', () => {
  const { name, master, slave } = pair('close');
  slave.close();
  slave.close();
  assert.equal(slave.closed, true);
  assertEshmError(() => slave.read(), ErrorCode.CLOSED);
  assertEshmError(() => slave.tryRead(), ErrorCode.CLOSED);
  assertEshmError(() => slave.write('x'), ErrorCode.CLOSED);
  assertEshmError(() => slave.stats(), ErrorCode.CLOSED);
  assertEshmError(() => slave.isRemoteAlive(), ErrorCode.CLOSED);
  assert.equal(slave.role, Role.SLAVE, 'role stays readable');
  assert.ok(segmentExists(name));
  master.close();
  assert.equal(segmentExists(name), false);
});

test('close: Symbol.dispose closes', { skip: typeof Symbol.dispose !== 'symbol' && 'no Symbol.dispose' }, () => {
  const { master } = pair('dispose');
  master[Symbol.dispose]();
  assert.equal(master.closed, true);
});

test('peer liveness: isRemoteAlive turns false when the peer closes', async () => {
  const { master, slave } = pair('alive', { staleThresholdMs: 50 });
  await waitFor(() => master.isRemoteAlive(), 'the slave alive');
  assert.equal(master.peerState(), PeerState.ALIVE);
  slave.close();
  await waitFor(() => !master.isRemoteAlive(), 'the slave seen gone');
  assert.equal(master.stats().slaveAlive, false);
  assert.equal(master.peerState(), PeerState.DEAD);
});

test('ON_TIMEOUT: a slave not attached yet is waited for until the timeout, not reconnectWaitMs', async () => {
  const master = track(Channel.open(uniqueName('absent'), { role: Role.MASTER, reconnectWaitMs: 50 }));
  assert.equal(master.peerState(), PeerState.ABSENT);
  for (const read of [(o) => master.read(o), (o) => master.readAsync(o)]) {
    const start = Date.now();
    let err = null;
    try {
      await read({ timeoutMs: 300 });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof EshmError, `expected EshmError, got ${err}`);
    assert.equal(err.code, ErrorCode.TIMEOUT, err.message);
    assert.ok(Date.now() - start >= 290, `gave up after ${Date.now() - start} ms`);
  }
});
