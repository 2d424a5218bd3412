// tests/e2e/backpressure.test.js — a client that reads slower than the provider writes: the
// gateway pauses the upstream transfer instead of buffering the whole answer, resumes when the
// client catches up, and the stream arrives complete and in order.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, sleep } = require('./harness');

let env;
before(async () => { env = await startEnv({ env: { LLMGW_LOG_LEVEL: 'debug' } }); });
after(async () => { await env.stop(); });

test('a slow reader pauses the upstream (no unbounded buffering); the stream still completes intact', { timeout: 60000 }, async () => {
  const unit = 'abcdefghij'.repeat(5000); // 50 KB prompt (under the 64 KB body limit)
  const repeat = 300;                     // ~15 MB answer
  await env.fake.next('openai', 'big', { repeat, events: 1500 });
  const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: unit }] }),
  });
  assert.equal(res.status, 200);
  await sleep(2000); // do not read: the socket buffers fill up
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let text = '';
  let done = false;
  for (;;) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = ev.replace(/^data: /, '');
      if (data === '[DONE]') { done = true; continue; }
      const j = JSON.parse(data);
      assert.ok(!j.error, `unexpected error event ${data.slice(0, 200)}`);
      text += j.choices?.[0]?.delta?.content || '';
    }
  }
  assert.equal(done, true, 'ends with [DONE]');
  assert.equal(text.length, ('echo: ' + unit.repeat(repeat)).length);
  assert.equal(text, 'echo: ' + unit.repeat(repeat));
  assert.match(env.log(), /client is slow: pausing the upstream transfer/);
  assert.match(env.log(), /client caught up: resuming the upstream transfer/);
});
