// Allocation failure (issue 10): in the test build the Nth allocation of the running gateway
// fails (POST /__test/alloc); for a few representative requests, N is looped from the first
// allocation until the request no longer reaches N. Every answer is an answer (a status, never a
// hang or a crash), the gateway keeps serving, and LeakSanitizer checks at the end that nothing
// leaked on any of those paths.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, readSSE } = require('./harness');

let env;
before(async () => { // no fallback, and no breaker: a failure the gateway's own allocation causes must not close a
  // provider for the next request
  env = await startEnv({ extraConfig: 'fallback: {enabled: false}\nbreaker: {failure_threshold: 0}' }); }, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 30000 });

const arm = async (n) => (await env.request('POST', '/__test/alloc', { auth: false, body: { fail_after: n } })).json.remaining;

const kinds = {
  chat: () => env.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'oom' }] } }).then((r) => r.status),
  anthropic: () => env.request('POST', '/v1/chat/completions', { body: { model: 'claude-sonnet-4-6', conversation_id: 'oom', messages: [{ role: 'user', content: 'oom' }] } }).then((r) => r.status),
  stream: async () => {
    const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gemini-2.5-flash', stream: true, messages: [{ role: 'user', content: 'oom' }] }),
      signal: AbortSignal.timeout(10000),
    });
    if (res.status === 200) await readSSE(res);
    else await res.text();
    return res.status;
  },
  simple: () => env.request('POST', '/api/v1/llm/chat', { body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'oom' }] } }).then((r) => r.status),
  conversations: () => env.request('GET', '/v1/conversations?limit=5').then((r) => r.status),
};

for (const [name, send] of Object.entries(kinds)) {
  test(`${name}: the Nth allocation fails, for every N the request reaches`, { timeout: 120000 }, async () => {
    let n = 1;
    const seen = new Map();
    for (; n <= 2000; n++) {
      await arm(n);
      const status = await send();
      const left = await arm(0); // disarm; what was left says whether N was reached
      assert.ok(status >= 200 && status < 600, `N=${n}: an answer (${status})`);
      seen.set(status, (seen.get(status) || 0) + 1);
      if (left > 0) break; // the request needed fewer than N allocations: every N was tried
    }
    assert.ok(n > 1 && n <= 2000, `${name}: the loop ended (${n})`);
    const h = await env.request('GET', '/healthz', { auth: false });
    assert.equal(h.status, 200, 'still serving');
    assert.equal(await send(), 200, 'and serving right');
    console.log(`# ${name}: ${n - 1} allocations failed one at a time: ${JSON.stringify(Object.fromEntries(seen))}`);
  });
}
