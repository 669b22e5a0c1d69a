'use strict';
// readAsync(): waits on koffi's worker thread, keeps the event loop running, one reader at a time, and
// a close() during a pending read ends it with CLOSED.

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const { Channel, Role, DisconnectBehavior, PeerState, EshmError, ErrorCode } = require('..');
const { uniqueName, segmentExists, cleanup, payload, waitFor } = require('./helpers');

const open = [];
function pair(tag, options = {}) {
  const name = uniqueName(tag);
  const master = Channel.open(name, { role: Role.MASTER, ...options });
  const slave = Channel.open(name, { role: Role.SLAVE, ...options });
  open.push(master, slave);
  return { name, master, slave };
}

test.after(() => cleanup(open));

test('readAsync: timers keep firing while a read waits', async () => {
  const { master, slave } = pair('loop');
  let ticks = 0;
  // The message is written by the 5th tick of a timer: the read can only complete if the event loop
  // kept running timers while it waited (no claim about how fast they fire).
  const timer = setInterval(() => {
    ticks++;
    if (ticks === 5) master.write(`after ${ticks} ticks`);
  }, 10);
  try {
    const got = await slave.readAsync({ timeoutMs: 30000 });
    assert.equal(got.toString(), 'after 5 ticks');
    assert.ok(ticks >= 5);
  } finally {
    clearInterval(timer);
  }
});

test('readAsync: times out with TIMEOUT after its own timeout, not a slice', async () => {
  const { slave } = pair('timeout');
  const t0 = Date.now();
  await assert.rejects(slave.readAsync({ timeoutMs: 200 }), (err) => err instanceof EshmError && err.code === ErrorCode.TIMEOUT);
  assert.ok(Date.now() - t0 >= 190, `gave up after ${Date.now() - t0} ms`);
  await assert.rejects(slave.readAsync({ timeoutMs: -5 }), (err) => err.code === ErrorCode.INVALID_PARAM);
});

test('readAsync: large messages arrive whole', async () => {
  const { master, slave } = pair('large');
  const data = payload(300000, 3);
  master.write(data);
  master.write(Buffer.alloc(0));
  assert.ok((await slave.readAsync()).equals(data));
  assert.equal((await slave.readAsync()).length, 0);
});

test('readAsync: concurrent calls are served one at a time, in call order', async () => {
  const { master, slave } = pair('order');
  const reads = [];
  for (let i = 0; i < 20; i++) reads.push(slave.readAsync({ timeoutMs: 10000 }));
  await sleep(50);
  for (let i = 0; i < 20; i++) master.write(`#${i}`);
  const got = await Promise.all(reads);
  assert.deepEqual(got.map(String), Array.from({ length: 20 }, (_, i) => `#${i}`));
});

test('readAsync: a sync read while one is pending is refused (one reader at a time)', async () => {
  const { master, slave } = pair('exclusive');
  const pending = slave.readAsync({ timeoutMs: 10000 });
  await sleep(20);
  assert.throws(() => slave.read({ timeoutMs: 0 }), (err) => err.code === ErrorCode.INVALID_PARAM && /readAsync/.test(err.message));
  assert.throws(() => slave.tryRead(), (err) => err.code === ErrorCode.INVALID_PARAM);
  // The write side and the any-thread calls stay usable meanwhile.
  slave.write('pong');
  assert.equal(typeof slave.stats().m2sReadCount, 'number');
  master.write('ping');
  assert.equal((await pending).toString(), 'ping');
  assert.equal(master.read().toString(), 'pong');
});

// The reads wait forever: only close() can end them (the watchdog fails the test otherwise).
test('close() during a pending readAsync ends it with CLOSED and frees the channel', { timeout: 60000 }, async () => {
  const { name, master, slave } = pair('closepending');
  const pending = slave.readAsync({ timeoutMs: -1 });
  const queued = slave.readAsync({ timeoutMs: -1 });
  await sleep(100);
  slave.close();
  await assert.rejects(pending, (err) => err instanceof EshmError && err.code === ErrorCode.CLOSED);
  await assert.rejects(queued, (err) => err.code === ErrorCode.CLOSED);
  await assert.rejects(slave.readAsync(), (err) => err.code === ErrorCode.CLOSED);
  // The slave role was released: a new slave can attach.
  const again = Channel.open(name, { role: Role.SLAVE });
  open.push(again);
  master.write('after');
  assert.equal(again.read().toString(), 'after');
  again.close();
  master.close();
  assert.equal(segmentExists(name), false);
});

test('readAsync: a gone peer ends the read after reconnectWaitMs, as read() does (ON_TIMEOUT)', async () => {
  const name = uniqueName('stale');
  const master = Channel.open(name, { role: Role.MASTER, reconnectWaitMs: 300 });
  open.push(master);
  // The slave attaches and leaves: both reads end with SLAVE_STALE long before their 20 s timeout. (A slave
  // that has not attached yet is waited for until the timeout: channel.test.js.)
  const slave = Channel.open(name, { role: Role.SLAVE });
  await waitFor(() => master.isRemoteAlive(), 'the slave alive');
  slave.close();
  await waitFor(() => master.peerState() === PeerState.DEAD, 'the slave seen gone');
  assert.throws(() => master.read({ timeoutMs: 20000 }), (err) => err.code === ErrorCode.SLAVE_STALE);
  await assert.rejects(master.readAsync({ timeoutMs: 20000 }), (err) => err instanceof EshmError && err.code === ErrorCode.SLAVE_STALE);
  // NEVER waits for the peer as long as the read's own timeout allows.
  const patient = Channel.open(uniqueName('never'), { role: Role.MASTER, reconnectWaitMs: 50, disconnectBehavior: DisconnectBehavior.NEVER });
  open.push(patient);
  await assert.rejects(patient.readAsync({ timeoutMs: 400 }), (err) => err.code === ErrorCode.TIMEOUT);
});
