// tests/e2e/cli.test.js — the llmgw command line as INTERFACE.md describes it: --help on every
// command, exit statuses with one-line reasons, raw keys printed once (last line) and never
// listed, bootstrap creating the superadmin only once.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.LLMGW_E2E_BIN ? path.resolve(process.env.LLMGW_E2E_BIN) : path.join(ROOT, 'build', 'llmgw');
const T = { timeout: 20000 };

let tmp;
let db;
function cli(...args) {
  const r = spawnSync(BIN, args, { cwd: ROOT, encoding: 'utf8', timeout: 15000, env: { PATH: process.env.PATH } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const lastLine = (s) => s.trim().split('\n').pop().trim();

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmgw-cli-'));
  db = `sqlite:${tmp}/nested/dir/cli.db`;
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('help', () => {
  const cmds = [[], ['serve'], ['migrate'], ['admin'], ['admin', 'bootstrap'], ['orgs'], ['orgs', 'create'],
    ['keys'], ['keys', 'create'], ['keys', 'list'], ['keys', 'revoke']];
  for (const c of cmds) {
    test(`llmgw ${c.join(' ')} --help prints usage and exits 0`, T, () => {
      const r = cli(...c, '--help');
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /usage: llmgw/);
    });
  }
  test('an unknown command exits non-zero with a reason on stderr', T, () => {
    const r = cli('frobnicate');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /unknown command 'frobnicate'/);
  });
  test('an unknown option is refused', T, () => {
    const r = cli('migrate', '--bogus');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /--bogus/);
  });
});

describe('store commands', () => {
  test('migrate creates the database (and its directories) and reports the schema version', T, () => {
    const r = cli('migrate', '--db', db);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /schema version [1-9]/);
    assert.ok(fs.existsSync(path.join(tmp, 'nested', 'dir', 'cli.db')));
    assert.equal(cli('migrate', '--db', db).code, 0, 'migrate twice is fine');
  });

  test('a postgres:// URL is refused clearly (backend not available yet)', T, () => {
    const r = cli('migrate', '--db', 'postgres://u@127.0.0.1:1/x');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /PostgreSQL/);
  });

  test('admin bootstrap prints the superadmin key once, as the last line; a second run creates nothing', T, () => {
    const r = cli('admin', 'bootstrap', '--db', db);
    assert.equal(r.code, 0, r.err);
    assert.match(lastLine(r.out), /^llmgw_[A-Za-z0-9_-]{43}$/);
    const again = cli('admin', 'bootstrap', '--db', db);
    assert.notEqual(again.code, 0);
    assert.match(again.err, /already exists/);
    assert.doesNotMatch(again.out, /llmgw_[A-Za-z0-9_-]{43}/);
  });

  test('orgs create: creates, refuses a duplicate and a bad slug', T, () => {
    assert.equal(cli('orgs', 'create', 'acme', '--name', 'Acme Inc', '--db', db).code, 0);
    const dup = cli('orgs', 'create', 'acme', '--db', db);
    assert.notEqual(dup.code, 0);
    assert.match(dup.err, /already exists/);
    const bad = cli('orgs', 'create', 'Bad Slug!', '--db', db);
    assert.notEqual(bad.code, 0);
  });

  test('keys create prints the raw key last; keys list shows id and prefix, never the raw key', T, () => {
    const r = cli('keys', 'create', '--org', 'acme', '--name', 'ci', '--role', 'org_admin', '--tier', 'pro',
      '--providers', 'openai,anthropic', '--models', 'gpt-4o', '--rph', '100', '--daily-usd', '2.50',
      '--monthly-usd', '40', '--db', db);
    assert.equal(r.code, 0, r.err);
    const raw = lastLine(r.out);
    assert.match(raw, /^llmgw_[A-Za-z0-9_-]{43}$/);
    const id = (r.out.match(/key_[0-9a-f]{16}/) || [])[0];
    assert.ok(id, r.out);
    const list = cli('keys', 'list', '--org', 'acme', '--db', db);
    assert.equal(list.code, 0, list.err);
    assert.ok(list.out.includes(id));
    assert.ok(list.out.includes(raw.slice(0, 10)), 'the display prefix is listed');
    assert.ok(!list.out.includes(raw), 'the raw key is never listed');
    assert.match(list.out, /active/);
    const rev = cli('keys', 'revoke', id, '--db', db);
    assert.equal(rev.code, 0, rev.err);
    assert.match(cli('keys', 'list', '--org', 'acme', '--db', db).out, /revoked/);
  });

  test('keys create refuses bad input with a one-line reason', T, () => {
    for (const args of [
      ['--org', 'nope'],
      ['--org', 'acme', '--role', 'god'],
      ['--org', 'acme', '--tier', 'gold'],
      ['--org', 'acme', '--providers', 'openai,acme-ai'],
      ['--org', 'acme', '--rph', 'ten'],
      ['--org', 'acme', '--daily-usd', '-5'],
      [],
    ]) {
      const r = cli('keys', 'create', ...args, '--db', db);
      assert.notEqual(r.code, 0, `keys create ${args.join(' ')} should fail`);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.doesNotMatch(r.out, /llmgw_/);
    }
  });

  test('keys revoke of an unknown id fails', T, () => {
    const r = cli('keys', 'revoke', 'key_0000000000000000', '--db', db);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /no key/);
  });
});
