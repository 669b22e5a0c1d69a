'use strict';
// Shared by the tests: unique channel names whose segments are removed after each test file.

const crypto = require('node:crypto');
const fs = require('node:fs');

const created = new Set();

/** A channel name no other test or run uses; cleanup() removes its segment. */
function uniqueName(tag) {
  const name = `node_${tag}_${process.pid}_${crypto.randomBytes(5).toString('hex')}`;
  created.add(name);
  return name;
}

function segmentExists(name) {
  return fs.existsSync(`/dev/shm/eshm_${name}`);
}

/** Closes the channels (ignoring errors) and removes every segment uniqueName() named. */
function cleanup(channels = []) {
  for (const ch of channels) {
    try {
      ch.close();
    } catch {
      // already closed or broken: the segment removal below still runs
    }
  }
  for (const name of created) {
    fs.rmSync(`/dev/shm/eshm_${name}`, { force: true });
  }
}

/** Deterministic bytes of every value (NULs included) for a given seed. */
function payload(size, seed) {
  const out = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761 + size) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32: cheap and covers all byte values.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Polls `predicate` until it returns true; fails after `timeoutMs` (a watchdog, not a timing claim). */
async function waitFor(predicate, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

module.exports = { uniqueName, segmentExists, cleanup, payload, waitFor };
