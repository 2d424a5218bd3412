// Signed requests with a subject session: the browser's calls carry the subject token, a
// timestamp, a nonce and an HMAC-SHA256 signature over the canonical string; a stolen token
// alone cannot forge one, and a captured request cannot be replayed. Every refusal.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startEnv } = require('./harness');
const { pkce, approvedClient, startSession, signedHeaders } = require('./subject');

const T = { timeout: 30000 };
const ORIGIN = 'https://app.acme.test';
const BODY = { model: 'gpt-4o', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] };
let env;
let root;
let admin;
let client;
let narrow; // allowed_models: gpt-4o-mini only

const as = (key) => ({ authorization: `Bearer ${key}` });

async function newKey(org, role) {
  const { stdout } = await env.cli(['keys', 'create', '--org', org, '--role', role, '--db', env.db]);
  return stdout.trim().split('\n').pop();
}

function register(name, extra = {}) {
  return approvedClient(env, admin, root, { name, origins: [ORIGIN], session_ttl_seconds: 300, ...extra });
}

const session = (clientId = client) => startSession(env, clientId, ORIGIN);

function signed(s, method, path, rawBody, o = {}) {
  return signedHeaders(s, method, path, rawBody, o.origin === undefined ? ORIGIN : o.origin, o);
}

function send(s, o = {}, path = '/v1/chat/completions', body = BODY) {
  const raw = JSON.stringify(body);
  const headers = signed(s, 'POST', path, raw, o);
  if (o.origin === null) delete headers.origin;
  if (o.drop) delete headers[o.drop];
  return env.request('POST', path, { headers, rawBody: o.sendBody ?? raw, auth: false });
}

before(async () => {
  env = await startEnv();
  root = env.superadminKey();
  admin = await newKey('acme', 'org_admin');
  client = await register('widget');
  narrow = await register('narrow', { allowed_models: ['gpt-4o-mini'] });
}, { timeout: 30000 });
after(async () => { if (env) await env.stop(); }, { timeout: 30000 });

test('a signed request runs as its app client, readable from its origin', T, async () => {
  const s = await session();
  const r = await send(s);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, 'chat.completion');
  assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(r.headers.get('access-control-expose-headers'), /X-Request-Id/);
  const row = await env.waitUsage(r.headers.get('x-request-id'));
  assert.ok(row && Number(row.key_row_id) < 0, `attributed to the app client: ${JSON.stringify(row)}`);
  assert.equal(row.subject, 'user-7', 'and to the subject');
  // streamed
  const st = await send(s, {}, '/v1/chat/completions', { ...BODY, stream: true });
  assert.equal(st.status, 200, st.text);
  assert.match(st.headers.get('content-type'), /text\/event-stream/);
  assert.match(st.text, /data: \[DONE\]/);
  assert.equal(st.headers.get('access-control-allow-origin'), ORIGIN);
  // the simple form too
  const simple = await send(s, {}, '/api/v1/llm/chat', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(simple.status, 200, simple.text);
  // the preflight for it
  const pre = await env.request('OPTIONS', '/v1/chat/completions', {
    auth: false, headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(pre.headers.get('access-control-allow-headers'), /X-LLMGW-Signature/);
  const evil = await env.request('OPTIONS', '/v1/chat/completions', {
    auth: false, headers: { origin: 'https://evil.test', 'access-control-request-method': 'POST' },
  });
  assert.equal(evil.status, 403);
});

test('20 parallel copies of one signed request: exactly one is accepted', T, async () => {
  const s = await session();
  const raw = JSON.stringify(BODY);
  const headers = signed(s, 'POST', '/v1/chat/completions', raw);
  const rs = await Promise.all(Array.from({ length: 20 }, () =>
    env.request('POST', '/v1/chat/completions', { headers, rawBody: raw, auth: false })));
  assert.equal(rs.filter((r) => r.status === 200).length, 1, rs.map((r) => r.status).join(','));
  for (const r of rs.filter((x) => x.status !== 200)) {
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'nonce_reused');
  }
});

test('on PostgreSQL, 20 copies of one signed request over two nodes: exactly one is accepted',
  { ...T, skip: process.env.LLMGW_E2E_PG ? false : 'needs the PostgreSQL run (two nodes)' }, async () => {
    const nodeB = await env.startNode();
    const s = await session();
    const raw = JSON.stringify(BODY);
    const headers = signed(s, 'POST', '/v1/chat/completions', raw);
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => {
      const o = { headers, rawBody: raw, auth: false };
      return i % 2 ? nodeB.request('POST', '/v1/chat/completions', o) : env.request('POST', '/v1/chat/completions', o);
    }));
    assert.equal(rs.filter((r) => r.status === 200).length, 1, rs.map((r) => r.status).join(','));
    assert.ok(rs.every((r) => r.status === 200 || (r.status === 401 && r.json.error.code === 'nonce_reused')));
  });

test('every forgery and replay is refused', T, async () => {
  const s = await session();
  const other = await session();
  const now = Math.floor(Date.now() / 1000);
  const cases = [
    // outside ±300 s with room to spare: `now` is whole seconds, and the cases take time
    [{ ts: now - 330 }, 401, 'stale_timestamp'],
    [{ ts: now + 330 }, 401, 'stale_timestamp'],
    [{ signBody: '{"model":"gpt-4o","messages":[]}' }, 401, 'invalid_signature'], // body tampered
    [{ signPath: '/api/v1/llm/chat' }, 401, 'invalid_signature'], // path tampered
    [{ key: other.key }, 401, 'invalid_signature'], // another session's key
    [{ origin: 'https://evil.test' }, 403, 'origin_mismatch'],
    [{ origin: null }, 403, 'origin_required'],
    [{ drop: 'x-llmgw-signature' }, 401, 'missing_signature'],
    [{ drop: 'x-llmgw-nonce' }, 401, 'missing_signature'],
    [{ nonce: 'short' }, 401, 'invalid_signature'],
  ];
  for (const [o, status, code] of cases) {
    const r = await send(s, o);
    assert.equal(r.status, status, `${code}: ${r.text}`);
    assert.equal(r.json.error.code, code, JSON.stringify(o));
  }
  const bad = await env.request('POST', '/v1/chat/completions', {
    auth: false, headers: { ...signed(s, 'POST', '/v1/chat/completions', '{}'), authorization: 'Bearer llmst_' + 'A'.repeat(43) },
    rawBody: '{}',
  });
  assert.equal(bad.status, 401);
  assert.equal(bad.json.error.code, 'invalid_subject_token');
  // the same nonce again, even correctly signed, is a replay
  const nonce = crypto.randomBytes(12).toString('base64url');
  assert.equal((await send(s, { nonce })).status, 200);
  const replay = await send(s, { nonce });
  assert.equal(replay.status, 401);
  assert.equal(replay.json.error.code, 'nonce_reused');
});

test('a token of another org: its own key signs for it, no other', T, async () => {
  await env.cli(['orgs', 'create', 'globex', '--db', env.db]);
  const globexAdmin = await newKey('globex', 'org_admin');
  const globexClient = await approvedClient(env, globexAdmin, root, { name: 'g', origins: [ORIGIN] });
  const { stdout } = await env.cli(['keys', 'create', '--org', 'globex', '--db', env.db]);
  const globexKey = stdout.trim().split('\n').pop();
  const p = pkce();
  const m = await env.request('POST', '/v1/sessions/share-codes', {
    headers: as(globexKey), body: { app_client_id: globexClient, subject: 'g-user', code_challenge: p.challenge, code_challenge_method: 'S256' },
  });
  assert.equal(m.status, 200, m.text);
  const x = await env.request('POST', '/v1/sessions/exchange', {
    auth: false, headers: { origin: ORIGIN }, body: { share_code: m.json.share_code, code_verifier: p.verifier },
  });
  const theirs = { token: x.json.subject_token, key: x.json.hmac_key };
  const ours = await session();
  const forged = await send({ token: theirs.token, key: ours.key });
  assert.equal(forged.status, 401);
  assert.equal(forged.json.error.code, 'invalid_signature');
  const own = await send(theirs);
  assert.equal(own.status, 200, own.text);
  const row = await env.waitUsage(own.headers.get('x-request-id'));
  const acme = await env.waitUsage((await send(ours)).headers.get('x-request-id'));
  assert.notEqual(row.org_id, acme.org_id, 'each runs in its own org');
});

test('the app client\'s allowlist applies; a revoked client\'s sessions end', T, async () => {
  const s = await session(narrow);
  const r = await send(s);
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'model_not_allowed');
  assert.equal((await send(s, {}, '/v1/chat/completions', { ...BODY, model: 'gpt-4o-mini' })).status, 200);
  const d = await env.request('DELETE', `/admin/v1/app-clients/${narrow}`, { headers: as(admin) });
  assert.equal(d.status, 200);
  const after = await send(s, {}, '/v1/chat/completions', { ...BODY, model: 'gpt-4o-mini' });
  assert.equal(after.status, 403);
  assert.equal(after.json.error.code, 'app_client_revoked');
});

test('the HMAC key is stored wrapped with its token (the store alone gives neither); a row from before the wrap (the bare key) still verifies', T, async () => {
  const s = await session();
  const tokenHash = crypto.createHash('sha256').update(s.token).digest('hex');
  const [row] = await env.query(`SELECT hmac_key FROM subject_sessions WHERE token_hash = '${tokenHash}'`);
  assert.ok(row, 'the session is stored by its token hash');
  assert.match(row.hmac_key, /^w1\.[A-Za-z0-9_-]{43}$/);
  assert.ok(!row.hmac_key.includes(s.key), 'not the key itself');
  const raw = Buffer.from(s.key, 'base64url');
  const mask = crypto.createHmac('sha256', s.token).update('llmgw subject session hmac key v1').digest();
  const stored = Buffer.from(row.hmac_key.slice(3), 'base64url');
  assert.ok(!stored.equals(raw) && !row.hmac_key.includes(raw.toString('hex')));
  assert.ok(Buffer.from(stored.map((b, i) => b ^ mask[i])).equals(raw), 'unwrapped with the token it is the key');
  const first = await send(s);
  assert.equal(first.status, 200, first.text);
  env.plantedSecret(s.key); // written by this test, not by the gateway
  await env.execSQL(`UPDATE subject_sessions SET hmac_key = '${s.key}' WHERE token_hash = '${tokenHash}'`);
  const bare = await send(s);
  assert.equal(bare.status, 200, `a bare key (written before the wrap) verifies: ${bare.text}`);
  const forged = { ...s, key: Buffer.alloc(32, 7).toString('base64url') };
  assert.equal((await send(forged)).status, 401, 'another key does not');
});

test('an expired session is refused', T, async () => {
  const s = await session();
  await env.advanceClock(301000);
  const ts = Math.floor((Date.now() + 301000) / 1000); // the gateway's clock moved on
  const r = await send(s, { ts });
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error.code, 'session_expired');
});
