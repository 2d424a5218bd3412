// tests/e2e/shutdown.test.js — SIGTERM: listeners close at once, a stream in flight finishes
// cleanly within the grace period, and the process exits 0.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, readSSE, sleep } = require('./harness');

test('SIGTERM during a stream: the stream completes with [DONE], new connections are refused, exit 0', { timeout: 30000 }, async () => {
  const env = await startEnv();
  try {
    await env.fake.next('openai', 'slow', { ms: 100 });
    const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'drain me' }] }),
    });
    assert.equal(res.status, 200);
    const exited = new Promise((resolve) => env.gw.once('exit', (code, signal) => resolve({ code, signal })));
    const reading = readSSE(res, { timeoutMs: 15000 });
    await sleep(300);
    env.gw.kill('SIGTERM');
    await sleep(300);
    await assert.rejects(fetch(`${env.baseURL}/healthz`, { signal: AbortSignal.timeout(2000) }),
      'a new connection after SIGTERM is refused');
    const got = await reading;
    assert.equal(got.done, true, 'the in-flight stream finished with [DONE]');
    const { code, signal } = await exited;
    assert.equal(signal, null);
    assert.equal(code, 0, env.log());
    assert.match(env.log(), /SIGTERM received/);
  } finally {
    await env.stop();
  }
});
