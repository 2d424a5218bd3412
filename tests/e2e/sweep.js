#!/usr/bin/env node
// tests/e2e/sweep.js DIR — the secret sweep over what the e2e suites left in DIR (the harness
// keeps each env's files there when LLMGW_E2E_SWEEP=DIR; see harness.js): every secret an env saw
// (provider keys, raw API keys, subject tokens, HMAC keys, share codes) is looked for, as text
// and for an HMAC key also as its bytes and their hex, in every file the env left — SQLite
// database, WAL and shared memory, the gateway's stderr, exports and audit answers, a
// PostgreSQL dump. Prints each hit, then "sweep: N passed, M failed" (one per env).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
if (!dir || !fs.existsSync(dir)) {
  console.log(`sweep: no directory ${dir || '(none given)'}`);
  console.log('sweep: 0 passed, 1 failed');
  process.exit(1);
}

function filesOf(d) {
  const out = [];
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) out.push(...filesOf(p));
    else if (e.isFile() && e.name !== 'secrets.json') out.push(p);
  }
  return out;
}

// The forms a secret could be stored in: the text, and for a base64url secret of 32 bytes (an
// HMAC key) the bytes and their hex.
function forms(secret) {
  const f = [Buffer.from(secret)];
  if (/^[A-Za-z0-9_-]{43}$/.test(secret)) {
    const raw = Buffer.from(secret, 'base64url');
    f.push(raw, Buffer.from(raw.toString('hex')));
  }
  return f;
}

let pass = 0;
let fail = 0;
let nsecrets = 0;
let bytes = 0;
for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
  if (!e.isDirectory()) continue;
  const envDir = path.join(dir, e.name);
  const sf = path.join(envDir, 'secrets.json');
  if (!fs.existsSync(sf)) continue;
  const secrets = JSON.parse(fs.readFileSync(sf, 'utf8'));
  nsecrets += secrets.length;
  const needles = secrets.flatMap((s) => forms(s).map((b) => [s, b]));
  const hits = [];
  for (const f of filesOf(envDir)) {
    const buf = fs.readFileSync(f);
    bytes += buf.length;
    for (const [s, b] of needles) {
      if (buf.indexOf(b) >= 0) hits.push(`${path.relative(dir, f)}: ${s.slice(0, 10)}… (${b.length === s.length ? 'text' : 'bytes'})`);
    }
  }
  if (hits.length === 0) pass++;
  else {
    fail++;
    console.log(`secret found in ${e.name}:\n  ${hits.join('\n  ')}`);
  }
}
console.log(`sweep: ${pass + fail} envs, ${nsecrets} secrets, ${(bytes / 1048576).toFixed(1)} MiB searched`);
console.log(`sweep: ${pass} passed, ${fail} failed`);
process.exit(fail === 0 ? 0 : 1);
