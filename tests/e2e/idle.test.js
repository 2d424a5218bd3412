// tests/e2e/idle.test.js — timeouts.idle_ms: a provider that goes silent after its first bytes
// is cut off after the idle time (not after total_ms), with an error event and no [DONE];
// a provider that keeps sending within the idle time is not.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, readSSE } = require('./harness');

let env;
before(async () => { env = await startEnv({ timeouts: { idle_ms: 600, total_ms: 20000 } }); });
after(async () => { await env.stop(); });

async function openStream() {
  return fetch(`${env.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'idle test' }] }),
  });
}

test('a stream silent for longer than idle_ms ends with upstream_timeout, long before total_ms', { timeout: 15000 }, async () => {
  await env.fake.next('openai', 'slow', { ms: 1500, events: 5 });
  const t0 = Date.now();
  const res = await openStream();
  assert.equal(res.status, 200);
  const { events, done } = await readSSE(res, { timeoutMs: 10000 });
  const took = Date.now() - t0;
  assert.equal(done, false, 'no [DONE] after a cut');
  assert.equal(events[events.length - 1]?.json?.error?.code, 'upstream_timeout');
  assert.ok(took < 5000, `cut after ${took} ms`);
  assert.match(env.log(), /silent for 600 ms/);
});

test('a stream whose gaps stay under idle_ms completes', { timeout: 15000 }, async () => {
  await env.fake.next('openai', 'slow', { ms: 200, events: 8 });
  const res = await openStream();
  assert.equal(res.status, 200);
  const { done } = await readSSE(res, { timeoutMs: 10000 });
  assert.equal(done, true);
});
