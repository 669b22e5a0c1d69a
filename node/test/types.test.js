'use strict';
// index.d.ts against a typed use of every export (test/types/usage.ts): `tsc --noEmit` must pass, and
// the misuses marked there as expected errors must stay errors.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

test('index.d.ts type-checks a typed usage example (tsc --noEmit)', () => {
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  const run = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join(__dirname, 'types')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 300000,
  });
  assert.equal(run.status, 0, `tsc failed:\n${run.stdout}${run.stderr}`);
});
