#!/usr/bin/env node
'use strict';
// The Node.js side of the universal bridge: logs the producer's JSON readings from one eshm channel (as
// its slave), reading with readAsync() so the event loop stays free (a timer prints a status line).
//
//   consumer.js NAME [TOTAL_TIMEOUT_S]
//
// Prints "[node] got <message>" for every reading, exactly as received, then "[node] done: <n> readings"
// on the end marker ({"end":true,"count":N}); exits 0 if it got all N, 1 on an error or a timeout.

const path = require('node:path');

// The package from this checkout (node/); an installed one is require('eshm').
const { Channel, Role, ErrorCode } = require(path.resolve(__dirname, '..', '..', 'node'));

async function main() {
  const [name, timeoutArg] = process.argv.slice(2);
  if (!name) {
    process.stderr.write('usage: consumer.js NAME [TOTAL_TIMEOUT_S]\n');
    return 2;
  }
  const deadline = Date.now() + Number(timeoutArg || 120) * 1000;
  // Wait up to 30 s for the producer to create the channel.
  const ch = Channel.open(name, { role: Role.SLAVE, maxReconnectAttempts: 300 });
  console.log(`[node] reading channel ${name}`);
  let count = 0;
  const status = setInterval(() => console.log(`[node] status: ${count} readings so far`), 1000);
  try {
    while (Date.now() < deadline) {
      let message;
      try {
        message = await ch.readAsync({ timeoutMs: 500 });
      } catch (err) {
        // Nothing yet, or the producer not (yet) there: keep waiting until our own deadline.
        if ([ErrorCode.TIMEOUT, ErrorCode.MASTER_STALE].includes(err.code)) continue;
        throw err;
      }
      const text = message.toString('utf8');
      const reading = JSON.parse(text);
      if (reading.end) {
        console.log(`[node] done: ${count} readings`);
        return reading.count === count ? 0 : 1;
      }
      count++;
      console.log(`[node] got ${text}`);
    }
    console.error(`[node] no end marker in time (${count} readings)`);
    return 1;
  } finally {
    clearInterval(status);
    ch.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`[node] ${err.stack || err}`);
    process.exitCode = 1;
  },
);
