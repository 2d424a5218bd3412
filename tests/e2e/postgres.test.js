// PostgreSQL: the whole gateway on the shared store, and several gateway nodes on one database
// — budgets exact across nodes, policy changes seen by every node at once, a crashed node's
// reservations recovered by that node only.
'use strict';

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, readSSE, sleep } = require('./harness');

const T = { timeout: 60000 };
const MSG = [{ role: 'user', content: 'hi' }];
const BODY = { model: 'gpt-4o', max_tokens: 50, messages: MSG };

let env;
let nodeB;
before(async () => {
  env = await startEnv({
    postgres: true,
    extraConfig: 'fallback: {enabled: false}\nbreaker: {failure_threshold: 0}\ndb_pool: 8',
    timeouts: { first_byte_ms: 8000, total_ms: 20000 },
  });
  nodeB = await env.startNode();
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 30000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

function chat(key, body = BODY, node = null) {
  const o = { body, headers: { authorization: `Bearer ${key}` }, timeoutMs: 30000 };
  return node ? node.request('POST', '/v1/chat/completions', o) : env.request('POST', '/v1/chat/completions', o);
}

function usd(micros) {
  return `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')}`;
}

function countStatuses(rs) {
  const n = {};
  for (const r of rs) n[r.status] = (n[r.status] || 0) + 1;
  return n;
}

test('the gateway runs on PostgreSQL: answers, streams, usage rows with their node', T, async () => {
  const r = await chat(env.apiKey);
  assert.equal(r.status, 200, r.text);
  const row = await env.waitUsage(r.headers.get('x-request-id'));
  assert.equal(row.state, 'settled');
  assert.ok(row.cost_micros > 0);
  assert.match(row.node, /:\d+$/);
  const res = await fetch(`${nodeB.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...BODY, stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(res.status, 200);
  const { done } = await readSSE(res);
  assert.equal(done, true);
  const rowB = await env.waitUsage(res.headers.get('x-request-id'));
  assert.equal(rowB.state, 'settled');
  assert.notEqual(rowB.node, row.node, 'each node writes its own name');
  const health = await env.request('GET', '/admin/v1/health', { headers: { authorization: `Bearer ${env.superadminKey()}` } });
  assert.equal(health.json.store, 'postgres');
});

test('two nodes, 1,000 concurrent requests (500 each) against a budget for exactly 100: 100 admitted in all', T, async () => {
  const probe = await chat(env.apiKey);
  const w = (await env.waitUsage(probe.headers.get('x-request-id'))).reserved_micros;
  const key = await env.createKey('shared-budget', ['--daily-usd', usd(100 * w)]);
  await env.fake.reset();
  // the admitted hold their reservations until every one of the 1,000 is decided: a settled
  // call frees what it reserved beyond its cost, and a slow machine (TSan, PostgreSQL on the
  // same cores) can take seconds to decide them all
  for (let i = 0; i < 100; i++) await env.fake.next('openai', 'delay', { ms: 6000 }); // < first_byte_ms
  const rs = await Promise.all(Array.from({ length: 1000 }, (_, i) => chat(key, BODY, i % 2 ? nodeB : null)));
  const n = countStatuses(rs);
  assert.deepEqual(n, { 200: 100, 429: 900 }, JSON.stringify(n));
  assert.equal((await env.fake.requests('openai')).length, 100, 'exactly 100 reached the provider');
  const keyId = await env.keyId('shared-budget');
  const t = await env.usageTotals(['--key', keyId]);
  assert.equal(t.requests, 100);
  assert.ok(t.cost_micros <= 100 * w);
  const perNode = countStatuses(rs.filter((r, i) => i % 2 === 1));
  assert.ok((perNode[200] || 0) > 0 && (perNode[200] || 0) < 100, `both nodes admitted some (${JSON.stringify(perNode)})`);
});

test('a policy change or a revocation is seen by every node at once', T, async () => {
  const key = await env.createKey('moving');
  const keyId = await env.keyId('moving');
  assert.equal((await chat(key, BODY, nodeB)).status, 200);
  await env.cli(['keys', 'update', keyId, '--models', 'gpt-4o-mini', '--db', env.db]);
  let r = await chat(key, BODY, nodeB);
  assert.equal(r.status, 403, 'node B sees the new allowlist on the next request');
  assert.equal((await chat(key, { ...BODY, model: 'gpt-4o-mini' })).status, 200);
  await env.revokeKey(keyId);
  r = await chat(key, { ...BODY, model: 'gpt-4o-mini' }, nodeB);
  assert.equal(r.status, 401);
  r = await chat(key, { ...BODY, model: 'gpt-4o-mini' });
  assert.equal(r.status, 401);
});

test('org limits hold across nodes (requests per hour)', T, async () => {
  await env.cli(['orgs', 'create', 'pgorg', '--rph', '3', '--db', env.db]);
  const { stdout } = await env.cli(['keys', 'create', '--org', 'pgorg', '--name', 'k', '--db', env.db]);
  const key = stdout.trim().split('\n').pop();
  const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => chat(key, BODY, i % 2 ? nodeB : null)));
  assert.deepEqual(countStatuses(rs), { 200: 3, 429: 5 });
  const refused = rs.find((r) => r.status === 429);
  assert.equal(refused.json.error.code, 'requests_per_hour_exceeded');
  assert.equal(refused.json.error.limit.scope, 'org');
  const ra = Number(refused.headers.get('retry-after'));
  assert.ok(ra > 3500 && ra <= 3601, `Retry-After about an hour (${ra})`);
});

test('kill -9 of one node: its in-flight reservations become uncertain when it restarts; the other node\'s stay its own', T, async () => {
  const key = await env.createKey('crashy');
  const keyId = await env.keyId('crashy');
  for (let i = 0; i < 12; i++) await env.fake.next('openai', 'delay', { ms: 3000 });
  const onA = Array.from({ length: 6 }, () => chat(key).catch(() => ({ status: 0 })));
  const onB = Array.from({ length: 6 }, () => chat(key, BODY, nodeB).catch(() => ({ status: 0 })));
  await sleep(800);
  await env.crash();
  let rows = (await env.queryRows(`key_row_id = (SELECT id FROM api_keys WHERE key_id = '${keyId}')`));
  assert.equal(rows.filter((r) => r.state === 'reserved').length, 12, 'all 12 in flight');
  await env.restart();
  rows = await env.queryRows(`key_row_id = (SELECT id FROM api_keys WHERE key_id = '${keyId}')`);
  const uncertain = rows.filter((r) => r.state === 'uncertain');
  assert.equal(uncertain.length, 6, 'the crashed node recovered its own six');
  assert.ok(uncertain.every((r) => r.cost_micros === r.reserved_micros));
  const a = await Promise.all(onA);
  assert.ok(a.every((r) => r.status !== 200), 'the crashed node answered none');
  const b = await Promise.all(onB);
  assert.deepEqual(countStatuses(b), { 200: 6 }, 'node B finished its own');
  rows = await env.queryRows(`key_row_id = (SELECT id FROM api_keys WHERE key_id = '${keyId}')`);
  assert.equal(rows.filter((r) => r.state === 'settled').length, 6);
  assert.equal(rows.filter((r) => r.state === 'reserved').length, 0);
});

test('fail closed: when the store cannot record the reservation, 503 and nothing goes upstream', T, async () => {
  const key = await env.createKey('closed');
  assert.equal((await chat(key)).status, 200);
  await env.fake.clear();
  // the counters' table disappears: keys still resolve, reservations cannot be written
  const { execFileSync } = require('node:child_process');
  execFileSync('psql', [env.db, '-q', '-c', 'ALTER TABLE usage_rate RENAME TO usage_rate_gone']);
  try {
    for (const node of [null, nodeB]) {
      const r = await chat(key, BODY, node);
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.error.code, 'store_unavailable');
    }
    assert.equal((await env.fake.requests()).length, 0, 'no provider call without a reservation');
  } finally {
    execFileSync('psql', [env.db, '-q', '-c', 'ALTER TABLE usage_rate_gone RENAME TO usage_rate']);
  }
  assert.equal((await chat(key)).status, 200, 'and it serves again once the store answers');
});
