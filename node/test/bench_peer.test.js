'use strict';
// eshm-bench's node_eshm transport (benchmarks/eshm_bench/node_peer.js) speaks the peer protocol: the last line
// says how many messages the reader counted (exactly what the writer sent) or how many round trips were timed,
// each of which is in the samples file; both processes end and leave no segment behind.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const PEER = path.resolve(__dirname, '..', '..', 'benchmarks', 'eshm_bench', 'node_peer.js');

function run(mode, wait, extra = []) {
  const samples = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node_peer_')), 'samples.bin');
  const done = spawnSync(process.execPath, [PEER, '--peer=node_eshm', `--mode=${mode}`, `--wait=${wait}`,
    '--size=64', '--warmup_s=0.01', '--messages=500', `--samples=${samples}`, ...extra],
  { encoding: 'utf8', timeout: 60000 });
  assert.equal(done.status, 0, done.stdout + done.stderr);
  const last = done.stdout.trim().split('\n').pop();
  const m = /^messages=(\d+) seconds=([\d.]+)$/.exec(last);
  assert.ok(m, last);
  return { messages: Number(m[1]), seconds: Number(m[2]), samples };
}

function leftovers() {
  return fs.readdirSync('/dev/shm').filter((f) => f.startsWith('eshm_eshmbench_node_'));
}

for (const wait of ['spin', 'blocking']) {
  test(`a ${wait} stream counts exactly the messages sent`, () => {
    const r = run('stream', wait);
    assert.equal(r.messages, 500);
    assert.ok(r.seconds > 0);
  });
}

test('a pingpong writes one sample per round trip', () => {
  const r = run('pingpong', 'spin', ['--eshm_wait=adaptive']);
  const bytes = fs.readFileSync(r.samples);
  const samples = new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
  assert.equal(samples.length, 500);
  assert.equal(r.messages, 500);
  const total = samples.reduce((a, b) => a + b, 0n);
  assert.ok(Math.abs(Number(total) / 1e9 - r.seconds) < 1e-6);
  assert.deepEqual(leftovers(), []);
});

test('bad arguments are refused', () => {
  const done = spawnSync(process.execPath, [PEER, '--peer=node_eshm', '--mode=sideways', '--wait=spin', '--size=64'],
    { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(done.status, 0);
  assert.match(done.stderr, /--mode=stream\|pingpong/);
});

test('--peer-list says node_eshm can run here', () => {
  const done = spawnSync(process.execPath, [PEER, '--peer-list'], { encoding: 'utf8', timeout: 60000 });
  assert.equal(done.status, 0, done.stderr);
  assert.match(done.stdout, /^node_eshm\tok\t/);
});
