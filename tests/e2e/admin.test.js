// The admin plane (issue 9): an authorization sweep generated from the server's own route table
// (`llmgw admin routes`: every route × every role × own/other org → the expected status, no
// data of another org in any body, an audit entry for every change), key rotation with a grace
// period, usage queries and the streamed export of 100,000 rows summing to the totals exactly,
// metrics, health, the JSON access log, providers without secrets, and the CLI going through the
// same code. LLMGW_E2E_PG=1 runs it on PostgreSQL.
'use strict';

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startEnv, FAKE_KEYS } = require('./harness');

const T = { timeout: 60000 };
const PG = process.env.LLMGW_E2E_PG === '1';

let env;
let root; // the superadmin
let acmeAdmin;
let globexAdmin;
let globexMember;

before(async () => {
  env = await startEnv({
    postgres: PG,
    extraConfig: 'fallback: {enabled: false}',
    env: { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || 'detect_leaks=1'}:quarantine_size_mb=0` },
  });
  root = env.superadminKey();
  assert.ok(root, 'the superadmin key was printed at first start');
  acmeAdmin = await env.createKey('acme-admin', ['--role', 'org_admin']);
  await env.cli(['orgs', 'create', 'globex', '--db', env.db]);
  const key = async (args) => (await env.cli(['keys', 'create', '--org', 'globex', ...args, '--db', env.db])).stdout.trim().split('\n').pop().trim();
  globexAdmin = await key(['--role', 'org_admin', '--name', 'globex-admin']);
  globexMember = await key(['--name', 'globex-member']);
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

const auth = (k) => (k ? { authorization: `Bearer ${k}` } : {});

function call(method, path, key, body) {
  return env.request(method, path, { headers: auth(key), auth: false, body, timeoutMs: 30000 });
}

async function freshKey(org) {
  const r = await call('POST', '/admin/v1/keys', root, { org, name: `sweep-${org}` });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

async function freshClient(org) {
  const r = await call('POST', '/admin/v1/app-clients', root, { org, name: `sweep-${org}`, origins: ['https://sweep.example'] });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

// The object a route's {} stands for, in org; created fresh for every call (some calls revoke).
async function objectFor(path, org) {
  if (path.startsWith('/admin/v1/orgs/')) return org;
  if (path.startsWith('/admin/v1/keys/')) return freshKey(org);
  if (path.startsWith('/admin/v1/app-clients/')) return freshClient(org);
  throw new Error(`no fixture for ${path}`);
}

let slugs = 0;
function bodyFor(route, role) {
  const { method, path } = route;
  if (method === 'POST' && path === '/admin/v1/orgs') return { slug: `sweep-${++slugs}` };
  if (method === 'PATCH' && path === '/admin/v1/orgs/{}') return { capture: { retention_days: 0 } };
  if (method === 'POST' && path === '/admin/v1/keys') return role === 'root' ? { name: 'k', org: 'acme' } : { name: 'k' };
  if (method === 'PATCH' && path === '/admin/v1/keys/{}') return { limits: { requests_per_hour: 0 } };
  if (method === 'PATCH' && path === '/admin/v1/app-clients/{}') return { origins: ['https://moved.example'] };
  if (method === 'POST' && path === '/admin/v1/app-clients') {
    return { name: 'c', origins: ['https://c.example'], ...(role === 'root' ? { org: 'acme' } : {}) };
  }
  if (method === 'POST') return {};
  return undefined;
}

function queryFor(route, role) {
  if (route.path === '/admin/v1/conversations/export') return role === 'root' ? '?format=jsonl&org=acme' : '?format=jsonl';
  if (route.path === '/admin/v1/usage/export') return '?format=csv';
  if (route.method === 'GET' && route.path === '/admin/v1/keys' && role === 'root') return '?org=acme';
  return '';
}

// What each role gets: none 401; a member 403; an org_admin 403 on the superadmin's routes,
// 404 on another org's object (before anything else), 2xx on its own; the superadmin 2xx.
function expected(route, role, own) {
  if (role === 'none') return [401];
  if (role === 'member') return [403];
  if (role === 'admin') {
    if (route.object && !own) return [404];
    if (route.who === 'superadmin') return [403];
  }
  return [200, 201];
}

test('authorization sweep over the route table: every route × role × own/other org', { timeout: 240000 }, async () => {
  const { stdout } = await env.cli(['admin', 'routes']);
  const routes = JSON.parse(stdout);
  assert.ok(routes.length >= 20, `the table lists the admin plane (${routes.length} routes)`);
  const roles = { none: null, member: env.apiKey, admin: acmeAdmin, root };
  const globexIds = [];
  let checked = 0;
  for (const route of routes) {
    for (const [role, key] of Object.entries(roles)) {
      for (const own of route.object ? [true, false] : [true]) {
        let path = route.path;
        if (route.object) {
          const id = await objectFor(path, own ? 'acme' : 'globex');
          if (!own) globexIds.push(id);
          path = path.replace('{}', id);
        }
        const r = await call(route.method, path + queryFor(route, role), key, bodyFor(route, role));
        const want = expected(route, role, own);
        assert.ok(want.includes(r.status), `${role} ${route.method} ${path} (${own ? 'own' : 'other'} org): ${r.status} ${r.text.slice(0, 200)}, want ${want}`);
        if (role === 'admin') {
          assert.doesNotMatch(r.text, /globex/, `${route.method} ${path}: nothing of another org`);
          for (const gid of globexIds) assert.ok(!r.text.includes(gid), `${route.method} ${path} names ${gid}`);
        }
        if (r.status < 300 && route.audit) {
          const rid = r.headers.get('x-request-id');
          const rows = await env.query(`SELECT action, actor_role, detail FROM audit_log WHERE request_id = '${rid}'`);
          assert.equal(rows.length, 1, `${route.method} ${route.path} by ${role}: one audit entry (${JSON.stringify(rows)})`);
          assert.equal(rows[0].action, route.audit);
          assert.doesNotMatch(rows[0].detail, /llmgw_[A-Za-z0-9_-]{43}/, 'no raw key in the audit trail');
        }
        checked++;
      }
    }
  }
  console.log(`# sweep: ${routes.length} routes, ${checked} calls`);
});

test('keys: create shows the raw key once; rotation keeps the key, the old secret works for its grace only', T, async () => {
  let r = await call('POST', '/admin/v1/keys', acmeAdmin, { name: 'rotating', tier: 'pro', limits: { daily_usd: 5, requests_per_hour: 100 } });
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  const first = r.json.key;
  assert.match(first, /^llmgw_[A-Za-z0-9_-]{43}$/);
  assert.equal(r.json.limits.daily_usd, 5);
  r = await call('GET', `/admin/v1/keys/${id}`, acmeAdmin);
  assert.equal(r.status, 200);
  assert.equal(r.json.key, undefined, 'never shown again');
  const chat = (k) => env.request('POST', '/v1/chat/completions', { headers: auth(k), body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] } });
  assert.equal((await chat(first)).status, 200);
  r = await call('POST', `/admin/v1/keys/${id}/rotate`, acmeAdmin, { grace_seconds: 1 });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.id, id, 'the same key');
  const second = r.json.key;
  assert.notEqual(second, first);
  assert.ok(r.json.previous_key_expires_at > 0);
  const a = await chat(first);
  const b = await chat(second);
  assert.equal(a.status, 200, 'the old secret during its grace');
  assert.equal(b.status, 200);
  await new Promise((res) => setTimeout(res, 1300));
  assert.equal((await chat(first)).status, 401, 'the old secret after its grace');
  assert.equal((await chat(second)).status, 200);
  r = await call('POST', `/admin/v1/keys/${id}/rotate`, acmeAdmin, { grace_seconds: 0 });
  assert.equal(r.status, 201);
  assert.equal((await chat(second)).status, 401, 'no grace: at once');
  assert.equal((await chat(r.json.key)).status, 200);
  // every request went to the same key's usage
  const rows = await env.query(`SELECT DISTINCT key_row_id FROM usage WHERE request_id IN ('${a.headers.get('x-request-id')}', '${b.headers.get('x-request-id')}')`);
  assert.equal(rows.length, 1);
  r = await call('DELETE', `/admin/v1/keys/${id}`, acmeAdmin);
  assert.equal(r.json.revoked, true);
  assert.equal((await call('POST', `/admin/v1/keys/${id}/rotate`, acmeAdmin)).status, 409);
  assert.equal((await call('PATCH', `/admin/v1/keys/${id}`, acmeAdmin, { limits: { daily_usd: 'lots' } })).status, 400);
});

test('orgs: policy and capture settings read and changed through the API; bad input is refused', T, async () => {
  let r = await call('PATCH', '/admin/v1/orgs/acme', acmeAdmin, { allowed_providers: ['openai', 'anthropic'], limits: { monthly_usd: '250.5' }, capture: { retention_days: 30 } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.allowed_providers, ['openai', 'anthropic']);
  assert.equal(r.json.limits.monthly_usd, 250.5);
  assert.equal(r.json.capture.retention_days, 30);
  assert.equal(r.json.capture.enabled, true);
  r = await call('GET', '/admin/v1/orgs', acmeAdmin);
  assert.deepEqual(r.json.data.map((o) => o.slug), ['acme'], 'an org_admin lists its own org');
  r = await call('GET', '/admin/v1/orgs', root);
  assert.ok(r.json.data.some((o) => o.slug === 'globex'));
  for (const bad of [{ allowed_providers: ['openai', 'acme-ai'] }, { limits: { rph: 1 } }, { name: 'x' }, { capture: { enabled: 'yes' } }]) {
    assert.equal((await call('PATCH', '/admin/v1/orgs/acme', acmeAdmin, bad)).status, 400, JSON.stringify(bad));
  }
  r = await call('PATCH', '/admin/v1/orgs/acme', acmeAdmin, { allowed_providers: [], limits: { monthly_usd: 0 }, capture: { retention_days: 0 } });
  assert.equal(r.status, 200);
  const audit = await call('GET', '/admin/v1/audit?limit=1000', acmeAdmin);
  const last = audit.json.data.filter((e) => e.action === 'org.update').pop();
  assert.deepEqual(last.detail.before.allowed_providers, ['openai', 'anthropic'], 'before and after are recorded');
  assert.deepEqual(last.detail.after.allowed_providers, []);
  assert.ok(audit.json.data.every((e) => e.org_id !== 0), 'an org_admin reads its own org\'s trail');
});

test('providers: the superadmin sees each provider\'s settings, never a credential', T, async () => {
  const r = await call('GET', '/admin/v1/providers', root);
  assert.equal(r.status, 200);
  const openai = r.json.data.find((p) => p.name === 'openai');
  assert.equal(openai.configured, true);
  assert.match(openai.base_url, /^http:\/\/127\.0\.0\.1:\d+\/openai$/);
  for (const k of Object.values(FAKE_KEYS)) assert.ok(!r.text.includes(k), 'no provider key');
});

async function seed(n, orgSlug, t0) {
  const [{ id: orgId }] = await env.query(`SELECT id FROM orgs WHERE slug = '${orgSlug}'`);
  const [{ id: keyRow }] = await env.query(`SELECT id FROM api_keys WHERE org_id = ${orgId} ORDER BY id LIMIT 1`);
  if (env.postgres) {
    await env.execSQL(`INSERT INTO usage(request_id, org_id, key_row_id, provider, model, endpoint, state, tokens_in, tokens_out, cost_micros, reserved_micros, status, created_ms, settled_ms, kind, route_method, node)
      SELECT 'req_seed' || lpad(i::text, 8, '0'), ${orgId}, ${keyRow}, (ARRAY['openai','anthropic','gemini'])[1 + i % 3], (ARRAY['gpt-4o','claude-sonnet-4-6','gemini-2.5-flash'])[1 + i % 3],
             'chat.completions', CASE WHEN i % 1000 = 0 THEN 'reserved' ELSE 'settled' END, 10 + i % 7, 5 + i % 11, 50 + i % 97, 400, 200, ${t0} + i * 6000, ${t0} + i * 6000 + 10, 'chat', 'explicit', 'seed'
      FROM generate_series(1, ${n}) i;
      ANALYZE usage`); // as autovacuum would soon: the planner's estimates need statistics
  } else {
    await env.execSQL(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n})
      INSERT INTO usage(request_id, org_id, key_row_id, provider, model, endpoint, state, tokens_in, tokens_out, cost_micros, reserved_micros, status, created_ms, settled_ms, kind, route_method, node)
      SELECT printf('req_seed%08d', i), ${orgId}, ${keyRow}, CASE i % 3 WHEN 0 THEN 'openai' WHEN 1 THEN 'anthropic' ELSE 'gemini' END,
             CASE i % 3 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'claude-sonnet-4-6' ELSE 'gemini-2.5-flash' END,
             'chat.completions', CASE WHEN i % 1000 = 0 THEN 'reserved' ELSE 'settled' END, 10 + i % 7, 5 + i % 11, 50 + i % 97, 400, 200, ${t0} + i * 6000, ${t0} + i * 6000 + 10, 'chat', 'explicit', 'seed' FROM n;`);
  }
}

function rssKB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

test('usage: 100,000 rows queried by day, key, model and provider, exported as CSV and JSONL with bounded memory, summing to the totals exactly', { timeout: 180000 }, async () => {
  const N = 100000;
  const t0 = Date.UTC(2026, 5, 1); // June 2026: 100,000 rows 6 s apart, about 7 days
  await seed(N, 'acme', t0);
  const range = `from=${t0 / 1000}&to=${t0 / 1000 + 8 * 86400}`;
  const q = async (by) => {
    const r = await call('GET', `/admin/v1/usage?${range}&group_by=${by}`, acmeAdmin);
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  const day = await q('day');
  assert.equal(day.totals.rows, N);
  assert.equal(day.totals.requests, N);
  assert.ok(day.data.length >= 7 && day.data.length <= 8, `days: ${day.data.map((d) => d.group)}`);
  assert.equal(day.data[0].group, '2026-06-01');
  for (const by of ['day', 'key', 'model', 'provider']) {
    const g = by === 'day' ? day : await q(by);
    const sum = g.data.reduce((a, d) => a + d.cost_micros, 0);
    assert.equal(sum, g.totals.cost_micros, `${by}: the groups sum to the totals`);
    assert.equal(g.totals.cost_micros, day.totals.cost_micros);
  }
  const byModel = await q('model');
  assert.deepEqual(byModel.data.map((d) => d.group).sort(), ['claude-sonnet-4-6', 'gemini-2.5-flash', 'gpt-4o']);
  // another org's admin sees none of it; a filter narrows it
  const other = await call('GET', `/admin/v1/usage?${range}`, globexAdmin);
  assert.equal(other.json.totals.rows, 0);
  const oa = await call('GET', `/admin/v1/usage?${range}&provider=openai`, acmeAdmin);
  assert.equal(oa.json.totals.rows, Math.floor(N / 3));
  assert.equal((await call('GET', '/admin/v1/usage?from=2020-01-01&to=2026-01-01', acmeAdmin)).status, 400, 'a range over 366 days');
  assert.equal((await call('GET', '/admin/v1/usage?group_by=week', acmeAdmin)).status, 400);

  const pid = env.gw.pid;
  for (const format of ['csv', 'jsonl']) {
    const before = rssKB(pid);
    let peak = before;
    const timer = setInterval(() => { peak = Math.max(peak, rssKB(pid)); }, 20);
    const started = Date.now();
    let lines = 0;
    let cost = 0;
    let bytes = 0;
    let rest = '';
    let header = null;
    try {
      const res = await fetch(`${env.baseURL}/admin/v1/usage/export?format=${format}&${range}`, { headers: auth(acmeAdmin), signal: AbortSignal.timeout(150000) });
      assert.equal(res.status, 200);
      const dec = new TextDecoder();
      for await (const chunk of res.body) {
        bytes += chunk.length;
        rest += dec.decode(chunk, { stream: true });
        const parts = rest.split('\n');
        rest = parts.pop();
        for (const p of parts) {
          if (format === 'csv') {
            if (header === null) { header = p.split(','); continue; }
            cost += Number(p.split(',')[header.indexOf('cost_micros')]);
          } else {
            cost += JSON.parse(p).cost_micros;
          }
          lines++;
        }
      }
    } finally {
      clearInterval(timer);
    }
    const secs = (Date.now() - started) / 1000;
    assert.equal(rest, '');
    assert.equal(lines, N, `${format}: every row`);
    assert.equal(cost, day.totals.cost_micros, `${format}: sums to the totals exactly`);
    const grew = (peak - before) / 1024;
    console.log(`# usage export ${format}: ${lines} rows, ${(bytes / 1e6).toFixed(1)} MB in ${secs.toFixed(2)} s (${Math.round(lines / secs)} rows/s); RSS grew ${grew.toFixed(1)} MB`);
    if (!/tsan/.test(process.env.LLMGW_E2E_BIN || '')) assert.ok(grew < 24, `bounded memory (${grew.toFixed(1)} MB for ${(bytes / 1e6).toFixed(1)} MB)`);
  }
  const audit = await env.query("SELECT actor_role FROM audit_log WHERE action = 'usage.export'");
  assert.ok(audit.length >= 2);
  // the CLI exports through the same code
  const { stdout } = await env.cli(['usage', 'export', '--format', 'jsonl', '--org', 'acme', '--from', String(t0 / 1000), '--to', String(t0 / 1000 + 60), '--db', env.db]);
  const cliRows = stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(cliRows.length, 9, 'rows 1..9 lie in the first minute');
  assert.equal(cliRows[0].request_id, 'req_seed00000001');
  assert.ok((await env.query("SELECT actor FROM audit_log WHERE action = 'usage.export' AND actor = 'cli'")).length === 1);
});

test('metrics (Prometheus) and health: the superadmin\'s; they count what happened', T, async () => {
  for (let i = 0; i < 3; i++) {
    assert.equal((await env.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'm' }] } })).status, 200);
  }
  await env.fake.next('anthropic', 'status', { status: 500 });
  assert.equal((await env.request('POST', '/v1/chat/completions', { body: { model: 'claude-sonnet-4-6', messages: [{ role: 'user', content: 'm' }] } })).status, 502);
  assert.equal((await call('GET', '/admin/v1/metrics', acmeAdmin)).status, 403);
  const r = await call('GET', '/admin/v1/metrics', root);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const m = /llmgw_requests_total\{endpoint="chat_completions",provider="openai",status_class="2xx"\} (\d+)/.exec(r.text);
  assert.ok(m && Number(m[1]) >= 3, 'requests counted');
  assert.match(r.text, /llmgw_request_duration_seconds_bucket\{endpoint="chat_completions",le="\+Inf"\} \d+/);
  assert.match(r.text, /llmgw_upstream_errors_total\{provider="anthropic",kind="status_5xx"\} [1-9]/);
  assert.match(r.text, /llmgw_tokens_total\{provider="openai",direction="input"\} [1-9]/);
  assert.match(r.text, /llmgw_breaker_state\{provider="openai"\} 0/);
  assert.match(r.text, /llmgw_store_duration_seconds_count\{op="write"\} [1-9]/);
  assert.match(r.text, /llmgw_reservations_in_flight 0/);
  const h = await call('GET', '/admin/v1/health', root);
  assert.equal(h.status, 200);
  assert.equal(h.json.store, env.postgres ? 'postgres' : 'sqlite');
  assert.equal(h.json.store_status, 'ok');
  assert.equal(typeof h.json.store_latency_ms, 'number');
  assert.match(h.json.version, /^\d+\.\d+\.\d+/);
  assert.ok(h.json.uptime_seconds >= 0);
  assert.equal(typeof h.json.idempotency.quarantined, 'number');
  assert.equal(typeof h.json.idempotency.purge_backlog, 'number');
  assert.ok(h.json.providers.openai);
  const hz = await env.request('GET', '/healthz', { auth: false });
  assert.deepEqual(hz.json, { status: 'ok' }, '/healthz stays minimal');
});

test('every request is one JSON line in the log, without content or keys', T, async () => {
  const r = await env.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'SECRET-PROMPT-TEXT' }] } });
  assert.equal(r.status, 200);
  const rid = r.headers.get('x-request-id');
  const j = await env.accessLine(rid);
  const line = JSON.stringify(j);
  for (const k of ['ts', 'request_id', 'org_id', 'key_id', 'provider', 'model', 'status', 'latency_ms', 'tokens_in', 'tokens_out', 'cost_usd']) assert.ok(k in j, k);
  assert.equal(j.provider, 'openai');
  assert.equal(j.status, 200);
  assert.doesNotMatch(line, /SECRET-PROMPT-TEXT|llmgw_[A-Za-z0-9_-]{43}/);
});

test('the CLI manages keys, orgs and app clients through the admin code: same checks, audited as "cli"', T, async () => {
  const created = await env.cli(['keys', 'create', '--org', 'globex', '--name', 'via-cli', '--db', env.db]);
  const id = (created.stdout.match(/key_[0-9a-f]{16}/) || [])[0];
  assert.ok(id);
  const rot = await env.cli(['keys', 'rotate', id, '--grace-seconds', '0', '--db', env.db]);
  const raw = rot.stdout.trim().split('\n').pop().trim();
  assert.match(raw, /^llmgw_[A-Za-z0-9_-]{43}$/);
  assert.equal((await env.request('POST', '/v1/chat/completions', { headers: auth(raw), body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] } })).status, 200);
  const ac = JSON.parse((await env.cli(['app-clients', 'create', '--org', 'globex', '--name', 'cli-app', '--origins', 'https://cli.example', '--db', env.db])).stdout);
  assert.match(ac.id, /^ac_/);
  const ap = JSON.parse((await env.cli(['app-clients', 'approve', ac.id, '--db', env.db])).stdout);
  assert.equal(ap.approved, true);
  const api = JSON.parse((await env.cli(['admin', 'api', 'GET', `/admin/v1/keys/${id}`, '--db', env.db])).stdout);
  assert.equal(api.id, id);
  const rows = await env.query("SELECT action FROM audit_log WHERE actor = 'cli' ORDER BY id");
  const actions = rows.map((x) => x.action);
  for (const a of ['key.create', 'key.rotate', 'app_client.create', 'app_client.approve']) assert.ok(actions.includes(a), `${a} in ${actions}`);
  await assert.rejects(env.cli(['admin', 'api', 'GET', '/admin/v1/nope', '--db', env.db]), /no admin operation/);
  await assert.rejects(env.cli(['keys', 'rotate', 'key_0000000000000000', '--db', env.db]), /no key/);
});

test('session minting is audited: the share code (who minted it, for which subject) and the session it became', T, async () => {
  const { approvedClient, startSession } = require('./subject');
  const origin = 'https://audited.example';
  const clientId = await approvedClient(env, acmeAdmin, root, { name: 'audited app', origins: [origin] });
  const s = await startSession(env, clientId, origin, 'subject-42');
  assert.ok(s.token);
  const rows = await env.query(`SELECT action, actor, actor_role, target, detail FROM audit_log WHERE target = 'app_client:${clientId}' ORDER BY id`);
  const actions = rows.map((r) => r.action);
  for (const a of ['app_client.create', 'app_client.approve', 'session.share_code', 'session.start']) assert.ok(actions.includes(a), `${a} in ${actions}`);
  const start = rows.find((r) => r.action === 'session.start');
  assert.equal(start.actor_role, 'app_client');
  assert.match(start.detail, /subject-42/);
  assert.ok(!JSON.stringify(rows).includes(s.token) && !JSON.stringify(rows).includes(s.key), 'no token or HMAC key in the trail');
});

test('app clients: an org admin changes its client\'s origins; the change is audited with before and after', T, async () => {
  const r = await call('POST', '/admin/v1/app-clients', acmeAdmin, { name: 'movable', origins: ['https://old.example'] });
  assert.equal(r.status, 201, r.text);
  const p = await call('PATCH', `/admin/v1/app-clients/${r.json.id}`, acmeAdmin, { origins: ['https://new.example', 'http://localhost:3000'], session_ttl_seconds: 600 });
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(p.json.origins, ['https://new.example', 'http://localhost:3000']);
  assert.equal(p.json.session_ttl_seconds, 600);
  assert.equal((await call('PATCH', `/admin/v1/app-clients/${r.json.id}`, acmeAdmin, { origins: ['ftp://nope'] })).status, 400);
  assert.equal((await call('PATCH', `/admin/v1/app-clients/${r.json.id}`, acmeAdmin, { org: 'globex' })).status, 400);
  const [e] = await env.query(`SELECT detail FROM audit_log WHERE action = 'app_client.update' AND target = 'app_client:${r.json.id}'`);
  const d = JSON.parse(e.detail);
  assert.deepEqual(d.before.origins, ['https://old.example']);
  assert.deepEqual(d.after.origins, ['https://new.example', 'http://localhost:3000']);
});
