#!/usr/bin/env node
'use strict';
// A Node.js test peer for the interop tests: one endpoint of an eshm channel through the eshm Node package
// (node/, over $ESHM_LIBESHM).
//
//   peer.js demo master|slave NAME [--count N]
//       Speaks the eshm_demo line protocol. Master: sends N "Hello from Node master #i" (20 per second),
//       prints "[MASTER] Sent: ..." and "[MASTER] Received: <reply>" for N replies. Slave: prints
//       "[SLAVE] Received (<bytes> bytes): <text>" for N messages (read with readAsync) and answers each
//       with "ACK from Node slave #k" ("[SLAVE] Sent: ..."). Last line "DONE".
//
//   peer.js payloads master|slave NAME
//       The payload protocol of peer.py: the master sends every size class (0 .. the channel's maximum)
//       and checks each echo; lines "READY ... max=<n>", "SENT|ECHO|RECV <i> <size> <sha256>",
//       "TOO_LARGE_REFUSED", then "DONE <n>" (exit 0) or "FAIL <reason>" (exit 1).
//
// Every wait is bounded; a peer that waits too long fails with a message.

const crypto = require('node:crypto');
const path = require('node:path');

const { Channel, Role, ErrorCode } = require(path.resolve(__dirname, '..', '..', 'node'));

const IO_TIMEOUT_MS = 2000;
const TOTAL_TIMEOUT_MS = 120000;
// Errors a peer waits through: nothing yet, or the other side not there (yet).
const RETRY = new Set([ErrorCode.TIMEOUT, ErrorCode.MASTER_STALE, ErrorCode.SLAVE_STALE]);

function out(line) {
  process.stdout.write(`${line}\n`);
}

function sha(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

class Failure extends Error {}

const deadline = Date.now() + TOTAL_TIMEOUT_MS;

// Runs step() until it succeeds; retries the waiting errors until the overall deadline.
async function retry(what, step) {
  for (;;) {
    try {
      return await step();
    } catch (err) {
      if (!RETRY.has(err.code)) throw err;
      if (Date.now() > deadline) throw new Failure(`${what}: gave up (${err.message})`);
    }
  }
}

function openChannel(name, role) {
  // A slave waits up to 20 s for its master (200 x 100 ms).
  return Channel.open(name, { role, maxReconnectAttempts: 200 });
}

function payloadSizes(max) {
  const sizes = [0, 1, 15, 16, 17, 255, 256, 4095, 4096, 4097, 65535, 65536, 65537, max - 1, max];
  return [...new Set(sizes.filter((s) => s >= 0 && s <= max))].sort((a, b) => a - b);
}

function payload(index, size) {
  // Every byte value, NULs included, different for every index.
  const seed = crypto.createHash('sha256').update(`node payload ${index} ${size}`).digest();
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 32) {
    crypto.createHash('sha256').update(seed).update(String(i)).digest().copy(out, i);
  }
  return out;
}

async function runPayloads(role, name) {
  const ch = openChannel(name, role === 'master' ? Role.MASTER : Role.SLAVE);
  try {
    out(`READY node ${role} role=${ch.role} max=${ch.maxMessageSize}`);
    const write = (data) => retry('write', () => ch.write(data, { timeoutMs: IO_TIMEOUT_MS }));
    const read = () => retry('read', () => ch.read({ timeoutMs: IO_TIMEOUT_MS }));
    const sizes = payloadSizes(ch.maxMessageSize);
    if (role === 'master') {
      for (const [i, size] of sizes.entries()) {
        const data = payload(i, size);
        await write(data);
        out(`SENT ${i} ${size} ${sha(data)}`);
        const echo = await read();
        out(`ECHO ${i} ${echo.length} ${sha(echo)}`);
        if (!echo.equals(data)) throw new Failure(`echo ${i} differs: sent ${size} bytes, got ${echo.length}`);
      }
      try {
        ch.write(Buffer.alloc(ch.maxMessageSize + 1), { timeoutMs: IO_TIMEOUT_MS });
        throw new Failure('a message over the maximum was accepted');
      } catch (err) {
        if (err.code !== ErrorCode.MESSAGE_TOO_LARGE) throw err;
        out('TOO_LARGE_REFUSED');
      }
      // Tell the slave we are done and wait for its goodbye before closing (a master's close removes the name).
      await write('BYE');
      await read();
    } else {
      for (let i = 0; ; i++) {
        const data = await read();
        if (data.equals(Buffer.from('BYE'))) {
          await write('BYE');
          break;
        }
        out(`RECV ${i} ${data.length} ${sha(data)}`);
        await write(data);
      }
    }
    out(`DONE ${sizes.length}`);
  } finally {
    ch.close();
  }
}

function printable(buf) {
  // As eshm_demo prints: trailing NULs (old peers send them) dropped.
  let end = buf.length;
  while (end > 0 && buf[end - 1] === 0) end--;
  return buf.subarray(0, end).toString('utf8');
}

async function runDemo(role, name, count) {
  const ch = openChannel(name, role === 'master' ? Role.MASTER : Role.SLAVE);
  try {
    out(`[${role.toUpperCase()}] Initialized with role: ${ch.role === Role.MASTER ? 'MASTER' : 'SLAVE'}`);
    if (role === 'master') {
      for (let i = 0; i < count; i++) {
        const msg = `Hello from Node master #${i}`;
        await retry('write', () => ch.write(msg, { timeoutMs: IO_TIMEOUT_MS }));
        out(`[MASTER] Sent: ${msg}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      for (let i = 0; i < count; i++) {
        const reply = await retry('read', () => ch.readAsync({ timeoutMs: IO_TIMEOUT_MS }));
        out(`[MASTER] Received: ${printable(reply)}`);
      }
      // Let the slave finish reading before the master's close removes the name.
      await new Promise((resolve) => setTimeout(resolve, 500));
    } else {
      for (let k = 0; k < count; k++) {
        const data = await retry('read', () => ch.readAsync({ timeoutMs: IO_TIMEOUT_MS }));
        out(`[SLAVE] Received (${data.length} bytes): ${printable(data)}`);
        const reply = `ACK from Node slave #${k}`;
        await retry('write', () => ch.write(reply, { timeoutMs: IO_TIMEOUT_MS }));
        out(`[SLAVE] Sent: ${reply}`);
      }
    }
    out('DONE');
  } finally {
    ch.close();
  }
}

async function main(argv) {
  const [mode, role, name, ...rest] = argv;
  if (!['demo', 'payloads'].includes(mode) || !['master', 'slave'].includes(role) || !name) {
    process.stderr.write('usage: peer.js demo|payloads master|slave NAME [--count N]\n');
    return 2;
  }
  const countAt = rest.indexOf('--count');
  const count = countAt >= 0 ? Number(rest[countAt + 1]) : 5;
  try {
    if (mode === 'demo') await runDemo(role, name, count);
    else await runPayloads(role, name);
    return 0;
  } catch (err) {
    out(`FAIL ${err instanceof Failure ? err.message : err.stack || err}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
