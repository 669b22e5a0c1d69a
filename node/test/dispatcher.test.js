'use strict';
// readAsync() over one wait set: hundreds of channels with pending reads in one process share one
// eshm_waitset_wait on koffi's worker (never more than one async call in flight), a queued message needs no
// wait at all, and timeouts, gone peers and close() settle each read as a single eshm_read would.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { setTimeout: sleep } = require('node:timers/promises');

const { Channel, Role, DisconnectBehavior, PeerState, EshmError, ErrorCode, readAsyncStats } = require('..');
const { uniqueName, cleanup, waitFor } = require('./helpers');

const open = [];
// Small rings, and a stale threshold that a loaded machine cannot trip with 600 channels in one process.
const SMALL = { m2sCapacity: 4096, s2mCapacity: 4096, staleThresholdMs: 5000 };

function pair(tag, options = {}) {
  const name = uniqueName(tag);
  const master = Channel.open(name, { role: Role.MASTER, ...SMALL, ...options });
  const slave = Channel.open(name, { role: Role.SLAVE, ...SMALL, ...options });
  open.push(master, slave);
  return { name, master, slave };
}

test.after(() => cleanup(open));

// Samples the in-flight count on every timer tick while `promise` settles: it must never exceed one.
async function watchInFlight(promise) {
  let most = 0;
  const timer = setInterval(() => {
    most = Math.max(most, readAsyncStats().asyncCallsInFlight);
  }, 1);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
    most = Math.max(most, readAsyncStats().asyncCallsInFlight);
    assert.ok(most <= 1, `${most} koffi async calls were in flight at once`);
  }
}

test('300 channels with a pending readAsync each: one wait serves them all', { timeout: 120000 }, async () => {
  const N = 300;
  const pairs = Array.from({ length: N }, (_, i) => pair(`many${i}`));
  await waitFor(() => pairs.every((p) => p.slave.isRemoteAlive()), 'every slave sees its master');
  const waitsBefore = readAsyncStats().waits;
  const reads = pairs.map((p) => p.slave.readAsync({ timeoutMs: 60000 }));
  assert.equal(readAsyncStats().channelsWaiting, N);
  assert.equal(readAsyncStats().asyncCallsInFlight, 1, 'one wait runs for all 300');
  // The peers answer in a scrambled order, a few at a time, from timers on this same thread.
  const writer = (async () => {
    for (let k = 0; k < N; k++) {
      const i = (k * 7919) % N; // a permutation
      pairs[i].master.write(`to ${i}`);
      if (k % 10 === 9) await sleep(1);
    }
  })();
  const got = await watchInFlight(Promise.all(reads));
  await writer;
  assert.deepEqual(
    got.map(String),
    pairs.map((_, i) => `to ${i}`),
  );
  const waits = readAsyncStats().waits - waitsBefore;
  assert.ok(waits >= 1 && waits < N, `${waits} waits for ${N} reads`);
  // Nothing pending: the dispatcher stops waiting (it would otherwise keep the process alive).
  assert.equal(readAsyncStats().channelsWaiting, 0);
  await waitFor(() => readAsyncStats().asyncCallsInFlight === 0, 'the last wait to return');
  assert.ok(readAsyncStats().maxAsyncCallsInFlight <= 1, `max ${readAsyncStats().maxAsyncCallsInFlight} in flight`);
  for (const p of pairs) {
    p.slave.close();
    p.master.close();
  }
});

test('readAsync: a queued message resolves without any wait', async () => {
  const { master, slave } = pair('queued');
  master.write('ready');
  const before = readAsyncStats().waits;
  assert.equal((await slave.readAsync({ timeoutMs: 0 })).toString(), 'ready');
  assert.equal(readAsyncStats().waits, before, 'no eshm_waitset_wait was started');
  await assert.rejects(slave.readAsync({ timeoutMs: 0 }), (err) => err.code === ErrorCode.TIMEOUT);
  assert.equal(readAsyncStats().waits, before, 'timeout 0 does not wait either');
});

test('readAsync: a short timeout among long waits ends on time, with TIMEOUT', async () => {
  const { master, slave } = pair('longwait');
  const { slave: hasty } = pair('shortwait');
  const long = slave.readAsync({ timeoutMs: -1 }); // the wait runs for its longest (1 s) first
  await sleep(20);
  const t0 = Date.now();
  await watchInFlight(
    assert.rejects(hasty.readAsync({ timeoutMs: 200 }), (err) => err instanceof EshmError && err.code === ErrorCode.TIMEOUT),
  );
  const took = Date.now() - t0;
  assert.ok(took >= 190, `gave up after ${took} ms`);
  // The running wait was ended for the shorter deadline, not left to run its 1 s.
  assert.ok(took < 900, `TIMEOUT after ${took} ms`);
  master.write('late');
  assert.equal((await long).toString(), 'late');
});

test('close() of one channel among many pending: it rejects with CLOSED, the others are served', { timeout: 60000 }, async () => {
  const pairs = Array.from({ length: 10 }, (_, i) => pair(`closeamong${i}`));
  const reads = pairs.map((p) => p.slave.readAsync({ timeoutMs: -1 }));
  const queued = pairs[3].slave.readAsync({ timeoutMs: -1 });
  await sleep(50);
  const t0 = Date.now();
  pairs[3].slave.close();
  await assert.rejects(reads[3], (err) => err instanceof EshmError && err.code === ErrorCode.CLOSED);
  await assert.rejects(queued, (err) => err.code === ErrorCode.CLOSED);
  const took = Date.now() - t0;
  assert.ok(took < 900, `the reads rejected ${took} ms after close()`);
  // The role was released: a new slave attaches and reads.
  const again = Channel.open(pairs[3].name, { role: Role.SLAVE, ...SMALL });
  open.push(again);
  const fresh = again.readAsync({ timeoutMs: 10000 });
  pairs[3].master.write('to the new slave');
  assert.equal((await fresh).toString(), 'to the new slave');
  pairs.forEach((p, i) => i !== 3 && p.master.write(`m${i}`));
  const rest = await Promise.all(reads.filter((_, i) => i !== 3));
  assert.deepEqual(
    rest.map(String),
    pairs.map((_, i) => `m${i}`).filter((_, i) => i !== 3),
  );
});

test('readAsync: a peer that dies while the read waits ends it after reconnectWaitMs (ON_TIMEOUT)', async () => {
  const { master, slave } = pair('dies', { reconnectWaitMs: 300 });
  await waitFor(() => master.isRemoteAlive(), 'the slave alive');
  const pending = master.readAsync({ timeoutMs: 20000 });
  await sleep(50);
  const t0 = Date.now();
  slave.close();
  await assert.rejects(pending, (err) => err instanceof EshmError && err.code === ErrorCode.SLAVE_STALE);
  const took = Date.now() - t0;
  assert.ok(took >= 290, `SLAVE_STALE after ${took} ms`);
  assert.equal(master.peerState(), PeerState.DEAD);
});

test('readAsync: a gone peer fails at once under IMMEDIATELY, as read() does', async () => {
  const master = Channel.open(uniqueName('immediate'), {
    role: Role.MASTER,
    ...SMALL,
    disconnectBehavior: DisconnectBehavior.IMMEDIATELY,
  });
  open.push(master);
  assert.throws(() => master.read({ timeoutMs: 5000 }), (err) => err.code === ErrorCode.SLAVE_STALE);
  await assert.rejects(master.readAsync({ timeoutMs: 5000 }), (err) => err.code === ErrorCode.SLAVE_STALE);
});

test('pending reads do not keep the process alive once settled', () => {
  // A child process with a read that resolves and one that times out must exit by itself.
  const script = `
    const { Channel, Role, readAsyncStats } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
    const name = process.argv[1];
    const master = Channel.open(name, { role: Role.MASTER, m2sCapacity: 4096, s2mCapacity: 4096 });
    const slave = Channel.open(name, { role: Role.SLAVE, m2sCapacity: 4096, s2mCapacity: 4096 });
    const got = slave.readAsync({ timeoutMs: 5000 });
    setTimeout(() => master.write('hi'), 20);
    got.then(async (m) => {
      await slave.readAsync({ timeoutMs: 100 }).catch((e) => console.log('then', e.codeName));
      console.log('got', m.toString(), readAsyncStats().channelsWaiting);
      // The channels stay open: only the absence of a pending read lets the process end.
    });
  `;
  const name = uniqueName('exit');
  const run = spawnSync(process.execPath, ['-e', script, name], { encoding: 'utf8', timeout: 20000 });
  assert.equal(run.signal, null, `the child did not exit by itself: ${run.stderr}`);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /then TIMEOUT\ngot hi 0/);
});
