// Conversation memory and the conversation store (issue 8): history reaching each provider in
// its own format, summarization at the budget, the summarizer's failure keeping every turn,
// capture, the owner's actions, the org's shared view, privacy across owners and orgs, delete,
// and the admin's streamed export. LLMGW_E2E_PG=1 runs the same on PostgreSQL.
'use strict';

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startEnv, readSSE } = require('./harness');
const { approvedClient, startSession, signedHeaders } = require('./subject');

const T = { timeout: 30000 };
const PG = process.env.LLMGW_E2E_PG === '1';

let env;
let member2; // another key of the same org
let otherOrgKey; // a key of another org
let adminKey; // an org_admin of acme

before(async () => {
  env = await startEnv({
    postgres: PG,
    // a small budget on gpt-4o (1% of 128k = 1,280 tokens) so that a few long turns overflow
    // it; the summarizer is Gemini's, apart from the models under test
    extraConfig: 'conversations: {history_percent: 1, keep_recent_turns: 2, summary_model: gemini-2.5-flash-lite}\nfallback: {enabled: false}\nidempotency: {purge_interval_ms: 200}',
    // the export test looks at memory; ASan's quarantine would hold every freed page
    env: { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || 'detect_leaks=1'}:quarantine_size_mb=0` },
  });
  member2 = await env.createKey('member2');
  adminKey = await env.createKey('boss', ['--role', 'org_admin']);
  await env.cli(['orgs', 'create', 'globex', '--db', env.db]);
  const { stdout } = await env.cli(['keys', 'create', '--org', 'globex', '--name', 'g', '--db', env.db]);
  otherOrgKey = stdout.trim().split('\n').pop().trim();
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

const auth = (key) => ({ authorization: `Bearer ${key}` });

function chat(body, key = env.apiKey, path = '/v1/chat/completions') {
  return env.request('POST', path, { body, headers: auth(key), timeoutMs: 20000 });
}

function get(path, key = env.apiKey) {
  return env.request('GET', path, { headers: auth(key) });
}

// Turns are stored just after the answer (a store thread writes them): wait for n of them.
async function waitTurns(id, n, key = env.apiKey) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = await get(`/v1/conversations/${id}`, key);
    if (r.status === 200 && r.json.turns >= n) return r.json;
    if (Date.now() > deadline) throw new Error(`conversation ${id}: ${r.status} ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

// The texts of what a provider received, in order, with their roles (its own wire format).
function sent(provider, body) {
  if (provider === 'anthropic') {
    return body.messages.map((m) => [m.role, typeof m.content === 'string' ? m.content : m.content.map((b) => b.text).join('')]);
  }
  if (provider === 'gemini') {
    return body.contents.map((c) => [c.role, c.parts.map((p) => p.text).join('')]);
  }
  return body.messages.map((m) => [m.role, typeof m.content === 'string' ? m.content : m.content.map((b) => b.text).join('')]);
}

for (const [provider, model, assistantRole] of [
  ['openai', 'gpt-4.1', 'assistant'],
  ['anthropic', 'claude-sonnet-4-6', 'assistant'],
  ['gemini', 'gemini-2.5-flash', 'model'],
  ['xai', 'grok-3', 'assistant'],
  ['perplexity', 'sonar', 'assistant'],
]) {
  test(`${provider}: the second turn carries the first in ${provider}'s format, system prompt kept`, T, async () => {
    const id = `mem-${provider}`;
    const sys = { role: 'system', content: 'Be brief.' };
    const r1 = await chat({ model, conversation_id: id, messages: [sys, { role: 'user', content: 'my name is Ada' }] });
    assert.equal(r1.status, 200, r1.text);
    await waitTurns(id, 2);
    const r2 = await chat({ model, conversation_id: id, messages: [sys, { role: 'user', content: 'what is my name?' }] });
    assert.equal(r2.status, 200, r2.text);
    const reqs = await env.fake.requests(provider);
    const last = reqs[reqs.length - 1].body;
    assert.deepEqual(sent(provider, last).filter((m) => m[0] !== 'system'), [
      ['user', 'my name is Ada'],
      [assistantRole, 'echo: my name is Ada'],
      ['user', 'what is my name?'],
    ]);
    // the system prompt where the provider takes it, once
    if (provider === 'anthropic') {
      const s = typeof last.system === 'string' ? last.system : last.system.map((b) => b.text).join('');
      assert.equal(s, 'Be brief.');
    } else if (provider === 'gemini') {
      assert.equal(last.systemInstruction.parts.map((p) => p.text).join(''), 'Be brief.');
    } else {
      assert.deepEqual(last.messages[0], { role: 'system', content: 'Be brief.' });
      assert.equal(last.messages.filter((m) => m.role === 'system').length, 1);
    }
    const conv = await waitTurns(id, 4);
    assert.deepEqual(conv.messages.map((t) => [t.seq, t.message.role, t.message.content]), [
      [1, 'user', 'my name is Ada'], [2, 'assistant', 'echo: my name is Ada'],
      [3, 'user', 'what is my name?'], [4, 'assistant', 'echo: what is my name?'],
    ]);
    assert.equal(conv.messages[3].model, model);
  });
}

test('a streamed answer is remembered as it was streamed; the simple endpoint remembers too', T, async () => {
  const id = 'mem-stream';
  const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth(env.apiKey), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', stream: true, conversation_id: id, messages: [{ role: 'user', content: 'stream me' }] }),
  });
  assert.equal(res.status, 200);
  const { events } = await readSSE(res);
  const text = events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data))
    .map((c) => (c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  const conv = await waitTurns(id, 2);
  assert.equal(conv.messages[1].message.content, text);
  const r = await chat({ model: 'claude-haiku-4-5', conversation_id: id, messages: [{ role: 'user', content: 'again' }] }, env.apiKey, '/api/v1/llm/chat');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.conversation_id, id);
  const [up] = await env.fake.requests('anthropic');
  assert.deepEqual(sent('anthropic', up.body).map((m) => m[1]), ['stream me', text, 'again']);
});

test('another owner, another org: the same conversation_id is a conversation of its own', T, async () => {
  const id = 'mem-private';
  assert.equal((await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: 'SECRET-PRIVATE-42' }] })).status, 200);
  await waitTurns(id, 2);
  for (const key of [member2, otherOrgKey]) {
    await env.fake.reset();
    const r = await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: 'what did I say?' }] }, key);
    assert.equal(r.status, 200, r.text);
    const [up] = await env.fake.requests('openai');
    assert.doesNotMatch(JSON.stringify(up.body), /SECRET-PRIVATE-42/);
    const mine = await waitTurns(id, 2, key);
    assert.doesNotMatch(JSON.stringify(mine), /SECRET-PRIVATE-42/);
  }
});

const LONG = (tag) => `${tag} ${'word '.repeat(300)}`; // ~300 tokens

test('over the budget the oldest turns are summarized by the summary model, charged to the same key', T, async () => {
  const id = 'mem-summary';
  for (const tag of ['one', 'two']) {
    assert.equal((await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: LONG(tag) }] })).status, 200);
  }
  await waitTurns(id, 4);
  await env.fake.reset();
  await env.fake.next('gemini', 'reply', { content: 'SUMMARY-OF-ONE' });
  const r = await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: LONG('three') }] });
  assert.equal(r.status, 200, r.text);
  const [ask] = await env.fake.requests('gemini');
  assert.ok(ask, 'the summarizer was asked');
  assert.match(JSON.stringify(ask.body), /one word/);
  assert.doesNotMatch(JSON.stringify(ask.body), /two word/, 'the newest turns are kept word for word');
  const [up] = await env.fake.requests('openai');
  const texts = sent('openai', up.body);
  assert.equal(texts[0][0], 'system');
  assert.match(texts[0][1], /SUMMARY-OF-ONE/);
  assert.deepEqual(texts.slice(1).map((m) => m[1].split(' ')[0]), ['two', 'echo:', 'three']);
  const rid = r.headers.get('x-request-id');
  const row = await env.waitUsage(`${rid}.summary`);
  assert.equal(row.kind, 'summary');
  assert.equal(row.state, 'settled');
  assert.equal(row.model, 'gemini-2.5-flash-lite');
  assert.ok(row.cost_micros > 0);
  const main = await env.waitUsage(rid);
  assert.equal(row.key_row_id, main.key_row_id);
  const conv = await waitTurns(id, 6);
  assert.equal(conv.summary, 'SUMMARY-OF-ONE');
  assert.equal(conv.summarized_turns, 2);
  assert.equal(conv.messages.length, 6, 'every turn is still stored');
});

test('a failed summary loses no turn: the oldest are left out of what is sent', T, async () => {
  const id = 'mem-summary-fails';
  for (const tag of ['alpha', 'beta']) {
    assert.equal((await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: LONG(tag) }] })).status, 200);
  }
  await waitTurns(id, 4);
  await env.fake.reset();
  await env.fake.next('gemini', 'status', { status: 500 });
  const r = await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: LONG('gamma') }] });
  assert.equal(r.status, 200, r.text);
  const [up] = await env.fake.requests('openai');
  const texts = sent('openai', up.body).map((m) => m[1].split(' ')[0]);
  assert.equal(texts[texts.length - 1], 'gamma');
  assert.ok(!texts.includes('alpha'), `the oldest turn is cut from what is sent: ${texts}`);
  const row = await env.waitUsage(`${r.headers.get('x-request-id')}.summary`);
  assert.equal(row.state, 'failed');
  const conv = await waitTurns(id, 6);
  assert.equal(conv.messages.length, 6);
  assert.equal(conv.summary, null);
  assert.match(conv.messages[0].message.content, /^alpha/);
});

test('a subject session\'s conversations are its subject\'s: signed requests remember, list and read them', T, async () => {
  const origin = 'https://app.example.com';
  const clientId = await approvedClient(env, adminKey, env.superadminKey(), { name: 'chat app', origins: [origin] });
  const alice = await startSession(env, clientId, origin, 'alice');
  const bob = await startSession(env, clientId, origin, 'bob');
  const signed = (sess, method, path, body) => {
    const raw = body === undefined ? '' : JSON.stringify(body);
    return env.request(method, path, {
      rawBody: body === undefined ? undefined : raw,
      headers: { ...signedHeaders(sess, method, path, raw, origin), ...(body ? { 'content-type': 'application/json' } : {}) },
    });
  };
  const body = (content) => ({ model: 'gpt-4o', conversation_id: 'help', messages: [{ role: 'user', content }] });
  const first = await signed(alice, 'POST', '/v1/chat/completions', body('ALICE-SECRET'));
  assert.equal(first.status, 200, first.text);
  const deadline = Date.now() + 5000;
  let mine;
  for (;;) {
    mine = await signed(alice, 'GET', '/v1/conversations/help');
    if ((mine.status === 200 && mine.json.turns === 2) || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(mine.status, 200, mine.text);
  assert.equal(mine.json.messages[0].message.content, 'ALICE-SECRET');
  assert.equal(mine.headers.get('access-control-allow-origin'), origin);
  await env.fake.reset();
  assert.equal((await signed(bob, 'POST', '/v1/chat/completions', body('hello from bob'))).status, 200);
  const [up] = await env.fake.requests('openai');
  assert.doesNotMatch(JSON.stringify(up.body), /ALICE-SECRET/, 'another subject of the same app never sees it');
  assert.equal((await get('/v1/conversations/help')).status, 404, 'nor does the app\'s own API key');
  const pre = await env.request('OPTIONS', '/v1/conversations/help', {
    auth: false, headers: { origin, 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization, x-llmgw-signature' },
  });
  assert.equal(pre.status, 204, 'the browser may ask first');
  assert.equal(pre.headers.get('access-control-allow-origin'), origin);
  assert.match(pre.headers.get('access-control-allow-methods'), /DELETE/);
  const list = await signed(alice, 'GET', '/v1/conversations');
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(list.json.data.map((c) => c.id), ['help']);
});

test('what is remembered of a relayed answer is its first choice, escapes and all, whole or streamed', T, async () => {
  const said = 'quote " backslash \\ tab \t é 😀 \u2028 end';
  for (const stream of [false, true]) {
    const id = `mem-escapes-${stream}`;
    const body = { model: 'gpt-4o', n: 2, stream, conversation_id: id, messages: [{ role: 'user', content: said }] };
    const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { ...auth(env.apiKey), 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    let text;
    if (stream) {
      const { events } = await readSSE(res);
      text = events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data))
        .flatMap((c) => c.choices.filter((ch) => ch.index === 0)).map((ch) => (ch.delta && ch.delta.content) || '').join('');
    } else {
      const j = await res.json();
      assert.equal(j.choices.length, 2);
      text = j.choices[0].message.content;
    }
    assert.equal(text, `echo: ${said}`);
    const conv = await waitTurns(id, 2);
    assert.deepEqual(conv.messages.map((t) => t.message), [
      { role: 'user', content: said }, { role: 'assistant', content: text },
    ]);
  }
});

test('a request without conversation_id is captured as a conversation of its own', T, async () => {
  const r = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'captured once' }] });
  assert.equal(r.status, 200);
  const rid = r.headers.get('x-request-id');
  const conv = await waitTurns(rid, 2);
  assert.equal(conv.title, 'captured once');
  assert.equal(conv.shared, false);
});

test('the owner lists (newest first, paginated, searchable), shares, unshares; the org sees only what is shared', T, async () => {
  const key = await env.createKey('lister');
  for (const n of [1, 2, 3]) {
    assert.equal((await chat({ model: 'gpt-4o', conversation_id: `list-${n}`, messages: [{ role: 'user', content: `topic number ${n}` }] }, key)).status, 200);
    await waitTurns(`list-${n}`, 2, key);
  }
  let r = await get('/v1/conversations?limit=2', key);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.data.map((c) => c.id), ['list-3', 'list-2']);
  assert.ok(r.json.next_cursor);
  r = await get(`/v1/conversations?limit=2&cursor=${encodeURIComponent(r.json.next_cursor)}`, key);
  assert.deepEqual(r.json.data.map((c) => c.id), ['list-1']);
  assert.equal(r.json.next_cursor, null);
  r = await get('/v1/conversations?q=number%202', key);
  assert.deepEqual(r.json.data.map((c) => c.id), ['list-2']);

  r = await env.request('POST', '/v1/conversations/list-2/share', { headers: auth(key) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.shared, true);
  const ref = r.json.ref;
  assert.match(ref, /^cv_[0-9a-f]{24}$/);
  r = await get('/v1/org/conversations', member2);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.data.map((c) => c.ref), [ref]);
  r = await get(`/v1/org/conversations/${ref}`, member2);
  assert.equal(r.status, 200);
  assert.equal(r.json.messages[0].message.content, 'topic number 2');
  r = await get('/v1/org/conversations?q=topic', member2);
  assert.deepEqual(r.json.data.map((c) => c.ref), [ref]);
  // never outside the org, never what is not shared
  assert.equal((await get(`/v1/org/conversations/${ref}`, otherOrgKey)).status, 404);
  assert.deepEqual((await get('/v1/org/conversations', otherOrgKey)).json.data, []);
  assert.equal((await get('/v1/conversations/list-2', member2)).status, 404);
  r = await env.request('DELETE', '/v1/conversations/list-2/share', { headers: auth(key) });
  assert.equal(r.status, 200);
  assert.equal((await get(`/v1/org/conversations/${ref}`, member2)).status, 404);
  assert.deepEqual((await get('/v1/org/conversations', member2)).json.data, []);
});

test('guessed ids answer 404 on every route, for every other caller', T, async () => {
  const key = await env.createKey('guessed');
  assert.equal((await chat({ model: 'gpt-4o', conversation_id: 'guess-me', messages: [{ role: 'user', content: 'hidden' }] }, key)).status, 200);
  await waitTurns('guess-me', 2, key);
  const mine = await get('/v1/conversations/guess-me', key);
  for (const other of [member2, otherOrgKey, adminKey]) {
    assert.equal((await get('/v1/conversations/guess-me', other)).status, 404);
    assert.equal((await get(`/v1/org/conversations/${mine.json.ref}`, other)).status, 404);
    for (const [m, p] of [['DELETE', '/v1/conversations/guess-me'], ['POST', '/v1/conversations/guess-me/share'], ['DELETE', '/v1/conversations/guess-me/share']]) {
      assert.equal((await env.request(m, p, { headers: auth(other) })).status, 404, `${m} ${p}`);
    }
  }
  assert.equal((await get('/v1/conversations/guess-me', key)).json.shared, false, 'nobody shared it');
  assert.equal((await get('/v1/conversations/no-such-one', key)).status, 404);
  assert.equal((await get('/v1/conversations', 'llmgw_not_a_key')).status, 401);
});

test('delete: gone from reads, lists, search and exports, and from the database files', T, async () => {
  const marker = `ERASE-ME-${Date.now()}`;
  const id = 'to-delete';
  assert.equal((await chat({ model: 'gpt-4o', conversation_id: id, messages: [{ role: 'user', content: marker }] }, env.apiKey)).status, 200);
  await waitTurns(id, 2);
  assert.equal((await env.request('POST', `/v1/conversations/${id}/share`, { headers: auth(env.apiKey) })).status, 200);
  const rid = (await get(`/v1/conversations/${id}`)).json.messages[0].request_id;
  let r = await env.request('DELETE', `/v1/conversations/${id}`, { headers: auth(env.apiKey) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.deleted, true);
  assert.equal((await get(`/v1/conversations/${id}`)).status, 404);
  assert.equal((await env.request('DELETE', `/v1/conversations/${id}`, { headers: auth(env.apiKey) })).status, 404);
  assert.deepEqual((await get(`/v1/conversations?q=${marker}`)).json.data, []);
  assert.deepEqual((await get(`/v1/org/conversations?q=${marker}`, member2)).json.data, []);
  r = await get('/admin/v1/conversations/export?format=jsonl', adminKey);
  assert.equal(r.status, 200);
  assert.doesNotMatch(r.text, new RegExp(marker));
  // the usage row stays (it holds no content)
  assert.equal((await env.waitUsage(rid)).state, 'settled');
  if (!env.postgres) {
    for (const f of [env.dbPath, `${env.dbPath}-wal`]) {
      if (!fs.existsSync(f)) continue;
      assert.equal(fs.readFileSync(f).indexOf(marker), -1, `${f} still holds the deleted text`);
    }
  }
});

test('an org that does not capture stores nothing and refuses conversation_id', T, async () => {
  await env.cli(['orgs', 'update', 'globex', '--capture', 'off', '--db', env.db]);
  try {
    let r = await chat({ model: 'gpt-4o', conversation_id: 'nope', messages: [{ role: 'user', content: 'x' }] }, otherOrgKey);
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'conversation_capture_off');
    r = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'not kept' }] }, otherOrgKey);
    assert.equal(r.status, 200);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal((await get(`/v1/conversations/${r.headers.get('x-request-id')}`, otherOrgKey)).status, 404);
  } finally {
    await env.cli(['orgs', 'update', 'globex', '--capture', 'on', '--db', env.db]);
  }
});

test('export: org admins only, shared unless the policy allows all, audited', T, async () => {
  assert.equal((await get('/admin/v1/conversations/export?format=jsonl', env.apiKey)).status, 403);
  assert.equal((await get('/admin/v1/conversations/export?format=csv', adminKey)).status, 400);
  let r = await get('/admin/v1/conversations/export?format=jsonl&scope=all', adminKey);
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'export_all_not_allowed');
  assert.equal((await chat({ model: 'gpt-4o', conversation_id: 'exp-1', messages: [{ role: 'user', content: 'export me' }] })).status, 200);
  await waitTurns('exp-1', 2);
  assert.equal((await env.request('POST', '/v1/conversations/exp-1/share', { headers: auth(env.apiKey) })).status, 200);
  r = await get('/admin/v1/conversations/export?format=jsonl', adminKey);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /ndjson/);
  const lines = r.text.trim().split('\n').map((l) => JSON.parse(l));
  const line = lines.find((l) => l.conversation_id === 'exp-1');
  assert.ok(line, 'the shared conversation is exported');
  assert.equal(line.org, 'acme');
  assert.equal(line.messages[0].message.content, 'export me');
  assert.ok(lines.every((l) => l.shared === true));
  // by time: nothing before the epoch's first second
  r = await get('/admin/v1/conversations/export?format=jsonl&to=1', adminKey);
  assert.equal(r.text, '');
  // another org's admin sees nothing of acme's
  const { stdout } = await env.cli(['keys', 'create', '--org', 'globex', '--role', 'org_admin', '--db', env.db]);
  const globexAdmin = stdout.trim().split('\n').pop().trim();
  r = await get('/admin/v1/conversations/export?format=jsonl', globexAdmin);
  assert.doesNotMatch(r.text, /export me/);
  r = await get('/admin/v1/conversations/export?format=jsonl&org=acme', globexAdmin);
  assert.equal(r.status, 404);
  const audit = await env.query("SELECT actor, actor_role, action, target, request_id FROM audit_log WHERE action = 'conversations.export' AND target = 'acme'");
  assert.ok(audit.length >= 1);
  assert.equal(audit[0].actor_role, 'org_admin');
  assert.doesNotMatch(JSON.stringify(audit), /llmgw_/, 'no key in the audit trail');
  // the policy may allow all
  await env.cli(['orgs', 'update', 'acme', '--export-all', 'on', '--db', env.db]);
  r = await get('/admin/v1/conversations/export?format=jsonl&scope=all', adminKey);
  assert.equal(r.status, 200);
  assert.ok(r.text.trim().split('\n').map((l) => JSON.parse(l)).some((l) => l.shared === false));
  await env.cli(['orgs', 'update', 'acme', '--export-all', 'off', '--db', env.db]);
});

function rssKB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

test('an export of 10,000 conversations streams with bounded memory', { timeout: 120000 }, async () => {
  const [{ id: orgId }] = await env.query("SELECT id FROM orgs WHERE slug = 'acme'");
  const N = 10000;
  // ~2.4 kB of text per conversation, 24 MB in all: more than the bound below
  if (env.postgres) {
    await env.execSQL(`INSERT INTO conversations(ref, org_id, owner, conv_id, title, shared, turns, created_ms, updated_ms)
      SELECT 'cv_' || lpad(to_hex(i), 24, '0'), ${orgId}, 'key:seed', 'seed-' || i, 'seed ' || i, 1, 2, 1700000000000 + i, 1700000000000 + i FROM generate_series(1, ${N}) i;
      INSERT INTO conversation_turns(conv, seq, role, message, request_id, model, tokens, created_ms)
      SELECT c.id, s.seq, CASE s.seq WHEN 1 THEN 'user' ELSE 'assistant' END,
             json_build_object('role', CASE s.seq WHEN 1 THEN 'user' ELSE 'assistant' END, 'content', 'seed ' || c.id || ' ' || repeat(md5(c.id::text), 38))::text,
             '', '', 300, 1700000000000 FROM conversations c, generate_series(1, 2) s(seq) WHERE c.owner = 'key:seed'`);
  } else {
    await env.execSQL(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${N})
      INSERT INTO conversations(ref, org_id, owner, conv_id, title, shared, turns, created_ms, updated_ms)
      SELECT printf('cv_%024x', i), ${orgId}, 'key:seed', 'seed-' || i, 'seed ' || i, 1, 2, 1700000000000 + i, 1700000000000 + i FROM n;
      INSERT INTO conversation_turns(conv, seq, role, message, request_id, model, tokens, created_ms)
      SELECT c.id, s.seq, CASE s.seq WHEN 1 THEN 'user' ELSE 'assistant' END,
             json_object('role', CASE s.seq WHEN 1 THEN 'user' ELSE 'assistant' END, 'content', 'seed ' || c.id || ' ' || hex(randomblob(600))),
             '', '', 300, 1700000000000 FROM conversations c, (SELECT 1 AS seq UNION ALL SELECT 2) s WHERE c.owner = 'key:seed';`);
  }
  const pid = env.gw.pid;
  const before = rssKB(pid);
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, rssKB(pid)); }, 20);
  const t0 = Date.now();
  let lines = 0;
  let bytes = 0;
  let rest = '';
  try {
    // the seeded ones only (updated in 2023), up to their last second
    const res = await fetch(`${env.baseURL}/admin/v1/conversations/export?format=jsonl&to=1700000011`, { headers: auth(adminKey), signal: AbortSignal.timeout(100000) });
    assert.equal(res.status, 200);
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      bytes += chunk.length;
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split('\n');
      rest = parts.pop();
      for (const p of parts) {
        const o = JSON.parse(p);
        assert.equal(o.messages.length, 2);
        lines++;
      }
    }
  } finally {
    clearInterval(timer);
  }
  const secs = (Date.now() - t0) / 1000;
  assert.equal(rest, '');
  assert.equal(lines, N);
  const grewMB = (peak - before) / 1024;
  console.log(`# export: ${lines} conversations, ${(bytes / 1e6).toFixed(1)} MB in ${secs.toFixed(2)} s (${Math.round(lines / secs)} conversations/s); RSS grew ${grewMB.toFixed(1)} MB`);
  assert.ok(bytes > 20e6, `the export is large (${bytes} bytes)`);
  // (ThreadSanitizer's shadow memory grows with what is touched: the bound is ASan's build's)
  if (!/tsan/.test(process.env.LLMGW_E2E_BIN || '')) {
    assert.ok(grewMB < 16, `memory stays bounded while ${(bytes / 1e6).toFixed(1)} MB stream (grew ${grewMB.toFixed(1)} MB)`);
  }
});

test('a client that leaves an export midway costs the gateway nothing but the export', T, async () => {
  const ctl = new AbortController();
  const res = await fetch(`${env.baseURL}/admin/v1/conversations/export?format=jsonl&scope=shared`, { headers: auth(adminKey), signal: ctl.signal });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const first = await reader.read();
  assert.ok(first.value && first.value.length > 0);
  ctl.abort();
  await reader.read().catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
  const h = await env.request('GET', '/healthz', { auth: false });
  assert.equal(h.status, 200);
  const again = await get('/admin/v1/conversations/export?format=jsonl&to=1700000001', adminKey);
  assert.equal(again.status, 200);
  assert.equal(again.text.trim().split('\n').length, 999, 'the seeded conversations of the first second');
});

// last: it moves the gateway's clock two days on
test('retention: an org\'s conversations untouched for longer than its retention_days are deleted', T, async () => {
  await env.cli(['orgs', 'update', 'globex', '--retention-days', '1', '--db', env.db]);
  assert.equal((await chat({ model: 'gpt-4o', conversation_id: 'short-lived', messages: [{ role: 'user', content: 'forget me' }] }, otherOrgKey)).status, 200);
  await waitTurns('short-lived', 2, otherOrgKey);
  assert.equal((await chat({ model: 'gpt-4o', conversation_id: 'kept', messages: [{ role: 'user', content: 'keep me' }] })).status, 200);
  await waitTurns('kept', 2);
  await env.advanceClock(2 * 86400 * 1000);
  const deadline = Date.now() + 5000;
  let r;
  do {
    await new Promise((res) => setTimeout(res, 100));
    r = await get('/v1/conversations/short-lived', otherOrgKey);
  } while (r.status === 200 && Date.now() < deadline);
  assert.equal(r.status, 404, 'deleted by the purger');
  assert.equal((await get('/v1/conversations/kept')).status, 200, 'an org without retention keeps its own');
});
