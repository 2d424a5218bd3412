// Browser app clients on the admin plane: an org admin registers one, the superadmin approves
// it, either revokes it; another org's admin sees nothing of it; a member key is refused; bad
// bodies are refused clearly, and only after the key is known to be good.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv } = require('./harness');

const T = { timeout: 30000 };
let env;
let root; // the superadmin key
let admin; // org_admin of acme
let otherAdmin; // org_admin of another org
let member; // acme's member key (the env's default)

async function newKey(org, role) {
  const { stdout } = await env.cli(['keys', 'create', '--org', org, '--role', role, '--db', env.db]);
  return stdout.trim().split('\n').pop();
}

before(async () => {
  env = await startEnv();
  root = env.superadminKey();
  admin = await newKey('acme', 'org_admin');
  await env.cli(['orgs', 'create', 'globex', '--db', env.db]);
  otherAdmin = await newKey('globex', 'org_admin');
  member = env.apiKey;
}, { timeout: 30000 });
after(async () => { if (env) await env.stop(); }, { timeout: 30000 });

const as = (key) => ({ authorization: `Bearer ${key}` });

function create(key, body) {
  return env.request('POST', '/admin/v1/app-clients', { headers: as(key), body });
}

test('register, read, approve, revoke', T, async () => {
  const r = await create(admin, {
    name: 'Support widget',
    origins: ['https://app.acme.test', 'http://localhost:5173'],
    allowed_models: ['gpt-4o-mini'],
    session_ttl_seconds: 600,
  });
  assert.equal(r.status, 201, r.text);
  const c = r.json;
  assert.match(c.id, /^ac_[0-9a-f]{24}$/);
  assert.equal(c.object, 'app_client');
  assert.equal(c.org, 'acme');
  assert.equal(c.name, 'Support widget');
  assert.deepEqual(c.origins, ['https://app.acme.test', 'http://localhost:5173']);
  assert.deepEqual(c.allowed_models, ['gpt-4o-mini']);
  assert.deepEqual(c.allowed_providers, []);
  assert.equal(c.session_ttl_seconds, 600);
  assert.equal(c.approved, false);
  assert.equal(c.approved_at, null);
  assert.equal(c.revoked, false);
  assert.ok(Math.abs(c.created_at - Date.now() / 1000) < 60);
  assert.ok(r.headers.get('x-request-id'));

  const got = await env.request('GET', `/admin/v1/app-clients/${c.id}`, { headers: as(admin) });
  assert.equal(got.status, 200, got.text);
  assert.deepEqual(got.json, c);

  // approval is the superadmin's
  let a = await env.request('POST', `/admin/v1/app-clients/${c.id}/approve`, { headers: as(admin) });
  assert.equal(a.status, 403, a.text);
  assert.equal(a.json.error.code, 'superadmin_only');
  a = await env.request('POST', `/admin/v1/app-clients/${c.id}/approve`, { headers: as(root) });
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.approved, true);
  assert.ok(a.json.approved_at > 0);
  const again = await env.request('POST', `/admin/v1/app-clients/${c.id}/approve`, { headers: as(root) });
  assert.equal(again.json.approved_at, a.json.approved_at, 'approving twice keeps the first time');

  const d = await env.request('DELETE', `/admin/v1/app-clients/${c.id}`, { headers: as(admin) });
  assert.equal(d.status, 200, d.text);
  assert.equal(d.json.revoked, true);
  assert.ok(d.json.revoked_at > 0);
  const re = await env.request('POST', `/admin/v1/app-clients/${c.id}/approve`, { headers: as(root) });
  assert.equal(re.status, 409, re.text);
  assert.equal(re.json.error.code, 'app_client_revoked');
});

test('another org sees nothing; members and strangers are refused', T, async () => {
  const c = (await create(admin, { name: 'mine', origins: ['https://mine.acme.test'] })).json;
  for (const [m, p] of [['GET', ''], ['DELETE', ''], ['POST', '/approve']]) {
    const r = await env.request(m, `/admin/v1/app-clients/${c.id}${p}`, { headers: as(otherAdmin) });
    assert.equal(r.status, 404, `${m} ${p}: ${r.text}`);
  }
  const list = await env.request('GET', '/admin/v1/app-clients', { headers: as(otherAdmin) });
  assert.equal(list.status, 200);
  assert.ok(!list.json.data.some((x) => x.id === c.id));
  // an org admin cannot register into another org
  const into = await create(admin, { name: 'x', origins: ['https://x.test'], org: 'globex' });
  assert.equal(into.status, 404, into.text);

  const m = await create(member, { name: 'x', origins: ['https://x.test'] });
  assert.equal(m.status, 403);
  assert.equal(m.json.error.code, 'admin_only');
  const none = await env.request('GET', '/admin/v1/app-clients', { auth: false });
  assert.equal(none.status, 401);
  // a bad body from someone without a key is a 401, not a 400
  const stranger = await env.request('POST', '/admin/v1/app-clients', { rawBody: '{', headers: { authorization: 'Bearer llmgw_nope' } });
  assert.equal(stranger.status, 401);
  const unknown = await env.request('GET', '/admin/v1/app-clients/ac_000000000000000000000000', { headers: as(root) });
  assert.equal(unknown.status, 404);
  const malformed = await env.request('GET', '/admin/v1/app-clients/nope', { headers: as(root) });
  assert.equal(malformed.status, 404);
  const wrong = await env.request('PUT', '/admin/v1/app-clients', { headers: as(root), body: {} });
  assert.equal(wrong.status, 405);
});

test('bodies are checked', T, async () => {
  const bad = [
    [{ origins: ['https://a.test'] }, /name/],
    [{ name: 'n' }, /origins/],
    [{ name: 'n', origins: [] }, /origins/],
    [{ name: 'n', origins: ['https://a.test/path'] }, /origins/],
    [{ name: 'n', origins: ['ftp://a.test'] }, /origins/],
    [{ name: 'n', origins: ['https://a.test:99999'] }, /origins/],
    [{ name: 'n', origins: ['https://user@a.test'] }, /origins/],
    [{ name: 'n', origins: 'https://a.test' }, /origins/],
    [{ name: 'n', origins: ['https://a.test'], allowed_providers: ['openia'] }, /allowed_providers/],
    [{ name: 'n', origins: ['https://a.test'], allowed_models: ['a,b'] }, /allowed_models/],
    [{ name: 'n', origins: ['https://a.test'], session_ttl_seconds: 5 }, /session_ttl_seconds/],
    [{ name: 'n', origins: ['https://a.test'], session_ttl_seconds: '600' }, /session_ttl_seconds/],
    [{ name: 'n', origins: ['https://a.test'], origin: 'typo' }, /unknown member/],
    [[], /object/],
  ];
  for (const [body, re] of bad) {
    const r = await create(admin, body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.error.code, 'invalid_request');
    assert.match(r.json.error.message, re, JSON.stringify(body));
  }
  const notJson = await env.request('POST', '/admin/v1/app-clients', { headers: as(admin), rawBody: '{"name": ' });
  assert.equal(notJson.status, 400);
  // the superadmin names the org
  const noOrg = await create(root, { name: 'n', origins: ['https://a.test'] });
  assert.equal(noOrg.status, 400, noOrg.text);
  const unknownOrg = await create(root, { name: 'n', origins: ['https://a.test'], org: 'nosuch' });
  assert.equal(unknownOrg.status, 404);
  const ok = await create(root, { name: 'n', origins: ['https://[::1]:8443'], org: 'globex' });
  assert.equal(ok.status, 201, ok.text);
  assert.equal(ok.json.org, 'globex');
  assert.equal(ok.json.session_ttl_seconds, 900, 'the default lifetime');
});

test('lists page with a cursor', T, async () => {
  const made = [];
  for (let i = 0; i < 5; i++) made.push((await create(otherAdmin, { name: `p${i}`, origins: ['https://p.test'] })).json.id);
  const seen = [];
  let cursor = null;
  for (let pages = 0; pages < 10; pages++) {
    const q = `?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
    const r = await env.request('GET', `/admin/v1/app-clients${q}`, { headers: as(otherAdmin) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'list');
    assert.ok(r.json.data.length <= 2);
    seen.push(...r.json.data.map((c) => c.id));
    cursor = r.json.next_cursor;
    if (cursor === null) break;
  }
  for (const id of made) assert.ok(seen.includes(id), id);
  assert.equal(new Set(seen).size, seen.length, 'no client twice');
  assert.ok(seen.every((id) => made.includes(id) || id), 'only globex');
  // the superadmin sees every org's, or one org's
  const all = await env.request('GET', '/admin/v1/app-clients?limit=200', { headers: as(root) });
  assert.ok(all.json.data.some((c) => c.org === 'acme') && all.json.data.some((c) => c.org === 'globex'));
  const one = await env.request('GET', '/admin/v1/app-clients?limit=200&org=acme', { headers: as(root) });
  assert.ok(one.json.data.length > 0 && one.json.data.every((c) => c.org === 'acme'));
  for (const q of ['?limit=0', '?limit=201', '?limit=x', '?cursor=-1', '?cursor=abc']) {
    const r = await env.request('GET', `/admin/v1/app-clients${q}`, { headers: as(root) });
    assert.equal(r.status, 400, q);
  }
});
