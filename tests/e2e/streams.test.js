// Streams that do not end well: cut short by the provider (truncate), abandoned by the client
// (disconnect), or longer than the total timeout. None may end cleanly with [DONE], and each
// must still leave a usage row that is no longer "reserved".
'use strict';

const { describe, test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, readSSE, sleep, REQUEST_ID_RE, assertNoSecrets, LEAK_MARKER } = require('./harness');

const T = { timeout: 20000 };

let env;

// Fallback off: a failure before the first byte is answered as is (fallback.test.js covers
// fallback, and that nothing is retried once a byte reached the client).
before(async () => { env = await startEnv({ extraConfig: 'fallback: {enabled: false}' }); }, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

function streamBody(model, content) {
  return JSON.stringify({ model, stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content }] });
}

async function openStream(model, content, signal) {
  const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
    body: streamBody(model, content),
    signal: signal || AbortSignal.timeout(12000),
  });
  return res;
}

function contentChunks(events) {
  return events.filter((e) => e.json && Array.isArray(e.json.choices) && e.json.choices[0]?.delta?.content);
}

async function waitFor(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}

const CASES = [
  { provider: 'openai', model: 'gpt-4o', tokensInSoFar: null },
  // message_start carried input usage (100 + 40 written + 60 read)
  { provider: 'anthropic', model: 'claude-sonnet-4-6', tokensInSoFar: 200 },
  // every Gemini chunk carries usageMetadata (promptTokenCount 110)
  { provider: 'gemini', model: 'gemini-2.5-flash', tokensInSoFar: 110 },
  { provider: 'xai', model: 'grok-3', tokensInSoFar: null },
  { provider: 'perplexity', model: 'sonar-pro', tokensInSoFar: null },
];

describe('provider cuts the stream short (truncate)', () => {
  for (const { provider, model, tokensInSoFar } of CASES) {
    test(`${model} (${provider}) truncated stream → SSE error event upstream_stream_interrupted, no [DONE], usage row recorded`, T, async () => {
      await env.fake.next(provider, 'truncate');
      const res = await openStream(model, 'please get cut');
      assert.equal(res.status, 200);
      const rid = res.headers.get('x-request-id');
      assert.match(rid || '', REQUEST_ID_RE);
      const { events, done, raw } = await readSSE(res);
      assert.equal(done, false, 'no [DONE] after an interrupted stream');
      assert.ok(contentChunks(events).length >= 1, 'the content sent before the cut was relayed');
      const last = events[events.length - 1];
      assert.ok(last && last.json && last.json.error, `the last event is an error event (got ${last && last.data})`);
      assert.equal(last.json.error.code, 'upstream_stream_interrupted');
      assert.equal(typeof last.json.error.message, 'string');
      assert.ok(!raw.includes(LEAK_MARKER) && !raw.includes(String(env.fake.port)), 'sanitized');
      assert.ok(!events.some((e) => e.json?.choices?.[0]?.finish_reason === 'stop'), 'no clean finish_reason');
      const row = await env.waitUsage(rid);
      assert.ok(row, 'usage row exists');
      assert.ok(['failed', 'settled'].includes(row.state), `row.state ${row.state}`);
      if (tokensInSoFar !== null) {
        assert.equal(row.tokens_in, tokensInSoFar, 'tokens reported before the cut are counted');
        assert.ok(row.cost_micros > 0, 'the tokens the provider reported are charged');
      }
    });
  }

  test('gpt-4o truncated stream with the socket destroyed mid-stream → error event, no [DONE]', T, async () => {
    await env.fake.next('openai', 'truncate', { mode: 'destroy' });
    const res = await openStream('gpt-4o', 'cut hard');
    assert.equal(res.status, 200);
    const rid = res.headers.get('x-request-id');
    const { events, done } = await readSSE(res);
    assert.equal(done, false);
    assert.equal(events[events.length - 1]?.json?.error?.code, 'upstream_stream_interrupted');
    const row = await env.waitUsage(rid);
    assert.ok(row && row.state !== 'reserved', `row recorded (${row && row.state})`);
  });

  test('the openai client iteration throws on a truncated stream', T, async () => {
    await env.fake.next('anthropic', 'truncate');
    const stream = await env.client().chat.completions.create({
      model: 'claude-sonnet-4-6', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'cut' }],
    });
    let got = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) got += chunk.choices[0]?.delta?.content || '';
    }, 'iteration must throw, not end quietly');
    assert.ok(got.length > 0, 'content before the cut was delivered');
  });

  test('upstream 200 stream with invalid JSON in an event → error event, no [DONE]', T, async () => {
    await env.fake.next('openai', 'badjson');
    const res = await openStream('gpt-4o', 'garbage');
    if (res.status !== 200) {
      // the gateway may detect it before sending headers: then a plain 502 JSON error
      assert.equal(res.status, 502);
      const j = await res.json();
      assert.equal(j.error.code, 'upstream_bad_response');
      return;
    }
    const { events, done } = await readSSE(res);
    assert.equal(done, false);
    assert.match(events[events.length - 1]?.json?.error?.code || '', /^upstream_(bad_response|stream_interrupted)$/);
  });
});

describe('client disconnects mid-stream', () => {
  for (const { provider, model, tokensInSoFar } of CASES.filter((c) => ['openai', 'anthropic', 'gemini'].includes(c.provider))) {
    test(`${model} (${provider}): client aborts after two chunks → upstream request aborted within 2 s, usage row recorded (not reserved)`, T, async () => {
      await env.fake.next(provider, 'slow', { ms: 200 });
      const ac = new AbortController();
      const guard = setTimeout(() => ac.abort(), 10000);
      try {
        const res = await openStream(model, 'slowly, please', ac.signal);
        assert.equal(res.status, 200);
        const rid = res.headers.get('x-request-id');
        assert.match(rid || '', REQUEST_ID_RE);
        const got = await readSSE(res, {
          onEvent: (ev, events) => (contentChunks(events).length >= 2 ? false : undefined),
        });
        assert.equal(got.cancelled, true, 'we stopped reading after two content chunks');
        ac.abort();
        const t0 = Date.now();
        await waitFor(async () => {
          const reqs = await env.fake.requests(provider);
          return reqs.length === 1 && reqs[0].aborted;
        }, 2000, `${provider} upstream request marked aborted`);
        assert.ok(Date.now() - t0 <= 2100);
        const row = await env.waitUsage(rid, { timeoutMs: 4000 });
        assert.ok(row, 'usage row exists');
        assert.notEqual(row.state, 'reserved', 'the row is settled/failed, not left reserved');
        if (tokensInSoFar !== null) {
          assert.equal(row.tokens_in, tokensInSoFar, 'input tokens the provider reported are counted');
          assert.ok(row.cost_micros > 0, 'and charged');
        }
      } finally {
        clearTimeout(guard);
        ac.abort();
      }
    });
  }

  test('openai client: breaking out of the stream after two chunks (SDK aborts the request) closes the upstream request', T, async () => {
    await env.fake.next('openai', 'slow', { ms: 200 });
    const stream = await env.client().chat.completions.create({
      model: 'gpt-4o', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'abort me' }],
    });
    let n = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) n += 1;
      if (n >= 2) break;
    }
    assert.equal(n, 2);
    await waitFor(async () => {
      const reqs = await env.fake.requests('openai');
      return reqs.length === 1 && reqs[0].aborted;
    }, 2000, 'upstream request aborted');
  });

  test('the gateway keeps serving after client disconnects', T, async () => {
    const r = await env.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'still there?' }] } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].message.content, 'echo: still there?');
  });
});

describe('timeouts on streams', () => {
  test('stream longer than timeouts.total_ms (6 s) is cut by the gateway with an error event, no [DONE]', { timeout: 20000 }, async () => {
    await env.fake.next('openai', 'slow', { ms: 450, events: 20 }); // ~10 s of events
    const t0 = Date.now();
    const res = await openStream('gpt-4o', 'a very long answer', AbortSignal.timeout(15000));
    assert.equal(res.status, 200);
    const rid = res.headers.get('x-request-id');
    const { events, done } = await readSSE(res, { timeoutMs: 15000 });
    const took = Date.now() - t0;
    assert.equal(done, false, 'no [DONE]');
    assert.ok(took < 9000, `cut near total_ms (took ${took} ms)`);
    assert.match(events[events.length - 1]?.json?.error?.code || '', /^upstream_(timeout|stream_interrupted)$/);
    const row = await env.waitUsage(rid);
    assert.ok(row && row.state !== 'reserved', `row recorded (${row && row.state})`);
    await waitFor(async () => (await env.fake.requests('openai'))[0]?.aborted, 2000, 'upstream closed');
  });

  test('stream whose first byte never comes → HTTP 504 upstream_timeout (headers not yet sent)', T, async () => {
    for (let i = 0; i < 3; i++) await env.fake.next('anthropic', 'hang');
    const res = await openStream('claude-sonnet-4-6', 'hang', AbortSignal.timeout(15000));
    assert.equal(res.status, 504);
    const j = await res.json();
    assert.equal(j.error.code, 'upstream_timeout');
  });
});

test('the gateway log holds no provider key and no raw API key', T, async () => {
  assertNoSecrets(assert, env.log(), [env.apiKey]);
});
