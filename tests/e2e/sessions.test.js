// Subject sessions, the first two steps: an app's backend mints a PKCE share code with its API
// key; the browser exchanges it once, from a registered Origin, for a subject token and an HMAC
// key. Every refusal, single use under concurrency, and the burn of a code on a failed exchange.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv } = require('./harness');
const { pkce } = require('./subject');

const T = { timeout: 30000 };
const ORIGIN = 'https://app.acme.test';
let env;
let root;
let admin;
let client; // approved, of acme
let pending; // registered, not approved
let globexKey;

const as = (key) => ({ authorization: `Bearer ${key}` });


async function newKey(org, role) {
  const { stdout } = await env.cli(['keys', 'create', '--org', org, '--role', role, '--db', env.db]);
  return stdout.trim().split('\n').pop();
}

async function register(name, approve, origins = [ORIGIN, 'http://localhost:5173']) {
  const r = await env.request('POST', '/admin/v1/app-clients', {
    headers: as(admin), body: { name, origins, session_ttl_seconds: 300 },
  });
  assert.equal(r.status, 201, r.text);
  if (approve) {
    const a = await env.request('POST', `/admin/v1/app-clients/${r.json.id}/approve`, { headers: as(root) });
    assert.equal(a.status, 200, a.text);
  }
  return r.json.id;
}

function mint(body, key = env.apiKey) {
  return env.request('POST', '/v1/sessions/share-codes', { headers: as(key), body });
}

async function code(clientId = client) {
  const p = pkce();
  const r = await mint({ app_client_id: clientId, subject: 'user-42', code_challenge: p.challenge, code_challenge_method: 'S256' });
  assert.equal(r.status, 200, r.text);
  return { ...p, code: r.json.share_code, expiresIn: r.json.expires_in };
}

function exchange(body, origin = ORIGIN) {
  const headers = origin ? { origin } : {};
  return env.request('POST', '/v1/sessions/exchange', { headers, body, auth: false });
}

before(async () => {
  env = await startEnv();
  root = env.superadminKey();
  admin = await newKey('acme', 'org_admin');
  await env.cli(['orgs', 'create', 'globex', '--db', env.db]);
  globexKey = await newKey('globex', 'member');
  client = await register('widget', true);
  pending = await register('pending', false, ['https://pending.acme.test']);
}, { timeout: 30000 });
after(async () => { if (env) await env.stop(); }, { timeout: 30000 });

test('a share code, exchanged once from a registered origin, gives a session', T, async () => {
  const c = await code();
  assert.match(c.code, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(c.expiresIn, 60);
  const r = await exchange({ share_code: c.code, code_verifier: c.verifier });
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.subject_token, /^llmst_[A-Za-z0-9_-]{43}$/);
  assert.match(r.json.hmac_key, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(r.json.hmac_key, 'base64url').length, 32);
  assert.equal(r.json.token_type, 'subject');
  assert.ok(Math.abs(r.json.expires_at - (Date.now() / 1000 + 300)) < 30, 'the client\'s lifetime');
  // the second origin of the client works too; the code does not work twice
  const again = await exchange({ share_code: c.code, code_verifier: c.verifier });
  assert.equal(again.status, 401);
  assert.equal(again.json.error.code, 'invalid_share_code');
  const c2 = await code();
  const r2 = await exchange({ share_code: c2.code, code_verifier: c2.verifier }, 'http://localhost:5173');
  assert.equal(r2.status, 200, r2.text);
  assert.notEqual(r2.json.subject_token, r.json.subject_token);
  // nothing secret in the log
  const log = env.log();
  for (const secret of [c.code, c.verifier, r.json.subject_token, r.json.hmac_key]) assert.ok(!log.includes(secret));
});

test('50 parallel exchanges of one code: exactly one succeeds', T, async () => {
  const c = await code();
  const rs = await Promise.all(Array.from({ length: 50 }, () => exchange({ share_code: c.code, code_verifier: c.verifier })));
  const ok = rs.filter((r) => r.status === 200);
  assert.equal(ok.length, 1, rs.map((r) => r.status).join(','));
  assert.ok(rs.every((r) => r.status === 200 || (r.status === 401 && r.json.error.code === 'invalid_share_code')));
});

test('a failed exchange burns the code', T, async () => {
  const cases = [
    [(c) => ({ share_code: c.code, code_verifier: pkce().verifier }), ORIGIN, 401, 'invalid_code_verifier'],
    [(c) => ({ share_code: c.code, code_verifier: c.verifier }), 'https://evil.test', 403, 'origin_not_allowed'],
    [(c) => ({ share_code: c.code, code_verifier: c.verifier }), null, 403, 'origin_required'],
    [(c) => ({ share_code: c.code, code_verifier: 'short' }), ORIGIN, 400, 'invalid_request'],
  ];
  for (const [body, origin, status, errCode] of cases) {
    const c = await code();
    const r = await exchange(body(c), origin);
    assert.equal(r.status, status, `${errCode}: ${r.text}`);
    assert.equal(r.json.error.code, errCode);
    const after = await exchange({ share_code: c.code, code_verifier: c.verifier });
    assert.equal(after.status, 401, `burned after ${errCode}`);
    assert.equal(after.json.error.code, 'invalid_share_code');
  }
});

test('an expired code is refused', T, async () => {
  const c = await code();
  await env.advanceClock(61000);
  const r = await exchange({ share_code: c.code, code_verifier: c.verifier });
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error.code, 'share_code_expired');
});

test('minting: S256 only, an approved client of the key\'s own org, a good body', T, async () => {
  const p = pkce();
  const base = { app_client_id: client, subject: 'u', code_challenge: p.challenge };
  let r = await mint({ ...base, code_challenge_method: 'plain', code_challenge: p.verifier.slice(0, 43) });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /S256/);
  r = await mint(base); // no method: plain by default in RFC 7636, so refused
  assert.equal(r.status, 400);
  r = await mint({ ...base, code_challenge_method: 'S256', code_challenge: 'abc' });
  assert.equal(r.status, 400);
  r = await mint({ ...base, code_challenge_method: 'S256', subject: '' });
  assert.equal(r.status, 400);
  r = await mint({ ...base, code_challenge_method: 'S256', app_client_id: pending });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'app_client_not_approved');
  r = await mint({ ...base, code_challenge_method: 'S256' }, globexKey);
  assert.equal(r.status, 404, 'another org\'s client is not there');
  r = await mint({ ...base, code_challenge_method: 'S256', app_client_id: 'ac_000000000000000000000000' });
  assert.equal(r.status, 404);
  r = await env.request('POST', '/v1/sessions/share-codes', { body: { ...base, code_challenge_method: 'S256' }, auth: false });
  assert.equal(r.status, 401);
  r = await env.request('GET', '/v1/sessions/share-codes', {});
  assert.equal(r.status, 405);
  r = await exchange('not an object');
  assert.equal(r.status, 400);
});

test('a client revoked after the code was minted cannot start the session', T, async () => {
  const id = await register('short-lived', true);
  const c = await code(id);
  const d = await env.request('DELETE', `/admin/v1/app-clients/${id}`, { headers: as(admin) });
  assert.equal(d.status, 200);
  const r = await exchange({ share_code: c.code, code_verifier: c.verifier });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'app_client_revoked');
  const m = await mint({ app_client_id: id, subject: 'u', code_challenge: pkce().challenge, code_challenge_method: 'S256' });
  assert.equal(m.status, 403);
  assert.equal(m.json.error.code, 'app_client_revoked');
});

test('CORS: the exchange answers the origins of approved app clients only', T, async () => {
  const pre = (origin) => env.request('OPTIONS', '/v1/sessions/exchange', {
    auth: false, headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
  });
  const ok = await pre(ORIGIN);
  assert.equal(ok.status, 204, ok.text);
  assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(ok.headers.get('access-control-allow-methods'), /POST/);
  assert.match(ok.headers.get('access-control-allow-headers').toLowerCase(), /content-type/);
  assert.match(ok.headers.get('vary'), /Origin/);
  for (const origin of ['https://evil.test', 'https://pending.acme.test', 'https://app_acme.test',
    'https://app.acme.tes', 'https://app.acme.test/', 'null']) {
    const r = await pre(origin);
    assert.equal(r.status, 403, origin);
    assert.equal(r.headers.get('access-control-allow-origin'), null, origin);
  }
  // the exchange's own answers: readable from a registered origin, success or not
  const c = await code();
  const good = await exchange({ share_code: c.code, code_verifier: c.verifier });
  assert.equal(good.headers.get('access-control-allow-origin'), ORIGIN);
  const used = await exchange({ share_code: c.code, code_verifier: c.verifier });
  assert.equal(used.status, 401);
  assert.equal(used.headers.get('access-control-allow-origin'), ORIGIN);
  const evil = await exchange({ share_code: c.code, code_verifier: c.verifier }, 'https://evil.test');
  assert.equal(evil.headers.get('access-control-allow-origin'), null);
  // server-to-server minting carries no CORS headers
  const m = await mint({ app_client_id: client, subject: 'u', code_challenge: pkce().challenge, code_challenge_method: 'S256' });
  assert.equal(m.headers.get('access-control-allow-origin'), null);
});
