#!/usr/bin/env node
'use strict';
// One side of the per-binding throughput stream (benchmarks/bindings/run.py), through the eshm Node package
// (node/, koffi over $ESHM_LIBESHM), synchronous write()/read():
//
//   node_peer.js writer NAME SECONDS   master: waits for the reader, writes 64-byte messages for SECONDS,
//                                      then a 1-byte stop message; prints "SENT <n>"
//   node_peer.js reader NAME           slave: counts 64-byte messages from the first to the stop message;
//                                      prints "RECV <n> <seconds>"

const path = require('node:path');

const { Channel, Role } = require(path.resolve(__dirname, '..', '..', 'node'));

const SETUP_TIMEOUT_MS = 30000;

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function writer(name, seconds) {
  const ch = Channel.open(name, { role: Role.MASTER });
  try {
    const setup = Date.now() + SETUP_TIMEOUT_MS;
    while (!ch.isRemoteAlive()) {
      if (Date.now() > setup) throw new Error('no reader');
      sleepMs(1);
    }
    const message = Buffer.alloc(64);
    const options = { timeoutMs: SETUP_TIMEOUT_MS };
    const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    let sent = 0;
    for (;;) {
      if ((sent & 1023) === 0 && process.hrtime.bigint() >= end) break;
      ch.write(message, options);
      sent++;
    }
    ch.write(Buffer.alloc(1), options);
    console.log(`SENT ${sent}`);
    const leave = Date.now() + SETUP_TIMEOUT_MS;
    while (ch.isRemoteAlive() && Date.now() < leave) sleepMs(1);
  } finally {
    ch.close();
  }
}

function reader(name) {
  const ch = Channel.open(name, { role: Role.SLAVE, maxReconnectAttempts: 300 });
  try {
    const options = { timeoutMs: SETUP_TIMEOUT_MS };
    let count = 0;
    let first = 0n;
    for (;;) {
      const data = ch.read(options);
      if (data.length !== 64) break;
      if (count === 0) first = process.hrtime.bigint();
      count++;
    }
    const elapsed = Number(process.hrtime.bigint() - first) / 1e9;
    console.log(`RECV ${count} ${elapsed.toFixed(6)}`);
  } finally {
    ch.close();
  }
}

const [side, name, seconds] = process.argv.slice(2);
if (side === 'writer' && name) writer(name, Number(seconds || 1));
else if (side === 'reader' && name) reader(name);
else {
  process.stderr.write('usage: node_peer.js writer NAME SECONDS | reader NAME\n');
  process.exitCode = 2;
}
