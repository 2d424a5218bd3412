// Idempotency-Key: a keyed request reaches the provider at most once — replays byte for byte
// (streams too), 409 while in flight, 422 for another body, 400 for a malformed key, scoped to
// the caller and the endpoint; not kept when the gateway refused or nothing was executed;
// quarantined (502 uncertain_upstream_state) when the outcome is unknown, a kill -9 included;
// expired records purged. LLMGW_E2E_PG=1 runs it on PostgreSQL with a second node.
'use strict';

const { describe, test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startEnv, readSSE, sleep } = require('./harness');

const T = { timeout: 60000 };
const MSG = [{ role: 'user', content: 'hi' }];
const BODY = { model: 'gpt-4o', max_tokens: 50, messages: MSG };
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const PG = process.env.LLMGW_E2E_PG === '1';

let env;
let nodeB = null;
before(async () => {
  env = await startEnv({
    postgres: PG,
    // one attempt per request: every outcome here is the provider's answer to this one call
    extraConfig: 'fallback: {enabled: false}\nbreaker: {failure_threshold: 0}\nidempotency: {retention_days: 1, purge_interval_ms: 200}',
    timeouts: { first_byte_ms: 3000, total_ms: 20000 },
    // grok models: a provider that cannot be reached (nothing listens on port 9)
    env: { LLMGW_XAI_BASE_URL: 'http://127.0.0.1:9/xai' },
  });
  if (PG) nodeB = await env.startNode();
}, { timeout: 60000 });
after(async () => { if (process.env.SHOWLOG) console.log(env.log()); if (env) await env.stop(); }, { timeout: 30000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

const newKey = () => `k-${crypto.randomUUID()}`;

function keyed(idem, body = BODY, { path = '/v1/chat/completions', apiKey = env.apiKey, node = null, timeoutMs = 30000 } = {}) {
  const o = { body, headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': idem }, timeoutMs };
  return (node || env).request('POST', path, o);
}

// The replay of a request that has just been answered. On a shared store the answer is kept
// by a store thread just after it was sent, so a retry at once may briefly see 409 first.
async function replayOf(idem, body = BODY, o = {}) {
  for (let i = 0; ; i++) {
    const r = await keyed(idem, body, o);
    if (r.status !== 409 || i >= 40) return r;
    await sleep(50);
  }
}

async function calls(provider = 'openai') {
  return (await env.fake.requests(provider)).length;
}

function assertReplay(first, again) {
  assert.equal(again.status, first.status);
  assert.equal(again.text, first.text, 'the replay is byte for byte the first answer');
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.headers.get('x-llmgw-original-request-id'), first.headers.get('x-request-id'));
  assert.notEqual(again.headers.get('x-request-id'), first.headers.get('x-request-id'), 'the replay is a request of its own');
  assert.equal(again.headers.get('content-type'), first.headers.get('content-type'));
  assert.equal(first.headers.get('idempotent-replayed'), null);
}

describe('replay', () => {
  test('same key, same body after completion: the stored answer, no provider call, no new usage row', T, async () => {
    const k = newKey();
    const first = await keyed(k, { ...BODY, model: 'gpt-4o-mini', auto_route: true });
    assert.equal(first.status, 200, first.text);
    assert.ok(first.headers.get('x-llmgw-route-reason'));
    const again = await replayOf(k, { ...BODY, model: 'gpt-4o-mini', auto_route: true });
    assertReplay(first, again);
    assert.equal(again.headers.get('x-llmgw-route-reason'), first.headers.get('x-llmgw-route-reason'));
    assert.equal(await calls(), 1, 'one provider call');
    const rid = first.headers.get('x-request-id');
    assert.equal((await env.waitUsage(rid)).state, 'settled');
    assert.equal(await env.usageRow(again.headers.get('x-request-id')), null, 'the replay is not charged');
  });

  test('a streamed request replays the complete stream, byte for byte', T, async () => {
    const k = newKey();
    const body = { ...BODY, stream: true, stream_options: { include_usage: true } };
    const go = () => fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json', 'idempotency-key': k },
      body: JSON.stringify(body),
    });
    const res1 = await go();
    assert.equal(res1.status, 200);
    const s1 = await readSSE(res1);
    assert.equal(s1.done, true);
    let res2 = await go();
    for (let i = 0; res2.status === 409 && i < 40; i++) { await res2.text(); await sleep(50); res2 = await go(); }
    assert.equal(res2.status, 200);
    assert.equal(res2.headers.get('idempotent-replayed'), 'true');
    assert.match(res2.headers.get('content-type'), /^text\/event-stream/);
    const s2 = await readSSE(res2);
    assert.equal(s2.raw, s1.raw);
    assert.equal(s2.done, true);
    assert.ok(s2.events.some((e) => e.json && e.json.usage), 'with its usage chunk');
    assert.equal(await calls(), 1);
    // the stream flag is part of the body: asking for the same without streaming is another request
    const r = await keyed(k, BODY);
    assert.equal(r.status, 422);
  });

  test('the simple endpoint replays too; the same key on another endpoint is its own request', T, async () => {
    const k = newKey();
    const sbody = { messages: MSG, model: 'gpt-4o', max_tokens: 50 };
    const first = await keyed(k, sbody, { path: '/api/v1/llm/chat' });
    assert.equal(first.status, 200, first.text);
    assertReplay(first, await replayOf(k, sbody, { path: '/api/v1/llm/chat' }));
    const other = await keyed(k, BODY);
    assert.equal(other.status, 200);
    assert.equal(other.headers.get('idempotent-replayed'), null);
    assert.equal(await calls(), 2);
  });

  test('a deterministic provider error (400) is stored and replayed, not sent again', T, async () => {
    const k = newKey();
    await env.fake.next('openai', 'status', { status: 400 });
    const first = await keyed(k);
    assert.equal(first.status, 400);
    assert.equal(first.json.error.code, 'upstream_rejected_request');
    assertReplay(first, await replayOf(k));
    assert.equal(await calls(), 1);
  });

  test('the key is scoped to the caller: another API key with the same key string runs its own', T, async () => {
    const k = newKey();
    const other = await env.createKey(`other-${k.slice(2, 10)}`);
    const a = await keyed(k);
    const b = await keyed(k, BODY, { apiKey: other });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(b.headers.get('idempotent-replayed'), null);
    assert.notEqual(b.json.id, a.json.id);
    assert.equal(await calls(), 2);
    assertReplay(b, await replayOf(k, BODY, { apiKey: other }));
  });
});

describe('conflicts and bad keys', () => {
  test('while the first is in flight: 409 idempotency_key_in_flight with Retry-After; then the replay', T, async () => {
    const k = newKey();
    await env.fake.next('openai', 'delay', { ms: 1500 });
    const firstP = keyed(k);
    await sleep(400);
    const busy = await keyed(k);
    assert.equal(busy.status, 409, busy.text);
    assert.equal(busy.json.error.code, 'idempotency_key_in_flight');
    assert.equal(busy.headers.get('retry-after'), '1');
    const first = await firstP;
    assert.equal(first.status, 200);
    assertReplay(first, await replayOf(k));
    assert.equal(await calls(), 1);
  });

  test('same key, another body: 422 idempotency_key_reused', T, async () => {
    const k = newKey();
    assert.equal((await keyed(k)).status, 200);
    const r = await keyed(k, { ...BODY, messages: [{ role: 'user', content: 'something else' }] });
    assert.equal(r.status, 422);
    assert.equal(r.json.error.code, 'idempotency_key_reused');
    // the fingerprint is of the bytes: the same JSON with other spacing is another body
    const spaced = await env.request('POST', '/v1/chat/completions', {
      rawBody: JSON.stringify(BODY, null, 2), headers: { 'idempotency-key': k },
    });
    assert.equal(spaced.status, 422);
    assert.equal(await calls(), 1);
  });

  test('malformed keys: 400 invalid_idempotency_key, nothing sent', T, async () => {
    for (const bad of ['', ' ', 'a'.repeat(256), 'has space', 'quote"inside', 'back\\slash', 'tab\there', 'caf\u00e9']) {
      const r = await keyed(bad);
      assert.equal(r.status, 400, `key ${JSON.stringify(bad)}: ${r.text}`);
      assert.equal(r.json.error.code, 'invalid_idempotency_key');
    }
    assert.equal(await calls(), 0);
    const max = 'a'.repeat(255);
    assert.equal((await keyed(max)).status, 200, '255 characters is fine');
    // the draft's structured-field form: a quoted string is the same key
    const k = newKey();
    const first = await keyed(`"${k}"`);
    assert.equal(first.status, 200);
    assertReplay(first, await replayOf(k));
  });

  test('two Idempotency-Key headers: 400', T, async () => {
    const http = require('node:http');
    const url = new URL(env.baseURL);
    const status = await new Promise((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, method: 'POST', path: '/v1/chat/completions' }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.setHeader('authorization', `Bearer ${env.apiKey}`);
      req.setHeader('content-type', 'application/json');
      req.setHeader('idempotency-key', ['one', 'two']);
      req.end(JSON.stringify(BODY));
    });
    assert.equal(status, 400);
  });
});

describe('three outcomes', () => {
  test('refused by policy (403): not kept, the retry runs once the policy allows it', T, async () => {
    const name = `pol-${crypto.randomUUID().slice(0, 8)}`;
    const apiKey = await env.createKey(name, ['--models', 'gpt-4o-mini']);
    const k = newKey();
    const r1 = await keyed(k, BODY, { apiKey });
    assert.equal(r1.status, 403);
    await env.cli(['keys', 'update', await env.keyId(name), '--models', 'gpt-4o', '--db', env.db]);
    const r2 = await keyed(k, BODY, { apiKey });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('idempotent-replayed'), null);
    assert.equal(await calls(), 1);
  });

  test('refused by a limit (429): not kept, the retry runs when the window allows it', T, async () => {
    const name = `rph-${crypto.randomUUID().slice(0, 8)}`;
    const apiKey = await env.createKey(name, ['--rph', '1']);
    assert.equal((await keyed(newKey(), BODY, { apiKey })).status, 200);
    const k = newKey();
    const r1 = await keyed(k, BODY, { apiKey });
    assert.equal(r1.status, 429);
    await env.advanceClock(3601 * 1000);
    const r2 = await keyed(k, BODY, { apiKey });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(await calls(), 2);
  });

  test('a provider that did not do the work (503, 429): not kept, the retry runs', T, async () => {
    for (const status of [503, 429]) {
      await env.fake.reset();
      const k = newKey();
      await env.fake.next('openai', 'status', { status, headers: {} });
      const r1 = await keyed(k);
      assert.equal(r1.status, status === 429 ? 429 : 502, r1.text);
      const r2 = await keyed(k);
      assert.equal(r2.status, 200, r2.text);
      assert.equal(r2.headers.get('idempotent-replayed'), null);
      assert.equal(await calls(), 2);
    }
  });

  test('a provably unsent call (connection refused): not kept, the retry runs again', T, async () => {
    const k = newKey();
    const body = { ...BODY, model: 'grok-3' };
    const r1 = await keyed(k, body);
    assert.equal(r1.status, 502, r1.text);
    const r2 = await keyed(k, body);
    assert.equal(r2.status, 502);
    assert.equal(r2.headers.get('idempotent-replayed'), null, 'it ran again');
    assert.equal((await env.waitUsage(r2.headers.get('x-request-id'))).state, 'failed', 'and was reserved again');
  });

  test('the outcome is unknown (connection reset after sending, with tools): 502, quarantined, never sent again', T, async () => {
    const k = newKey();
    const body = { ...BODY, tools: TOOLS };
    await env.fake.next('openai', 'reset');
    const r1 = await keyed(k, body);
    assert.equal(r1.status, 502);
    assert.equal(r1.json.error.code, 'uncertain_upstream_state');
    for (let i = 0; i < 2; i++) {
      const r = await keyed(k, body);
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'uncertain_upstream_state');
      assert.equal(r.headers.get('idempotent-replayed'), null);
    }
    assert.equal(await calls(), 1);
    assert.equal((await env.waitUsage(r1.headers.get('x-request-id'))).state, 'uncertain');
  });

  test('no answer in time after sending: 504, then 502 uncertain_upstream_state', T, async () => {
    const k = newKey();
    await env.fake.next('openai', 'hang');
    const r1 = await keyed(k);
    assert.equal(r1.status, 504, r1.text);
    const r2 = await keyed(k);
    assert.equal(r2.status, 502);
    assert.equal(r2.json.error.code, 'uncertain_upstream_state');
    assert.equal(await calls(), 1);
  });

  test('the client leaves mid-stream: quarantined, not run again', T, async () => {
    const k = newKey();
    const body = { ...BODY, stream: true };
    await env.fake.next('openai', 'slow', { ms: 150 });
    const ac = new AbortController();
    const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json', 'idempotency-key': k },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    await readSSE(res, { onEvent: (ev, all) => all.length < 2 }).catch(() => {});
    ac.abort();
    let r = null;
    for (let i = 0; i < 40; i++) { // until the gateway has seen the client go
      r = await keyed(k, body);
      if (r.status !== 409) break;
      await sleep(100);
    }
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.code, 'uncertain_upstream_state');
    assert.equal(await calls(), 1);
  });

  test('the client leaves before a whole answer: never run again (replayed once done, or quarantined)', T, async () => {
    const k = newKey();
    await env.fake.next('openai', 'delay', { ms: 800 });
    await assert.rejects(keyed(k, BODY, { timeoutMs: 300 }));
    const busy = await keyed(k);
    assert.equal(busy.status, 409, 'still in flight');
    await sleep(1000);
    const r = await keyed(k);
    assert.ok(r.status === 200 || r.json.error.code === 'uncertain_upstream_state', r.text);
    if (r.status === 200) assert.equal(r.headers.get('idempotent-replayed'), 'true');
    assert.equal(await calls(), 1);
  });
});

describe('concurrency and crashes', () => {
  test(`50 simultaneous duplicates → exactly 1 provider call; the rest 409 or a byte-identical replay${PG ? ' (two nodes, 25 + 25)' : ''}`, T, async () => {
    const k = newKey();
    await env.fake.next('openai', 'delay', { ms: 300 });
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => keyed(k, BODY, { node: PG && i % 2 ? nodeB : null })));
    assert.equal(await calls(), 1, 'one provider call');
    const ok = rs.filter((r) => r.status === 200);
    const busy = rs.filter((r) => r.status === 409);
    assert.equal(ok.length + busy.length, 50, JSON.stringify(rs.map((r) => r.status)));
    assert.ok(busy.every((r) => r.json.error.code === 'idempotency_key_in_flight'));
    const originals = ok.filter((r) => r.headers.get('idempotent-replayed') === null);
    assert.equal(originals.length, 1, 'one answer is the execution');
    for (const r of ok) assert.equal(r.text, originals[0].text);
    assertReplay(originals[0], await replayOf(k));
    if (PG) {
      const fromB = rs.filter((r, i) => i % 2 === 1);
      assert.ok(fromB.every((r) => r.status === 200 || r.status === 409));
    }
  });

  test('kill -9 while a keyed request is in flight: after the restart the retry gets 502 uncertain_upstream_state; the provider was called once', T, async () => {
    const k = newKey();
    await env.fake.next('openai', 'hang');
    const p = keyed(k).catch(() => null);
    for (let i = 0; i < 50 && (await calls()) === 0; i++) await sleep(50);
    assert.equal(await calls(), 1);
    await env.crash();
    await p;
    await env.restart();
    const r = await keyed(k);
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.code, 'uncertain_upstream_state');
    assert.equal(await calls(), 1, 'never executed twice');
    const h = await env.request('GET', '/admin/v1/health', { headers: { authorization: `Bearer ${env.superadminKey()}` } });
    assert.equal(h.json.idempotency.recovered_at_start, 1);
  });
});

describe('retention', () => {
  test('an expired record is purged in the background (counted on the health surface) and the key runs anew', T, async () => {
    const k = newKey();
    const first = await keyed(k);
    assert.equal(first.status, 200);
    assertReplay(first, await replayOf(k));
    const sa = { authorization: `Bearer ${env.superadminKey()}` };
    const before = (await env.request('GET', '/admin/v1/health', { headers: sa })).json.idempotency;
    assert.equal(before.retention_days, 1);
    await env.advanceClock(25 * 3600 * 1000);
    let h = null;
    for (let i = 0; i < 40; i++) {
      h = (await env.request('GET', '/admin/v1/health', { headers: sa })).json.idempotency;
      if (h.purged > before.purged) break;
      await sleep(100);
    }
    assert.ok(h.purged > before.purged, `purged (${JSON.stringify(h)})`);
    assert.ok(h.last_purge_ms > 0);
    const again = await keyed(k);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), null, 'expired: executed anew');
    assert.equal(await calls(), 2);
  });
});
