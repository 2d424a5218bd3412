// Circuit breakers: a provider that keeps failing is skipped (its fallback serves without
// calling it), probed once after the cool-down, and closed again when the probe succeeds.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, sleep } = require('./harness');

const T = { timeout: 30000 };
const MSG = [{ role: 'user', content: 'hi' }];
const COOLDOWN = 1500;

let env;
before(async () => {
  env = await startEnv({
    extraConfig: `breaker: {failure_threshold: 2, cooldown_ms: ${COOLDOWN}}\nfallback: {backoff_ms: 10, backoff_max_ms: 20}`,
  });
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });

function grok() {
  return env.request('POST', '/v1/chat/completions', { body: { model: 'grok-3', messages: MSG } });
}

async function xaiCalls() {
  return (await env.fake.requests('xai')).length;
}

test('opens after 2 consecutive failures, skips xai while open, probes once after the cool-down, closes on success', T, async () => {
  await env.fake.reset();
  // two failures: each request is still served by the fallback (gpt-4o)
  for (let i = 0; i < 2; i++) {
    await env.fake.next('xai', 'status', { status: 500 });
    const r = await grok();
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'openai');
  }
  assert.equal(await xaiCalls(), 2);
  assert.match(env.log(), /provider=xai circuit closed -> open/);

  // open: xai is not called at all
  let r = await grok();
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.route_method, 'fallback');
  assert.equal(r.json.provider, 'openai');
  assert.match(r.headers.get('x-llmgw-fallback') || '', /grok-3: skipped \(xai circuit open\)/);
  assert.equal(await xaiCalls(), 2, 'an open breaker sends nothing');
  // the health surface shows it (superadmin only)
  const root = env.superadminKey();
  assert.ok(root, 'serve printed the superadmin key on its first start');
  const health = await env.request('GET', '/admin/v1/health', { headers: { authorization: `Bearer ${root}` } });
  assert.equal(health.status, 200, health.text);
  assert.equal(health.json.status, 'degraded');
  assert.equal(health.json.providers.xai.state, 'open');
  assert.equal(health.json.providers.xai.opened, 1);
  assert.ok(health.json.providers.xai.retry_in_ms > 0 && health.json.providers.xai.retry_in_ms <= COOLDOWN);
  assert.equal(health.json.providers.openai.state, 'closed');
  const member = await env.request('GET', '/admin/v1/health');
  assert.equal(member.status, 403);
  assert.equal(member.json.error.code, 'superadmin_only');
  // auto-routing skips it too: a request only xai could serve is refused with Retry-After
  const xaiKey = await env.createKey('xai-only', ['--providers', 'xai']);
  const refused = await env.request('POST', '/v1/chat/completions', {
    body: { auto_route: true, messages: MSG }, headers: { authorization: `Bearer ${xaiKey}` },
  });
  assert.equal(refused.status, 503, refused.text);
  assert.equal(refused.json.error.code, 'no_provider_available');
  assert.match(refused.headers.get('retry-after') || '', /^[12]$/);

  // after the cool-down a single probe goes; it fails → open again
  await sleep(COOLDOWN + 100);
  await env.fake.next('xai', 'status', { status: 503 });
  r = await grok();
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.provider, 'openai');
  assert.equal(await xaiCalls(), 3, 'one probe');
  assert.match(env.log(), /provider=xai circuit half_open -> open/);
  r = await grok();
  assert.equal(await xaiCalls(), 3, 'open again after the failed probe');

  // next cool-down: concurrent requests, only one of them probes; the probe succeeds
  await sleep(COOLDOWN + 100);
  await env.fake.next('xai', 'delay', { ms: 400 });
  const many = await Promise.all([0, 1, 2, 3, 4].map(() => grok()));
  for (const m of many) assert.equal(m.status, 200, m.text);
  assert.equal(many.filter((m) => m.json.provider === 'xai').length, 1, 'exactly one request probed xai');
  assert.equal(await xaiCalls(), 4);
  assert.match(env.log(), /provider=xai circuit half_open -> closed/);

  // closed: xai serves again
  r = await grok();
  assert.equal(r.json.provider, 'xai');
  assert.equal(r.json.route_method, 'explicit');
  assert.equal(await xaiCalls(), 5);
  const after = await env.request('GET', '/admin/v1/health', { headers: { authorization: `Bearer ${root}` } });
  assert.equal(after.json.status, 'ok');
  assert.equal(after.json.providers.xai.state, 'closed');
  assert.equal(after.json.providers.xai.opened, 2);
});

test('failures that are the caller\'s (400) or rate limits (429) do not open the breaker', T, async () => {
  await env.fake.reset();
  for (let i = 0; i < 3; i++) await env.fake.next('gemini', 'status', { status: 400 });
  for (let i = 0; i < 3; i++) {
    const r = await env.request('POST', '/v1/chat/completions', { body: { model: 'gemini-2.0-flash', messages: MSG } });
    assert.equal(r.status, 400, r.text);
  }
  const r = await env.request('POST', '/v1/chat/completions', { body: { model: 'gemini-2.0-flash', messages: MSG } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.provider, 'gemini');
  assert.doesNotMatch(env.log(), /provider=gemini circuit/);
});
