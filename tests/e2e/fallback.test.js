// Fallback chains, retries and uncertain outcomes: each failure mode of the fake provider →
// the expected fallback or error, with the fake's call counts and the usage rows asserted.
'use strict';

const { describe, test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, readSSE, LEAK_MARKER, assertNoSecrets } = require('./harness');

const T = { timeout: 20000 };
const MSG = [{ role: 'user', content: 'hi' }];
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];

let env;
before(async () => {
  env = await startEnv({
    extraConfig: [
      'fallback: {backoff_ms: 200, backoff_max_ms: 400}',
      'breaker: {failure_threshold: 50}', // breakers are tested in breaker.test.js
      'providers:',
      '  xai: {timeouts: {first_byte_ms: 600}}',
    ].join('\n'),
  });
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

function chat(body) {
  return env.request('POST', '/v1/chat/completions', { body });
}

async function counts() {
  const all = await env.fake.requests();
  const n = {};
  for (const r of all) n[r.provider] = (n[r.provider] || 0) + 1;
  return n;
}

function clean(r) {
  assert.ok(!r.text.includes(LEAK_MARKER), 'no provider text');
  for (const [, v] of r.headers) assert.ok(!v.includes(LEAK_MARKER) && !v.includes(String(env.fake.port)));
  assertNoSecrets(assert, r.text);
}

// The request's row and its archived attempt rows.
async function rows(rid) {
  const main = await env.waitUsage(rid);
  const attempts = [];
  for (let i = 1; i <= 3; i++) {
    const a = await env.usageRow(`${rid}.${i}`);
    if (a) attempts.push(a);
  }
  return { main, attempts };
}

describe('retryable failures move to the next target', () => {
  test('explicit gpt-4o, openai 500 → served by claude-sonnet-4-6 after a backoff; said in the answer, headers, log and usage rows', T, async () => {
    await env.fake.next('openai', 'status', { status: 500 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 200, r.text);
    clean(r);
    assert.equal(r.json.route_method, 'fallback');
    assert.equal(r.json.provider, 'anthropic');
    assert.equal(r.json.model, 'claude-sonnet-4-6');
    assert.equal(r.json.choices[0].message.content, 'echo: hi');
    assert.match(r.headers.get('x-llmgw-fallback') || '', /^gpt-4o: openai unavailable \(HTTP 500\)$/);
    assert.equal(r.headers.get('x-llmgw-attempts'), '2');
    assert.deepEqual(await counts(), { openai: 1, anthropic: 1 });
    const [a, b] = await env.fake.requests();
    const gap = b.at - a.at;
    assert.ok(gap >= 90, `jittered backoff of at least backoff_ms/2 between attempts (gap ${gap} ms)`);
    const rid = r.headers.get('x-request-id');
    const { main, attempts } = await rows(rid);
    assert.equal(main.state, 'settled');
    assert.equal(main.provider, 'anthropic');
    assert.equal(main.model, 'claude-sonnet-4-6');
    assert.equal(main.route_method, 'fallback');
    assert.equal(main.attempts, 2);
    assert.ok(main.cost_micros > 0);
    assert.equal(attempts.length, 1);
    assert.equal(attempts[0].kind, 'attempt');
    assert.equal(attempts[0].parent_request_id, rid);
    assert.equal(attempts[0].provider, 'openai');
    assert.equal(attempts[0].model, 'gpt-4o');
    assert.equal(attempts[0].state, 'failed');
    assert.equal(attempts[0].status, 500);
    assert.equal(attempts[0].cost_micros, 0, 'a refused attempt costs nothing');
    const line = await env.accessLine(rid);
    assert.equal(line.attempts, 2);
    assert.match(line.fallback, /^gpt-4o: openai unavailable/);
  });

  for (const [label, provider, model, script, next] of [
    ['503', 'openai', 'gpt-4.1', { action: 'status', status: 503 }, 'anthropic'],
    ['529 overloaded', 'anthropic', 'claude-opus-4-6', { action: 'status', status: 529 }, 'openai'],
    ['a reset before any answer (no tools)', 'gemini', 'gemini-2.5-pro', { action: 'reset' }, 'anthropic'],
    ['a truncated body', 'openai', 'o3', { action: 'truncate' }, 'gemini'],
    ['invalid JSON', 'anthropic', 'claude-haiku-4-5', { action: 'badjson' }, 'openai'],
    ['a 401 for the gateway credential', 'xai', 'grok-3', { action: 'status', status: 401 }, 'openai'],
  ]) {
    test(`${model}: ${label} → the next target (${next}) serves it`, T, async () => {
      const { action, ...extra } = script;
      await env.fake.next(provider, action, extra);
      const r = await chat({ model, messages: MSG });
      assert.equal(r.status, 200, r.text);
      clean(r);
      assert.equal(r.json.route_method, 'fallback');
      assert.equal(r.json.provider, next);
      assert.deepEqual(await counts(), { [provider]: 1, [next]: 1 });
    });
  }

  test('a reset after the request was sent (no tools): the lost attempt is charged at its reservation, the fallback serves', T, async () => {
    await env.fake.next('openai', 'reset');
    const r = await chat({ model: 'gpt-5', messages: MSG });
    assert.equal(r.status, 200, r.text);
    const { main, attempts } = await rows(r.headers.get('x-request-id'));
    assert.equal(main.provider, 'anthropic');
    assert.equal(attempts[0].state, 'uncertain');
    assert.equal(attempts[0].error_code, 'uncertain_upstream_state');
    assert.ok(attempts[0].reserved_micros > 0);
    assert.equal(attempts[0].cost_micros, attempts[0].reserved_micros);
  });

  test('hang (no first byte within the provider\'s first_byte_ms, no tools) → the next target', T, async () => {
    await env.fake.next('xai', 'hang');
    const t0 = Date.now();
    const r = await chat({ model: 'grok-4-0709', messages: MSG });
    const took = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'anthropic');
    assert.ok(took >= 550 && took < 1450, `xai's own first_byte_ms (600) applied, not the global 1500 (took ${took} ms)`);
    const [first] = await env.fake.requests('xai');
    assert.equal(first.aborted, true, 'the hung upstream request was closed');
  });

  test('429 with Retry-After → the next provider at once; the model then rests for the Retry-After', T, async () => {
    await env.fake.next('openai', 'status', { status: 429, headers: { 'retry-after': '3' } });
    const t0 = Date.now();
    let r = await chat({ model: 'gpt-4o-mini', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'gemini');
    assert.ok(Date.now() - t0 < 1500, 'no waiting 3 s when another provider can serve');
    assert.match(r.headers.get('x-llmgw-fallback') || '', /gpt-4o-mini: openai rate_limited \(HTTP 429\)/);
    // within the Retry-After: gpt-4o-mini is not called, the chain serves at once
    r = await chat({ model: 'gpt-4o-mini', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'gemini');
    assert.match(r.headers.get('x-llmgw-fallback') || '', /gpt-4o-mini: skipped \(rate limited for [1-3] s\)/);
    assert.deepEqual(await counts(), { openai: 1, gemini: 2 });
  });

  test('every target fails → the last failure is answered, after max_attempts (3) calls', T, async () => {
    await env.fake.next('openai', 'status', { status: 500 });
    await env.fake.next('anthropic', 'status', { status: 503 });
    await env.fake.next('gemini', 'status', { status: 502 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.code, 'upstream_error');
    clean(r);
    assert.deepEqual(await counts(), { openai: 1, anthropic: 1, gemini: 1 }, 'grok-3 (4th) is not tried');
    assert.equal(r.headers.get('x-llmgw-attempts'), '3');
    const { main, attempts } = await rows(r.headers.get('x-request-id'));
    assert.equal(main.state, 'failed');
    assert.equal(main.model, 'gemini-2.5-pro');
    assert.equal(main.attempts, 3);
    assert.equal(attempts.length, 2);
  });

  test('a pinned provider keeps the fallbacks on that provider', T, async () => {
    await env.fake.next('openai', 'status', { status: 500 });
    const r = await chat({ auto_route: true, provider: 'openai', messages: [{ role: 'user', content: 'Fix this Rust compile error' }] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'openai');
    assert.equal(r.json.model, 'gpt-4.1', 'the code rule\'s next openai model');
    assert.deepEqual(await counts(), { openai: 2 });
  });

  test('the key\'s allowlist limits the fallbacks: nothing else allowed → the failure is answered', T, async () => {
    const key = await env.createKey('gpt4o-only', ['--models', 'gpt-4o']);
    await env.fake.next('openai', 'status', { status: 500 });
    const r = await env.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: MSG }, headers: { authorization: `Bearer ${key}` } });
    assert.equal(r.status, 502, r.text);
    assert.deepEqual(await counts(), { openai: 1 });
  });
});

describe('failures that are not retried', () => {
  test('a 400 caused by the request → 400 upstream_rejected_request, no other provider called', T, async () => {
    await env.fake.next('openai', 'status', { status: 400 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'upstream_rejected_request');
    assert.deepEqual(await counts(), { openai: 1 });
  });

  test('with tools, a reset after sending → 502 uncertain_upstream_state, never sent to another provider', T, async () => {
    await env.fake.next('openai', 'reset');
    const r = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'weather in Paris?' }], tools: TOOLS });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.code, 'uncertain_upstream_state');
    clean(r);
    assert.deepEqual(await counts(), { openai: 1 });
    const { main } = await rows(r.headers.get('x-request-id'));
    assert.equal(main.state, 'uncertain');
    assert.equal(main.cost_micros, main.reserved_micros);
    assert.match(env.log(), /not retried: the request offers tools/);
  });

  test('with tools, no first byte in time → 504 upstream_timeout, not retried elsewhere, charged at the reservation', T, async () => {
    await env.fake.next('xai', 'hang');
    const r = await chat({ model: 'grok-3', messages: [{ role: 'user', content: 'weather?' }], tools: TOOLS });
    assert.equal(r.status, 504, r.text);
    assert.equal(r.json.error.code, 'upstream_timeout');
    assert.deepEqual(await counts(), { xai: 1 });
    const { main } = await rows(r.headers.get('x-request-id'));
    assert.equal(main.state, 'uncertain');
  });

  test('with tools, a refusal that provably did no work (503) still falls back', T, async () => {
    await env.fake.next('openai', 'status', { status: 503 });
    const r = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'weather?' }], tools: TOOLS });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'anthropic');
    assert.equal(r.json.choices[0].finish_reason, 'tool_calls');
  });
});

describe('streams', () => {
  async function stream(body) {
    return fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ stream: true, stream_options: { include_usage: true }, ...body }),
      signal: AbortSignal.timeout(10000),
    });
  }

  test('a stream whose provider fails before any byte falls back; every chunk names the model that served', T, async () => {
    await env.fake.next('openai', 'status', { status: 500 });
    const res = await stream({ model: 'gpt-4o', messages: MSG });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('x-llmgw-fallback') || '', /gpt-4o: openai unavailable/);
    const { events, done } = await readSSE(res);
    assert.equal(done, true);
    const chunks = events.filter((e) => e.json);
    assert.ok(chunks.length > 2);
    for (const e of chunks) assert.equal(e.json.model, 'claude-sonnet-4-6');
    assert.equal(chunks.map((e) => e.json.choices[0]?.delta?.content || '').join(''), 'echo: hi');
    assert.deepEqual(await counts(), { openai: 1, anthropic: 1 });
  });

  test('nothing is retried once a byte reached the client: a stream cut short ends with an error event', T, async () => {
    await env.fake.next('openai', 'truncate');
    const res = await stream({ model: 'gpt-4o', messages: [{ role: 'user', content: 'a longer answer please' }] });
    assert.equal(res.status, 200);
    const { events, done } = await readSSE(res);
    assert.equal(done, false, 'no [DONE]');
    assert.ok(events.some((e) => e.json?.choices?.[0]?.delta?.content), 'content reached the client');
    assert.equal(events[events.length - 1].json?.error?.code, 'upstream_stream_interrupted');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(await counts(), { openai: 1 }, 'no other provider was asked');
  });
});

test('the gateway log holds no provider key and no raw API key', T, async () => {
  assertNoSecrets(assert, env.log(), [env.apiKey]);
});
