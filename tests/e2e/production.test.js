// Production mode: a request that shows a raw API key with an Origin header (a browser) is
// refused, and says why; without an Origin (a backend) it goes on; a subject session's signed
// request is the browser's way in. Development mode lets the browser's raw key through, with a
// warning in the log.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv } = require('./harness');
const { approvedClient, startSession, signedHeaders } = require('./subject');

const T = { timeout: 30000 };
const ORIGIN = 'https://app.acme.test';
const BODY = { model: 'gpt-4o', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] };
let prod;
let dev;

before(async () => {
  prod = await startEnv({ env: { LLMGW_MODE: 'production' } });
  dev = await startEnv();
}, { timeout: 30000 });
after(async () => {
  if (prod) await prod.stop();
  if (dev) await dev.stop();
}, { timeout: 30000 });

test('production: a raw key from a browser is refused; from a backend it works', T, async () => {
  const r = await prod.request('POST', '/v1/chat/completions', { body: BODY, headers: { origin: ORIGIN } });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'browser_key_forbidden');
  assert.match(r.json.error.message, /subject session/);
  const models = await prod.request('GET', '/v1/models', { headers: { origin: ORIGIN } });
  assert.equal(models.status, 403);
  const ok = await prod.request('POST', '/v1/chat/completions', { body: BODY });
  assert.equal(ok.status, 200, ok.text);
});

test('production: the subject session is the browser\'s way', T, async () => {
  const env = prod;
  const root = env.superadminKey();
  const { stdout } = await env.cli(['keys', 'create', '--org', 'acme', '--role', 'org_admin', '--db', env.db]);
  const admin = stdout.trim().split('\n').pop();
  const id = await approvedClient(env, admin, root, { name: 'w', origins: [ORIGIN] });
  const s = await startSession(env, id, ORIGIN);
  const raw = JSON.stringify(BODY);
  const r = await env.request('POST', '/v1/chat/completions', {
    auth: false, rawBody: raw, headers: signedHeaders(s, 'POST', '/v1/chat/completions', raw, ORIGIN),
  });
  assert.equal(r.status, 200, r.text);
});

test('development: a raw key from a browser goes through, with a warning in the log', T, async () => {
  const r = await dev.request('POST', '/v1/chat/completions', { body: BODY, headers: { origin: ORIGIN } });
  assert.equal(r.status, 200, r.text);
  const rid = r.headers.get('x-request-id');
  assert.match(dev.log(), new RegExp(`req=${rid} a raw API key came with an Origin header`));
  assert.ok(!dev.log().includes(dev.apiKey), 'the key itself is never logged');
});
