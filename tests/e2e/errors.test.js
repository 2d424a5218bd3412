// Error answers: the body shape, status and code for client mistakes and for every kind of
// upstream failure, and that nothing of the provider (text, URL, credentials) leaks.
'use strict';

const { describe, test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, FAKE_KEYS, LEAK_MARKER, REQUEST_ID_RE, assertNoSecrets, sleep } = require('./harness');

const T = { timeout: 20000 };
const MSG = [{ role: 'user', content: 'hi' }];

let env;

// Fallback off: these tests check how one provider failure is answered when nothing else is
// tried (fallback.test.js covers what happens when another target may serve).
const NO_FALLBACK = 'fallback: {enabled: false}';

before(async () => { env = await startEnv({ extraConfig: NO_FALLBACK }); }, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

// Checks the standard error body and X-Request-Id; returns the parsed error object.
function checkError(r, status, code, e = env) {
  assert.equal(r.status, status, `status (body: ${r.text.slice(0, 300)})`);
  assert.ok(r.json && typeof r.json.error === 'object', `JSON error body: ${r.text.slice(0, 300)}`);
  const err = r.json.error;
  if (code) assert.equal(err.code, code, 'error.code');
  assert.equal(typeof err.type, 'string', 'error.type');
  assert.ok(err.type.length > 0);
  assert.equal(typeof err.message, 'string', 'error.message');
  assert.ok(err.message.length > 0);
  const rid = r.headers.get('x-request-id');
  assert.match(rid || '', REQUEST_ID_RE, 'X-Request-Id header');
  assert.equal(err.request_id, rid, 'error.request_id equals X-Request-Id');
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  return err;
}

// An upstream failure must not leak anything of the provider.
function checkSanitized(r, e = env) {
  assert.ok(!r.text.includes(LEAK_MARKER), 'no provider error text in the body');
  assert.ok(!r.text.includes('shard-7'), 'no provider error text in the body');
  assert.ok(!r.text.includes(String(e.fake.port)), 'no fake port in the body');
  assert.ok(!r.text.includes('127.0.0.1'), 'no upstream host in the body');
  assert.ok(!/https?:\/\//.test(r.text), 'no URL in the body');
  assert.ok(!r.text.includes('fake-'), 'no fake credential in the body');
  for (const [, v] of r.headers) {
    assert.ok(!v.includes(LEAK_MARKER) && !v.includes(String(e.fake.port)), `header value leaks upstream: ${v}`);
  }
  assertNoSecrets(assert, r.text);
}

// Scripts the same failure 3 times so a gateway that retries still ends with that failure.
async function scriptAll(provider, action, extra = {}, times = 3) {
  for (let i = 0; i < times; i++) await env.fake.next(provider, action, extra);
}

function chat(body, opts = {}) {
  return env.request('POST', '/v1/chat/completions', { body, ...opts });
}

async function rowNotReserved(rid) {
  const row = await env.waitUsage(rid);
  if (row) assert.notEqual(row.state, 'reserved', 'a finished request leaves no "reserved" usage row');
  return row;
}

describe('authentication', () => {
  test('no API key → 401 missing_api_key with the standard error body', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: MSG }, { auth: false });
    checkError(r, 401, 'missing_api_key');
    assert.equal((await env.fake.requests()).length, 0, 'nothing reached the provider');
  });

  test('unknown API key (Bearer) → 401 invalid_api_key', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: MSG }, { headers: { authorization: 'Bearer llmgw-not-a-real-key-0000' } });
    checkError(r, 401, 'invalid_api_key');
  });

  test('unknown API key (X-API-Key) → 401 invalid_api_key', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: MSG }, { headers: { 'x-api-key': 'llmgw-not-a-real-key-0000' } });
    checkError(r, 401, 'invalid_api_key');
  });

  test('valid key sent as X-API-Key is accepted', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: MSG }, { headers: { 'x-api-key': env.apiKey } });
    assert.equal(r.status, 200, r.text);
  });

  test('revoked API key → 401 invalid_api_key (key works before revocation)', T, async () => {
    const name = 'e2e-revoke';
    const key = await env.createKey(name);
    const ok = await chat({ model: 'gpt-4o', messages: MSG }, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(ok.status, 200, ok.text);
    const listing = await env.listKeys();
    assert.ok(!listing.includes(key), 'keys list never shows a raw key');
    const keyId = findKeyId(listing, name);
    assert.ok(keyId, `a key id for ${name} in keys list output:\n${listing}`);
    await env.revokeKey(keyId);
    const r = await chat({ model: 'gpt-4o', messages: MSG }, { headers: { authorization: `Bearer ${key}` } });
    checkError(r, 401, 'invalid_api_key');
  });

  test('the openai client surfaces a 401 as AuthenticationError', T, async () => {
    const c = env.client({ apiKey: 'llmgw-not-a-real-key-0000' });
    await assert.rejects(c.chat.completions.create({ model: 'gpt-4o', messages: MSG }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_api_key');
      return true;
    });
  });
});

// keys list output format is the CLI's: accept JSON (array / JSON lines) or a table where the
// line with the key's name holds its id as the first token that is not the name.
function findKeyId(out, name) {
  const text = out.trim();
  const fromObj = (o) => o && (o.name === name) && (o.id || o.key_id);
  try {
    const j = JSON.parse(text);
    const arr = Array.isArray(j) ? j : (j.data || j.keys || []);
    const hit = arr.find(fromObj);
    if (hit) return hit.id || hit.key_id;
  } catch { /* not one JSON document */ }
  for (const line of text.split('\n')) {
    try { const o = JSON.parse(line); if (fromObj(o)) return o.id || o.key_id; } catch { /* table */ }
    const toks = line.trim().split(/\s+/);
    if (!toks.includes(name)) continue;
    const id = toks.find((t) => t !== name && /^[A-Za-z0-9_-]{4,}$/.test(t) && !/^(member|org_admin|free|pro|enterprise|active|revoked)$/.test(t));
    if (id) return id;
  }
  return null;
}

describe('request validation', () => {
  test('malformed JSON body → 400 invalid_json', T, async () => {
    const r = await chat(undefined, { rawBody: '{"model": "gpt-4o", "messages": [' });
    checkError(r, 400, 'invalid_json');
  });

  test('duplicate JSON object keys → 400 invalid_json', T, async () => {
    const r = await chat(undefined, { rawBody: '{"model":"gpt-4o","model":"grok-3","messages":[{"role":"user","content":"hi"}]}' });
    checkError(r, 400, 'invalid_json');
    assert.equal((await env.fake.requests()).length, 0, 'nothing reached a provider');
  });

  test('messages not an array → 400 invalid_request', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: 'hi' });
    checkError(r, 400, 'invalid_request');
  });

  test('temperature given as a string → 400 invalid_request', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: MSG, temperature: '0.5' });
    checkError(r, 400, 'invalid_request');
  });

  test('max_tokens -1 → 400 invalid_request', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: MSG, max_tokens: -1 });
    checkError(r, 400, 'invalid_request');
  });

  test('body over limits.max_body_bytes (65536) → 413 request_too_large', T, async () => {
    const big = 'x'.repeat(70000);
    let r;
    try {
      r = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: big }] });
    } catch (e) {
      assert.fail(`the gateway must answer 413, not drop the connection: ${e.cause?.code || e.message}`);
    }
    checkError(r, 413, 'request_too_large');
    assert.equal((await env.fake.requests()).length, 0, 'nothing reached a provider');
  });

  test('a body just under the limit is accepted (200)', T, async () => {
    const r = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'y'.repeat(60000) }] });
    assert.equal(r.status, 200, r.text.slice(0, 300));
  });

  test('unknown model → 404 model_not_found', T, async () => {
    const r = await chat({ model: 'no-such-model-9000', messages: MSG });
    checkError(r, 404, 'model_not_found');
    assert.equal((await env.fake.requests()).length, 0);
  });

  test('the openai client surfaces model_not_found as a NotFoundError with the code', T, async () => {
    await assert.rejects(env.client().chat.completions.create({ model: 'no-such-model-9000', messages: MSG }), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  });
});

describe('upstream failures (non-stream)', () => {
  for (const [provider, model] of [['openai', 'gpt-4o'], ['anthropic', 'claude-sonnet-4-6'], ['gemini', 'gemini-2.5-flash']]) {
    test(`${provider} upstream 500 → 502 upstream_error, sanitized body, no "reserved" usage row`, T, async () => {
      await scriptAll(provider, 'status', { status: 500 });
      const r = await chat({ model, messages: MSG });
      checkError(r, 502, 'upstream_error');
      checkSanitized(r);
      await rowNotReserved(r.headers.get('x-request-id'));
    });
  }

  test('openai upstream 503 → 502 upstream_error, sanitized', T, async () => {
    await scriptAll('openai', 'status', { status: 503 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(r, 502, 'upstream_error');
    checkSanitized(r);
  });

  test('anthropic upstream 529 overloaded → 502 upstream_error, sanitized', T, async () => {
    await scriptAll('anthropic', 'status', { status: 529 });
    const r = await chat({ model: 'claude-sonnet-4-6', messages: MSG });
    checkError(r, 502, 'upstream_error');
    checkSanitized(r);
  });

  test('openai upstream 401 → 502 upstream_auth_failed, sanitized', T, async () => {
    await scriptAll('openai', 'status', { status: 401 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(r, 502, 'upstream_auth_failed');
    checkSanitized(r);
  });

  test('anthropic upstream 401 → 502 upstream_auth_failed, sanitized', T, async () => {
    await scriptAll('anthropic', 'status', { status: 401 });
    const r = await chat({ model: 'claude-sonnet-4-6', messages: MSG });
    checkError(r, 502, 'upstream_auth_failed');
    checkSanitized(r);
  });

  test('openai upstream 429 → 429 upstream_rate_limited with a Retry-After header, sanitized', T, async () => {
    await env.fake.next('openai', 'status', { status: 429, headers: { 'retry-after': '1' } });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(r, 429, 'upstream_rate_limited');
    const ra = r.headers.get('retry-after');
    assert.equal(ra, '1', 'the provider\'s Retry-After is passed on');
    checkSanitized(r);
    // honoured: until it has passed the model is not called again
    const again = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(again, 429, 'upstream_rate_limited');
    assert.match(again.headers.get('retry-after') || '', /^[12]$/);
    assert.equal((await env.fake.requests('openai')).length, 1, 'no call during the Retry-After');
    await sleep(1100);
    const later = await chat({ model: 'gpt-4o', messages: MSG });
    assert.equal(later.status, 200, later.text);
    assert.equal((await env.fake.requests('openai')).length, 2);
  });

  test('anthropic upstream 429 without retry-after → 429 upstream_rate_limited still with Retry-After', T, async () => {
    await scriptAll('anthropic', 'status', { status: 429, headers: {} });
    const r = await chat({ model: 'claude-sonnet-4-6', messages: MSG });
    checkError(r, 429, 'upstream_rate_limited');
    assert.match(r.headers.get('retry-after') || '', /^\d+$/, 'Retry-After header');
    checkSanitized(r);
  });

  test('openai upstream 400 → 400 upstream_rejected_request without provider text', T, async () => {
    await scriptAll('openai', 'status', { status: 400 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(r, 400, 'upstream_rejected_request');
    checkSanitized(r);
  });

  test('gemini upstream 400 INVALID_ARGUMENT → 400 upstream_rejected_request without provider text', T, async () => {
    await scriptAll('gemini', 'status', { status: 400 });
    const r = await chat({ model: 'gemini-2.5-flash', messages: MSG });
    checkError(r, 400, 'upstream_rejected_request');
    checkSanitized(r);
  });

  test('openai upstream 200 with invalid JSON → 502 upstream_bad_response', T, async () => {
    await scriptAll('openai', 'badjson');
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(r, 502, 'upstream_bad_response');
    checkSanitized(r);
    await rowNotReserved(r.headers.get('x-request-id'));
  });

  test('anthropic upstream 200 with invalid JSON → 502 upstream_bad_response', T, async () => {
    await scriptAll('anthropic', 'badjson');
    const r = await chat({ model: 'claude-sonnet-4-6', messages: MSG });
    checkError(r, 502, 'upstream_bad_response');
    checkSanitized(r);
  });

  test('openai upstream hangs → 504 upstream_timeout after first_byte_ms (1.5 s), upstream connection closed', T, async () => {
    await scriptAll('openai', 'hang');
    const t0 = Date.now();
    const r = await chat({ model: 'gpt-4o', messages: MSG }, { timeoutMs: 15000 });
    const took = Date.now() - t0;
    checkError(r, 504, 'upstream_timeout');
    checkSanitized(r);
    assert.ok(took >= 1300, `answered after the first-byte timeout (${took} ms)`);
    assert.ok(took < 12000, `answered in bounded time (${took} ms)`);
    await rowNotReserved(r.headers.get('x-request-id'));
    const reqs = await env.fake.requests('openai');
    assert.ok(reqs.length >= 1);
    assert.ok(reqs.every((q) => q.aborted), 'the gateway closed the hung upstream connection(s)');
  });

  test('openai upstream answers after 700 ms (under first_byte_ms) → 200', T, async () => {
    await env.fake.next('openai', 'delay', { ms: 700 });
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].message.content, 'echo: hi');
  });

  test('openai resets the connection after the request was sent → 502 uncertain_upstream_state, charged at the reservation, sent once', T, async () => {
    // warm a connection first, so curl would reuse it (and, left alone, resend on a fresh one)
    assert.equal((await chat({ model: 'gpt-4o', messages: MSG })).status, 200);
    await env.fake.clear();
    await env.fake.next('openai', 'reset');
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    checkError(r, 502, 'uncertain_upstream_state');
    checkSanitized(r);
    const row = await rowNotReserved(r.headers.get('x-request-id'));
    assert.equal(row.state, 'uncertain');
    assert.ok(row.reserved_micros > 0);
    assert.equal(row.cost_micros, row.reserved_micros, 'an unknown outcome is charged at its reservation');
    assert.equal((await env.fake.requests('openai')).length, 1, 'the request went upstream exactly once');
  });

  test('openai upstream ends the body mid-JSON (truncate) → 502 upstream_bad_response or upstream_error', T, async () => {
    await scriptAll('openai', 'truncate');
    const r = await chat({ model: 'gpt-4o', messages: MSG });
    const err = checkError(r, 502);
    assert.ok(['upstream_bad_response', 'upstream_error'].includes(err.code), `code ${err.code}`);
    checkSanitized(r);
  });

  test('the openai client surfaces upstream 500 as an APIError 502 with code upstream_error', T, async () => {
    await scriptAll('openai', 'status', { status: 500 });
    await assert.rejects(env.client().chat.completions.create({ model: 'gpt-4o', messages: MSG }), (e) => {
      assert.equal(e.status, 502);
      assert.equal(e.code, 'upstream_error');
      assert.ok(!String(e.message).includes(LEAK_MARKER));
      return true;
    });
  });

  test('stream request with upstream 500 before any byte → plain HTTP 502 JSON error (no SSE)', T, async () => {
    await scriptAll('openai', 'status', { status: 500 });
    const r = await chat({ model: 'gpt-4o', messages: MSG, stream: true, stream_options: { include_usage: true } });
    checkError(r, 502, 'upstream_error');
    checkSanitized(r);
  });

  test('stream request with upstream 429 → HTTP 429 upstream_rate_limited with Retry-After', T, async () => {
    await scriptAll('anthropic', 'status', { status: 429 });
    const r = await chat({ model: 'claude-sonnet-4-6', messages: MSG, stream: true });
    checkError(r, 429, 'upstream_rate_limited');
    assert.match(r.headers.get('retry-after') || '', /^\d+$/);
  });
});

describe('misconfigured providers (second gateway: xai without key, wrong gemini/anthropic keys)', () => {
  let env2;
  before(async () => {
    env2 = await startEnv({
      extraConfig: NO_FALLBACK,
      omitProviders: ['xai'],
      env: { GEMINI_API_KEY: 'wrong-gemini-key-e2e', ANTHROPIC_API_KEY: 'wrong-anthropic-key-e2e' },
    });
  }, { timeout: 60000 });
  after(async () => { if (env2) await env2.stop(); }, { timeout: 20000 });

  test('model of a provider without an API key → 400 provider_not_configured, nothing sent upstream', T, async () => {
    const r = await env2.request('POST', '/v1/chat/completions', { body: { model: 'grok-3', messages: MSG } });
    checkError(r, 400, 'provider_not_configured', env2);
    assert.equal((await env2.fake.requests('xai')).length, 0);
  });

  test('auto_route pinned to the provider without an API key → 400 provider_not_configured', T, async () => {
    const r = await env2.request('POST', '/v1/chat/completions', { body: { auto_route: true, provider: 'xai', messages: MSG } });
    checkError(r, 400, 'provider_not_configured', env2);
    assert.equal((await env2.fake.requests('xai')).length, 0);
  });

  test('a configured provider still works on the same gateway', T, async () => {
    const r = await env2.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: MSG } });
    assert.equal(r.status, 200, r.text);
  });

  test('anthropic rejects the gateway credential (real 401) → 502 upstream_auth_failed, sanitized', T, async () => {
    const r = await env2.request('POST', '/v1/chat/completions', { body: { model: 'claude-sonnet-4-6', messages: MSG } });
    checkError(r, 502, 'upstream_auth_failed', env2);
    checkSanitized(r, env2);
    assert.ok(!r.text.includes('wrong-anthropic-key-e2e'));
  });

  test('gemini rejects the gateway credential (400 API_KEY_INVALID) → 502 upstream_auth_failed, sanitized', T, async () => {
    const r = await env2.request('POST', '/v1/chat/completions', { body: { model: 'gemini-2.5-flash', messages: MSG } });
    checkError(r, 502, 'upstream_auth_failed', env2);
    checkSanitized(r, env2);
    assert.ok(!r.text.includes('wrong-gemini-key-e2e'));
  });

  test('second gateway log holds no provider key (right or wrong) and no raw API key', T, async () => {
    const log = env2.log();
    assertNoSecrets(assert, log, [env2.apiKey, 'wrong-gemini-key-e2e', 'wrong-anthropic-key-e2e']);
  });
});

test('the gateway log holds no provider key and no raw API key', T, async () => {
  assertNoSecrets(assert, env.log(), [env.apiKey]);
});
