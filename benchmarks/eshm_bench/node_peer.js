#!/usr/bin/env node
'use strict';
// eshm-bench's node_eshm transport: the eshm Node package (node/, koffi over $ESHM_LIBESHM or the loader's
// libeshm.so), synchronous write()/read(), with the protocol of `python -m eshm.bench --peer` (python/eshm/bench.py),
// --peer-list too:
//   node node_peer.js --peer=node_eshm --mode=stream|pingpong --wait=spin|blocking --size=BYTES
//       --warmup_s=S --duration_s=S [--messages=N] [--eshm_wait=sleep|adaptive] [--cpus=A,B] --samples=PATH [--name=N]
// This process, the parent (the master: the stream's writer, the round trips' client), starts the child (--side=child,
// pinned to B by taskset); the last line on stdout is `messages=N seconds=S`; round trips (ns, uint64) go to PATH.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

let Channel, Role, loadError; // loadError: why the package does not load (npm ci in node/ installs what it needs)
try {
  ({ Channel, Role } = require(path.resolve(__dirname, '..', '..', 'node')));
} catch (e) {
  loadError = e;
}

const TIMEOUT_MS = 30000;
const WARM_END = Buffer.from('W');
const END = Buffer.from('E');

function parse(argv) {
  const o = { warmup_s: 0.1, duration_s: 1, messages: 0, eshm_wait: 'sleep', side: 'parent' };
  for (const arg of argv) {
    const m = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!m) throw new Error(`node_peer.js: unknown argument ${arg}`);
    o[m[1]] = ['size', 'warmup_s', 'duration_s', 'messages'].includes(m[1]) ? Number(m[2]) : m[2];
  }
  const ok = o.peer === 'node_eshm' && ['stream', 'pingpong'].includes(o.mode) && ['spin', 'blocking'].includes(o.wait);
  if (!ok || !(o.size >= 8)) {
    throw new Error('node_peer.js: needs --peer=node_eshm --mode=stream|pingpong --wait=spin|blocking --size>=8');
  }
  o.waits = o.wait === 'spin' ? { allowSleep: false } : o.eshm_wait === 'sleep' ? { spinNs: 0, yieldNs: 0 } : {};
  return o;
}

async function parent(o) {
  const name = o.name || `eshmbench_node_${process.pid}_${Date.now() % 1e9}`;
  let capacity = 1 << 20; // as eshm-bench's ring transports: at least 1 MiB, four of the largest message, 2^n
  while (capacity < 4 * (o.size + 64)) capacity *= 2;
  const ch = Channel.open(name, { role: Role.MASTER, m2sCapacity: capacity, s2mCapacity: capacity, ...o.waits });
  const childArgs = [__filename, ...process.argv.slice(2), '--side=child', `--name=${name}`];
  const child = o.cpus ? spawn('taskset', ['-c', o.cpus.split(',')[1], process.execPath, ...childArgs])
                       : spawn(process.execPath, childArgs);
  let childOut = '';
  child.stdout.on('data', (d) => { childOut += d; });
  child.stderr.on('data', (d) => process.stderr.write(d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal || code)));
  try {
    for (const setup = Date.now() + TIMEOUT_MS; !ch.isRemoteAlive();) {
      if (Date.now() > setup) throw new Error('node_eshm: the child did not attach');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // sleeps 1 ms
    }
    const message = Buffer.alloc(o.size, 0x78);
    const options = { timeoutMs: TIMEOUT_MS };
    const samples = [];
    let sent = 0;
    // (seconds, messages or 0, marker) of the warm-up and the measured phase; a stream reads the clock every 64.
    const phases = [[o.warmup_s, 0, WARM_END], [o.duration_s, o.messages, END]];
    for (const [phase, [seconds, count, marker]] of phases.entries()) {
      sent = 0;
      const stop = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
      let t = process.hrtime.bigint();
      while (count === 0 ? t < stop : sent < count) {
        ch.write(message, options);
        if (o.mode === 'pingpong') {
          if (ch.read(options).length !== o.size) throw new Error('node_eshm: an echo of the wrong size');
          const t2 = process.hrtime.bigint();
          if (phase === 1) samples.push(t2 - t);
          t = t2;
        } else if ((sent & 63) === 0) {
          t = process.hrtime.bigint();
        }
        sent++;
      }
      if (o.mode === 'stream' || phase === 1) ch.write(marker, options);
    }
    const status = await exited;
    if (status !== 0) throw new Error(`node_eshm: the child exited with ${status}`);
    if (o.mode === 'pingpong') {
      fs.writeFileSync(o.samples, Buffer.from(BigUint64Array.from(samples).buffer));
      return `messages=${samples.length} seconds=${(Number(samples.reduce((a, b) => a + b, 0n)) / 1e9).toFixed(9)}`;
    }
    const m = /messages=(\d+) seconds=(\S+)/.exec(childOut);
    if (!m || Number(m[1]) !== sent) {
      throw new Error(`node_eshm: the writer sent ${sent} messages, the reader reported: ${childOut.trim()}`);
    }
    return m[0];
  } catch (e) {
    child.kill('SIGKILL'); // a no-op once it has exited
    throw e;
  } finally {
    ch.close();
  }
}

function childSide(o) {
  const ch = Channel.open(o.name, { role: Role.SLAVE, maxReconnectAttempts: 300, reconnectRetryIntervalMs: 10,
                                    ...o.waits });
  const options = { timeoutMs: TIMEOUT_MS };
  try {
    if (o.mode === 'pingpong') {
      for (let m = ch.read(options); m.length === o.size; m = ch.read(options)) ch.write(m, options);
      return;
    }
    let m;
    do m = ch.read(options); while (m.length === o.size);
    if (!m.equals(WARM_END)) throw new Error(`node_eshm: a message of ${m.length} bytes`);
    const t0 = process.hrtime.bigint();
    let n = 0;
    while ((m = ch.read(options)).length === o.size) n++;
    if (!m.equals(END)) throw new Error(`node_eshm: a message of ${m.length} bytes`);
    console.log(`messages=${n} seconds=${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(9)}`);
  } finally {
    ch.close();
  }
}

(async () => {
  if (process.argv[2] === '--peer-list') { // as python -m eshm.bench --peer-list: name, ok or why not, what
    const why = loadError ? `node_eshm: the Node package does not load (npm ci in node/): ${loadError.message
      .split('\n')[0]}` : 'ok';
    console.log(`node_eshm\t${why}\tthe Node package: write() / read()`);
    return;
  }
  if (loadError) throw loadError;
  const o = parse(process.argv.slice(2));
  if (o.side === 'child') childSide(o);
  else console.log(await parent(o));
})().catch((e) => {
  process.stderr.write(`${e.message}\n`);
  process.exitCode = 1;
});
