// The simple endpoint (/api/v1/llm/chat), the model list, liveness, and request ids.
'use strict';

const { describe, test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const {
  startEnv, expectedCostMicros, FAKE_USAGE, FAKE_KEYS, REQUEST_ID_RE, assertNoSecrets,
} = require('./harness');

const T = { timeout: 20000 };

let env;

before(async () => { env = await startEnv(); }, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

describe('POST /api/v1/llm/chat', () => {
  test('claude-sonnet-4-6 with system: content echoes, provider anthropic, request_id = X-Request-Id, usage tokens and cost_usd', T, async () => {
    const r = await env.request('POST', '/api/v1/llm/chat', {
      body: { model: 'claude-sonnet-4-6', system: 'Be brief.', messages: [{ role: 'user', content: 'simple hello' }] },
    });
    assert.equal(r.status, 200, r.text);
    const j = r.json;
    assert.equal(j.content, 'echo: simple hello');
    assert.equal(j.model, 'claude-sonnet-4-6');
    assert.equal(j.provider, 'anthropic');
    assert.equal(j.route_method, 'explicit');
    assert.match(j.request_id, REQUEST_ID_RE);
    assert.equal(j.request_id, r.headers.get('x-request-id'));
    const u = FAKE_USAGE['claude-sonnet-4-6'];
    assert.equal(j.usage.tokens_in, u.input);
    assert.equal(j.usage.tokens_out, u.output);
    assert.equal(typeof j.usage.cost_usd, 'number');
    assert.equal(Math.round(j.usage.cost_usd * 1e6), expectedCostMicros('claude-sonnet-4-6', u));
    const [up] = await env.fake.requests('anthropic');
    const sys = typeof up.body.system === 'string' ? up.body.system : up.body.system.map((b) => b.text).join('');
    assert.equal(sys, 'Be brief.', 'system reaches Anthropic top-level');
    assert.equal(up.headers['x-api-key'], FAKE_KEYS.anthropic);
    const row = await env.waitUsage(j.request_id);
    assert.equal(row.state, 'settled');
    assert.equal(row.cost_micros, expectedCostMicros('claude-sonnet-4-6', u));
  });

  test('gpt-4o with max_tokens and temperature: both reach OpenAI', T, async () => {
    const r = await env.request('POST', '/api/v1/llm/chat', {
      body: { model: 'gpt-4o', max_tokens: 50, temperature: 0.2, messages: [{ role: 'user', content: 'params' }] },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.content, 'echo: params');
    assert.equal(r.json.provider, 'openai');
    const [up] = await env.fake.requests('openai');
    assert.equal(up.body.max_tokens ?? up.body.max_completion_tokens, 50);
    assert.equal(up.body.temperature, 0.2);
  });

  test('gemini-2.5-flash with system: systemInstruction upstream, usage counts thinking tokens as output', T, async () => {
    const r = await env.request('POST', '/api/v1/llm/chat', {
      body: { model: 'gemini-2.5-flash', system: 'Be brief.', messages: [{ role: 'user', content: 'gem' }] },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.content, 'echo: gem');
    assert.equal(r.json.provider, 'gemini');
    assert.equal(r.json.usage.tokens_in, FAKE_USAGE['gemini-2.5-flash'].input);
    assert.equal(r.json.usage.tokens_out, FAKE_USAGE['gemini-2.5-flash'].output);
    const [up] = await env.fake.requests('gemini');
    assert.equal(up.body.systemInstruction.parts.map((p) => p.text).join(''), 'Be brief.');
  });

  test('simple endpoint errors use the standard error body (unknown model → 404 model_not_found)', T, async () => {
    const r = await env.request('POST', '/api/v1/llm/chat', { body: { model: 'nope-1', messages: [{ role: 'user', content: 'x' }] } });
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'model_not_found');
    assert.equal(r.json.error.request_id, r.headers.get('x-request-id'));
  });

  test('simple endpoint without a key → 401 missing_api_key', T, async () => {
    const r = await env.request('POST', '/api/v1/llm/chat', { auth: false, body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] } });
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'missing_api_key');
  });
});

describe('GET /v1/models', () => {
  test('lists the catalog as an OpenAI list with id and provider for every e2e model', T, async () => {
    const r = await env.request('GET', '/v1/models');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'list');
    assert.ok(Array.isArray(r.json.data));
    const want = { 'gpt-4o': 'openai', o3: 'openai', 'claude-sonnet-4-6': 'anthropic', 'gemini-2.5-flash': 'gemini', 'grok-3': 'xai', 'sonar-pro': 'perplexity' };
    for (const [id, provider] of Object.entries(want)) {
      const m = r.json.data.find((x) => x.id === id);
      assert.ok(m, `model ${id} listed`);
      assert.equal(m.provider, provider, `${id} provider`);
      assert.equal(m.object, 'model', `${id} object`);
    }
    const ids = r.json.data.map((x) => x.id);
    assert.equal(new Set(ids).size, ids.length, 'no duplicate ids');
  });

  test('the openai client models.list() works against the gateway', T, async () => {
    const ids = [];
    for await (const m of env.client().models.list()) ids.push(m.id);
    assert.ok(ids.includes('gpt-4o'));
    assert.ok(ids.includes('claude-sonnet-4-6'));
  });
});

describe('GET /healthz', () => {
  test('answers 200 without any credential', T, async () => {
    const r = await env.request('GET', '/healthz', { auth: false });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('x-request-id') || '', REQUEST_ID_RE, 'X-Request-Id on healthz too');
  });
});

describe('X-Request-Id', () => {
  const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'rid' }] };

  test('every response carries a well-formed X-Request-Id, unique per request', T, async () => {
    const a = await env.request('POST', '/v1/chat/completions', { body });
    const b = await env.request('POST', '/v1/chat/completions', { body });
    const ra = a.headers.get('x-request-id');
    const rb = b.headers.get('x-request-id');
    assert.match(ra || '', REQUEST_ID_RE);
    assert.match(rb || '', REQUEST_ID_RE);
    assert.notEqual(ra, rb);
  });

  test('a well-formed caller X-Request-Id is echoed back (success and error)', T, async () => {
    const mine = `e2e-caller.${Date.now()}_A`;
    const ok = await env.request('POST', '/v1/chat/completions', { body, headers: { 'x-request-id': mine } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('x-request-id'), mine);
    const mine2 = `e2e-err-${Date.now()}`;
    const bad = await env.request('POST', '/v1/chat/completions', { body: { model: 'nope-1', messages: [{ role: 'user', content: 'x' }] }, headers: { 'x-request-id': mine2 } });
    assert.equal(bad.status, 404);
    assert.equal(bad.headers.get('x-request-id'), mine2);
    assert.equal(bad.json.error.request_id, mine2);
  });

  test('a 64-character caller id is kept', T, async () => {
    const mine = 'a'.repeat(54) + String(Date.now()).slice(-10);
    assert.equal(mine.length, 64);
    const r = await env.request('POST', '/v1/chat/completions', { body, headers: { 'x-request-id': mine } });
    assert.equal(r.headers.get('x-request-id'), mine);
  });

  for (const [label, value] of [
    ['with a space', 'bad id'],
    ['65 characters', 'b'.repeat(65)],
    ['with a quote and slash', 'x"/../y'],
    ['with a semicolon', 'abc;def'],
  ]) {
    test(`a malformed caller X-Request-Id (${label}) is replaced by a fresh well-formed one`, T, async () => {
      const r = await env.request('POST', '/v1/chat/completions', { body, headers: { 'x-request-id': value } });
      assert.equal(r.status, 200, r.text);
      const rid = r.headers.get('x-request-id');
      assert.match(rid || '', REQUEST_ID_RE);
      assert.notEqual(rid, value);
    });
  }

  test('the openai client sees the same id in the header and the usage row', T, async () => {
    const { data, response } = await env.client().chat.completions.create({ model: 'grok-3', messages: [{ role: 'user', content: 'row' }] }).withResponse();
    assert.equal(data.choices[0].message.content, 'echo: row');
    const rid = response.headers.get('x-request-id');
    const row = await env.waitUsage(rid);
    assert.ok(row, 'usage row keyed by the X-Request-Id');
    assert.equal(row.request_id, rid);
    assert.equal(row.model, 'grok-3');
  });
});

test('the gateway log holds no provider key and no raw API key', T, async () => {
  assertNoSecrets(assert, env.log(), [env.apiKey]);
});
