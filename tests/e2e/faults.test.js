// tests/e2e/faults.test.js — upstream faults against the fake provider (issue 10, point 4):
// resets, hangs, silence, slow drip, truncated streams, oversized answers, invalid JSON, wrong
// content types and TLS failures, each for a non-streamed and a streamed request, on several
// providers' wire formats, with a key that may fall back and one that may not. The client gets
// the fallback's answer (a fault before any byte reached it), or the documented sanitized error
// (an SSE error event once the stream started) — never the provider's text, key or URL — and the
// usage rows say what DESIGN.md says. Then every fault many times over: the gateway's open files
// come back to the baseline, its memory stays bounded, it still serves, and LeakSanitizer has
// nothing to report at its exit (env.stop() fails on any sanitizer report).
//
// Faults are routed to their own request ({match} in the fake's script), so the cases run
// concurrently and the suite stays well under a minute.
'use strict';

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { startEnv, PROVIDER_MODELS, LEAK_MARKER, REQUEST_ID_RE, assertNoSecrets, sleep } = require('./harness');

// Short deadlines keep the timeout cases quick, with room for a loaded machine (a normal answer
// of the fake takes milliseconds); a drip writes every 10 ms, far under idle_ms.
const TIMEOUTS = { first_byte_ms: 2000, idle_ms: 1200, total_ms: 3500, connect_ms: 2000 };
const MAX_UPSTREAM = 65536;
const CONFIG = [
  'fallback: {backoff_ms: 20, backoff_max_ms: 40}',
  'breaker: {failure_threshold: 0}', // never opens: every fault reaches the fake (breaker.test.js)
].join('\n');
// The providers behind the TLS endpoints get time for their handshakes: with verification on,
// each new TLS connection costs ~50 ms of a worker's CPU (~150 ms under ASan), so a few at once
// on a loaded machine must still end in their TLS error, not in a timeout.
const tlsTimeouts = (...providers) => ['providers:',
  ...providers.map((p) => `  ${p}: {timeouts: {connect_ms: 20000, first_byte_ms: 20000, total_ms: 20000}}`)].join('\n');
const T = { timeout: 20000 };

// ------------------------------------------------------------------ TLS endpoints
// A self-signed certificate made now (never trusted by the gateway's CA store), and a plain
// HTTP port asked for TLS. Both answer with the leak marker if anything ever gets through.
const tls = { dir: null, untrusted: null, plain: null, hits: 0 };

async function startTlsEndpoints() {
  tls.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmgw-faults-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', path.join(tls.dir, 'key.pem'), '-out', path.join(tls.dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
  { stdio: 'ignore', timeout: 10000 });
  const answer = (req, res) => {
    tls.hits += 1;
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`${LEAK_MARKER}: this endpoint must never be talked to`);
  };
  tls.untrusted = https.createServer({
    key: fs.readFileSync(path.join(tls.dir, 'key.pem')),
    cert: fs.readFileSync(path.join(tls.dir, 'cert.pem')),
  }, answer);
  tls.untrusted.on('tlsClientError', () => {}); // the gateway refusing the certificate
  tls.plain = http.createServer(answer); // answers a TLS ClientHello with HTTP's 400
  for (const s of [tls.untrusted, tls.plain]) await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  tls.untrustedURL = `https://127.0.0.1:${tls.untrusted.address().port}`;
  tls.plainURL = `https://127.0.0.1:${tls.plain.address().port}`;
}

async function stopTlsEndpoints() {
  for (const s of [tls.untrusted, tls.plain]) {
    if (s) {
      s.closeAllConnections?.();
      await new Promise((resolve) => s.close(resolve));
    }
  }
  if (tls.dir) fs.rmSync(tls.dir, { recursive: true, force: true });
}

// ------------------------------------------------------------------ the faults
const MODELS = PROVIDER_MODELS;
// Each model's first fallback (catalog/routing.yaml) and who serves it; null: every target of
// the chain is on the same broken provider (the Sonar models only fall back to each other).
const FALLBACK = {
  'gpt-4o': { model: 'claude-sonnet-4-6', provider: 'anthropic' },
  'claude-sonnet-4-6': { model: 'gpt-5.4', provider: 'openai' },
  'gemini-2.5-flash': { model: 'gpt-4o-mini', provider: 'openai' },
  'grok-3': { model: 'gpt-4o', provider: 'openai' },
  'sonar-pro': null,
};

// Outcomes for a client that may not fall back. pre: the fault came before any byte reached the
// client, so a fallback may serve instead; state: the usage row's (cost: "reserved" = charged
// at the reservation, 0 = nothing).
const err = (status, code, state = 'failed', cost) => ({ kind: 'error', status, code, state, cost, pre: true });
const sseErr = (code) => ({ kind: 'sse', code, state: 'failed', pre: false });
const served = () => ({ kind: 'ok', state: 'settled', pre: false });

const FAKE_PROVIDERS = ['openai', 'anthropic', 'gemini'];
const LONG = ` ${'drip '.repeat(600)}`; // a 3 kB answer: its drip lasts far longer than total_ms

// wait: the case takes at least this long (a deadline), and at most that plus some seconds.
const FAULTS = [
  { id: 'reset', what: 'connection reset (FIN) before any answer', providers: FAKE_PROVIDERS,
    N: { script: ['reset'], exp: err(502, 'uncertain_upstream_state', 'uncertain', 'reserved') },
    S: { script: ['reset'], exp: err(502, 'uncertain_upstream_state', 'uncertain', 'reserved') } },
  { id: 'rst', what: 'TCP RST before any answer', providers: FAKE_PROVIDERS,
    N: { script: ['reset', { rst: true }], exp: err(502, 'uncertain_upstream_state', 'uncertain', 'reserved') },
    S: { script: ['reset', { rst: true }], exp: err(502, 'uncertain_upstream_state', 'uncertain', 'reserved') } },
  { id: 'rst-mid', what: 'TCP RST mid-answer', providers: FAKE_PROVIDERS,
    N: { script: ['truncate', { mode: 'rst' }], exp: err(502, 'upstream_bad_response') },
    S: { script: ['truncate', { mode: 'rst' }], exp: sseErr('upstream_stream_interrupted') } },
  { id: 'hang', what: 'no first byte (first_byte_ms)', providers: FAKE_PROVIDERS, slow: true,
    N: { script: ['hang'], exp: err(504, 'upstream_timeout', 'uncertain', 'reserved'), wait: TIMEOUTS.first_byte_ms },
    S: { script: ['hang'], exp: err(504, 'upstream_timeout', 'uncertain', 'reserved'), wait: TIMEOUTS.first_byte_ms } },
  { id: 'silent', what: 'silent after the first bytes (idle_ms)', providers: FAKE_PROVIDERS, slow: true,
    N: { script: ['stall'], exp: err(504, 'upstream_timeout'), wait: TIMEOUTS.idle_ms },
    S: { script: ['stall'], exp: sseErr('upstream_timeout'), wait: TIMEOUTS.idle_ms } },
  { id: 'drip', what: 'slow drip under idle_ms past total_ms', providers: FAKE_PROVIDERS, slow: true, long: true,
    N: { script: ['drip', { ms: 10, bytes: 8 }], exp: err(504, 'upstream_timeout'), wait: TIMEOUTS.total_ms },
    S: { script: ['drip', { ms: 10, bytes: 8, events: 20 }], exp: sseErr('upstream_timeout'), wait: TIMEOUTS.total_ms } },
  { id: 'trunc-end', what: 'clean end without the end marker', providers: FAKE_PROVIDERS,
    N: { script: ['truncate', { mode: 'end' }], exp: err(502, 'upstream_bad_response') },
    S: { script: ['truncate'], exp: sseErr('upstream_stream_interrupted') } },
  { id: 'trunc-destroy', what: 'socket destroyed mid-answer', providers: FAKE_PROVIDERS,
    N: { script: ['truncate'], exp: err(502, 'upstream_bad_response') },
    S: { script: ['truncate', { mode: 'destroy' }], exp: sseErr('upstream_stream_interrupted') } },
  { id: 'oversized', what: `answer / one stream event over max_upstream_body_bytes (${MAX_UPSTREAM})`, providers: FAKE_PROVIDERS,
    N: { script: ['huge', { bytes: MAX_UPSTREAM + 4096 }], exp: err(502, 'upstream_bad_response') },
    S: { script: ['huge', { bytes: MAX_UPSTREAM + 4096 }], exp: sseErr('upstream_bad_response') } },
  { id: 'stream-total', what: 'a stream over max_upstream_body_bytes in small events (the limit is per event)', providers: FAKE_PROVIDERS,
    S: { script: ['huge', { bytes: 2 * MAX_UPSTREAM, events: 32 }], exp: served(), content: `echo: ${'x'.repeat(2 * MAX_UPSTREAM)}` } },
  { id: 'badjson', what: 'invalid JSON (body / first stream event)', providers: FAKE_PROVIDERS,
    N: { script: ['badjson'], exp: err(502, 'upstream_bad_response') },
    S: { script: ['badjson'], exp: err(502, 'upstream_bad_response') } },
  { id: 'badjson-mid', what: 'invalid JSON in a stream event mid-stream', providers: FAKE_PROVIDERS,
    S: { script: ['badjson', { mid: true }], exp: sseErr('upstream_bad_response') } },
  { id: 'html', what: 'a 200 text/html page', providers: FAKE_PROVIDERS,
    N: { script: ['ctype', { shape: 'html' }], exp: err(502, 'upstream_bad_response') },
    S: { script: ['ctype', { shape: 'html' }], exp: err(502, 'upstream_bad_response') } },
  { id: 'json-for-stream', what: 'application/json answering a stream request', providers: FAKE_PROVIDERS,
    S: { script: ['ctype', { shape: 'json' }], exp: err(502, 'upstream_bad_response') } },
  { id: 'sse-for-whole', what: 'text/event-stream answering a non-stream request', providers: FAKE_PROVIDERS,
    N: { script: ['ctype', { shape: 'sse' }], exp: err(502, 'upstream_bad_response') } },
  // TLS: the provider's base URL is the endpoint (see the environments below); nothing scripted.
  { id: 'tls-untrusted', what: 'https with a self-signed certificate', providers: ['xai'], tls: true, slow: true,
    N: { exp: err(502, 'upstream_error', 'failed', 0) },
    S: { exp: err(502, 'upstream_error', 'failed', 0) } },
  { id: 'tls-plain', what: 'https to a port that speaks plain HTTP', providers: ['perplexity'], tls: true, slow: true,
    N: { exp: err(502, 'upstream_error', 'failed', 0) },
    S: { exp: err(502, 'upstream_error', 'failed', 0) } },
];

// ------------------------------------------------------------------ client side
// One request on a connection of its own (closed after the answer), so that the gateway's
// client-side descriptors are gone once every answer is in.
function call(env, { key, model, stream, content, timeoutMs = 15000 }) {
  const body = JSON.stringify({ model, stream, ...(stream ? { stream_options: { include_usage: true } } : {}),
    messages: [{ role: 'user', content }] });
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const req = http.request(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      timeout: timeoutMs,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close',
        'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        text: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error(`no complete answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

function parseSSE(text) {
  const events = [];
  let done = false;
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
    if (data.length === 0) continue;
    const ev = { data: data.join('\n') };
    if (ev.data === '[DONE]') done = true;
    else try { ev.json = JSON.parse(ev.data); } catch { /* raw */ }
    events.push(ev);
  }
  return { events, done };
}

const isSSE = (r) => /text\/event-stream/.test(r.headers['content-type'] || '');
const deltas = (events) => events.map((e) => e.json?.choices?.[0]?.delta?.content || '').join('');

// Nothing of the provider in the answer: its error text, its key, its address.
function checkClean(r, env) {
  const blob = `${r.text}\n${JSON.stringify(r.headers)}`;
  assert.ok(!blob.includes(LEAK_MARKER) && !blob.includes('shard-7'), 'no provider text reaches the client');
  for (const port of [env.fake.port, tls.untrusted.address().port, tls.plain.address().port]) {
    assert.ok(!new RegExp(`:${port}(?!\\d)`).test(blob), `no upstream address (port ${port}) in the answer`);
  }
  assert.ok(!blob.includes('127.0.0.1') && !blob.includes('localhost'), 'no upstream host in the answer');
  assert.ok(!/https?:\/\//.test(blob), 'no URL in the answer');
  assert.ok(!blob.includes('fake-'), 'no provider credential in the answer');
  assertNoSecrets(assert, blob);
}

// The answer matches exp (for the key kind used); returns the request id.
function checkAnswer(r, exp, c) {
  const rid = r.headers['x-request-id'];
  assert.match(rid || '', REQUEST_ID_RE, 'X-Request-Id');
  const where = `${r.status} ${r.text.slice(0, 300)}`;
  if (exp.kind === 'error') {
    assert.equal(r.status, exp.status, `status (${where})`);
    assert.match(r.headers['content-type'] || '', /application\/json/, 'a plain JSON error, no SSE');
    const e = JSON.parse(r.text).error;
    assert.equal(e.code, exp.code, `error.code (${where})`);
    assert.equal(typeof e.type, 'string');
    assert.ok(typeof e.message === 'string' && e.message.length > 0);
    assert.equal(e.request_id, rid);
  } else if (exp.kind === 'sse') {
    assert.equal(r.status, 200, where);
    assert.ok(isSSE(r), `an event stream (${r.headers['content-type']})`);
    const { events, done } = parseSSE(r.text);
    assert.equal(done, false, 'no [DONE] after a fault');
    assert.ok(events.some((e) => e.json?.choices), 'the stream had begun: chunks before the fault');
    assert.ok(`echo: ${c.prompt}`.startsWith(deltas(events)), 'what came before the fault is relayed as it was');
    const last = events[events.length - 1];
    assert.equal(last?.json?.error?.code, exp.code, `the terminal error event (${last && last.data})`);
    assert.equal(typeof last.json.error.message, 'string');
    assert.equal(last.json.error.request_id, rid);
    assert.ok(!events.some((e) => e.json?.choices?.[0]?.finish_reason === 'stop'), 'no clean finish');
  } else { // ok: served (by the fallback when c.fb)
    assert.equal(r.status, 200, where);
    const want = c.content || `echo: ${c.prompt}`;
    const model = c.fb ? c.fb.model : c.model;
    if (c.stream) {
      assert.ok(isSSE(r));
      const { events, done } = parseSSE(r.text);
      assert.equal(done, true, 'a complete stream ends with [DONE]');
      assert.equal(deltas(events), want, 'the whole answer');
      for (const e of events) if (e.json?.choices) assert.equal(e.json.model, model);
    } else {
      const j = JSON.parse(r.text);
      assert.equal(j.choices[0].message.content, want);
      assert.equal(j.model, model);
      assert.equal(j.provider, c.fb ? c.fb.provider : c.provider);
      assert.equal(j.route_method, c.fb ? 'fallback' : 'explicit');
    }
    if (c.fb) {
      assert.match(r.headers['x-llmgw-fallback'] || '', new RegExp(`^${c.model}: ${c.provider} \\w+`), 'X-LLMGW-Fallback');
      assert.equal(r.headers['x-llmgw-attempts'], '2');
    }
  }
  return rid;
}

// The usage rows of these requests and of their attempts, by request id: one query, once no row
// is still reserved (settlement is written just after the answer, in batches).
async function rowsOf(env, rids) {
  await env.usageTotals();
  const byId = new Map();
  for (let i = 0; i < rids.length; i += 300) {
    const ids = rids.slice(i, i + 300).flatMap((r) => [`'${r}'`, `'${r}.1'`]).join(',');
    for (const row of await env.query(`SELECT * FROM usage WHERE request_id IN (${ids})`)) byId.set(row.request_id, row);
  }
  return byId;
}

// What the usage rows say: the request's row, and with a fallback the failed attempt's own row.
function checkRows(rows, rid, exp, c) {
  const row = rows.get(rid);
  assert.ok(row, 'a usage row');
  if (c.fb) {
    assert.equal(row.state, 'settled', 'the request served by the fallback is settled');
    assert.equal(row.provider, c.fb.provider);
    assert.equal(row.route_method, 'fallback');
    assert.equal(row.attempts, 2);
    const a = rows.get(`${rid}.1`);
    assert.ok(a, 'the failed attempt keeps its own row');
    assert.equal(a.kind, 'attempt');
    assert.equal(a.provider, c.provider);
    checkFailedRow(a, exp);
    return;
  }
  assert.equal(row.provider, c.provider);
  assert.equal(row.attempts, 1, 'no other target tried');
  if (exp.kind === 'ok') {
    assert.equal(row.state, 'settled');
    assert.ok(row.cost_micros > 0);
  } else {
    checkFailedRow(row, exp);
  }
}

function checkFailedRow(row, exp) {
  assert.equal(row.state, exp.state, `row state (${JSON.stringify(row)})`);
  assert.equal(row.error_code, exp.code, 'row error_code');
  assert.ok(row.reserved_micros > 0, 'it was reserved before the call');
  if (exp.cost === 'reserved') assert.equal(row.cost_micros, row.reserved_micros, 'an unknown outcome is charged at its reservation');
  else if (exp.cost === 0) assert.equal(row.cost_micros, 0, 'a call that never left costs nothing');
  else assert.ok(row.cost_micros > 0 && row.cost_micros <= row.reserved_micros, 'a broken answer is charged, within its reservation');
}

// The cases of a fault for a provider: [{...}] for the modes it has, with each key kind.
function casesOf(f, provider, keyKinds = ['solo', 'fallback']) {
  const out = [];
  for (const mode of ['N', 'S']) {
    const m = f[mode];
    if (!m) continue;
    // a chain all on the broken provider (Sonar) would be 3 broken calls: the key kind is moot
    const kinds = FALLBACK[MODELS[provider]] === null ? ['solo'] : keyKinds;
    for (const keyKind of kinds) {
      const model = MODELS[provider];
      const fbPossible = keyKind === 'fallback' && m.exp.pre && FALLBACK[model];
      out.push({
        fault: f, mode, provider, model, keyKind, m,
        stream: mode === 'S',
        fb: fbPossible ? FALLBACK[model] : null,
        content: m.content,
      });
    }
  }
  return out;
}

let seq = 0;
// Give the case its own token (in its prompt) and return its scripted fault (null: none).
function prepare(c) {
  seq += 1;
  const tok = `[[f${seq}-${c.fault.id}]]`;
  c.prompt = `fault ${tok}${c.fault.long ? LONG : ''}`;
  if (!c.m.script) return null;
  const [action, extra] = c.m.script;
  return { provider: c.provider, action, ...(extra || {}), match: tok };
}

// Run one case and check its answer; strict adds the timing checks (the matrix; the soak only
// checks outcomes). scripted: prepare() was done and its fault queued. Returns the request id
// (the rows are checked together, checkAllRows).
async function runCase(env, keys, c, strict, scripted = false) {
  if (!scripted) {
    const s = prepare(c);
    if (s) await env.fake.nextAll([s]);
  }
  const key = c.keyKind === 'solo' ? keys[c.model] : env.apiKey;
  const r = await call(env, { key, model: c.model, stream: c.stream, content: c.prompt });
  const rid = r.headers['x-request-id'];
  try {
    checkClean(r, env);
    checkAnswer(r, c.fb ? served() : c.m.exp, c);
    if (strict && c.m.wait) {
      assert.ok(r.ms >= c.m.wait - 50, `not before the deadline (${r.ms} ms, deadline ${c.m.wait} ms)`);
      assert.ok(r.ms < c.m.wait + 4000, `ended by the deadline (${r.ms} ms, deadline ${c.m.wait} ms)`);
    }
  } catch (e) {
    // the gateway's own account of this request, for the failure report
    const lines = env.log().split('\n').filter((l) => rid && l.includes(rid));
    e.message += `\n(${r.ms} ms) gateway log for ${rid}:\n${lines.join('\n').slice(0, 3000)}`;
    throw e;
  }
  return rid;
}

// Check the rows of every case run: [{rid, c}]; returns the mismatches (at most 10).
async function checkAllRows(env, ran) {
  const rows = await rowsOf(env, ran.map((x) => x.rid));
  const bad = [];
  for (const { rid, c } of ran) {
    try {
      checkRows(rows, rid, c.m.exp, c);
    } catch (e) {
      if (bad.length < 10) bad.push(`${caseName(c)} [${rid}]: ${e.message.split('\n')[0]}`);
    }
  }
  return bad;
}

function caseName(c) {
  const e = c.fb ? `served by ${c.fb.model} (${c.fb.provider})`
    : c.m.exp.kind === 'error' ? `${c.m.exp.status} ${c.m.exp.code}`
      : c.m.exp.kind === 'sse' ? `SSE error event ${c.m.exp.code}` : '200, served in full';
  return `${c.fault.id} (${c.fault.what}) · ${c.provider} · ${c.stream ? 'stream' : 'non-stream'} · ` +
    `${c.keyKind === 'solo' ? 'no fallback' : 'fallback allowed'} → ${e}`;
}

// A key per model that may use only that model: its requests cannot fall back.
async function soloKeys(env, models) {
  const made = await Promise.all(models.map((m) => env.createKey(`solo-${m}`, ['--models', m])));
  return Object.fromEntries(models.map((m, i) => [m, made[i]]));
}

// ------------------------------------------------------------------ descriptors and memory
// The gateway's descriptors: TCP sockets to the upstreams, to clients, and everything else.
function fdSnapshot(env) {
  const pid = env.gw.pid;
  const inodes = new Map();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const p = line.trim().split(/\s+/);
      if (p.length < 10) continue;
      inodes.set(p[9], { lport: parseInt(p[1].split(':')[1], 16), rport: parseInt(p[2].split(':')[1], 16) });
    }
  }
  const upstreamPorts = new Set([env.fake.port, tls.untrusted.address().port, tls.plain.address().port]);
  const snap = { total: 0, upstream: 0, client: 0, other: 0 };
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let link = '';
    try { link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; } // closed meanwhile
    snap.total += 1;
    const m = /^socket:\[(\d+)\]$/.exec(link);
    const s = m && inodes.get(m[1]);
    if (s && upstreamPorts.has(s.rport)) snap.upstream += 1;
    else if (s && s.lport === env.port && s.rport !== 0) snap.client += 1;
    else snap.other += 1;
  }
  return snap;
}

// CPU seconds a process has used (user + system).
function cpuS(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function rssKB(env) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${env.gw.pid}/status`, 'utf8'));
  return Number(m[1]);
}

async function pool(items, n, fn) {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) {
      const it = items[i++];
      await fn(it);
    }
  }));
}

// ------------------------------------------------------------------ the main gateway
// openai, anthropic and gemini on the fake; xai behind the self-signed certificate; perplexity
// at https:// on a plain HTTP port.
let env;
let keys;
// The second gateway (TLS on the anthropic and gemini wire formats, at the end), started with
// the first: anthropic behind the self-signed certificate, gemini at https:// on the plain HTTP
// port; openai on its fake serves their fallbacks.
let env2;
let keys2;
const scripted = { n: 0 };

async function startEnv2() {
  env2 = await startEnv({
    timeouts: TIMEOUTS,
    extraConfig: `${CONFIG}\n${tlsTimeouts('anthropic', 'gemini')}`,
    env: { LLMGW_ANTHROPIC_BASE_URL: tls.untrustedURL, LLMGW_GEMINI_BASE_URL: tls.plainURL },
  });
  keys2 = await soloKeys(env2, ['claude-sonnet-4-6', 'gemini-2.5-flash']);
}

before(async () => {
  await startTlsEndpoints();
  const second = startEnv2();
  env = await startEnv({
    timeouts: TIMEOUTS,
    limits: { max_upstream_body_bytes: MAX_UPSTREAM },
    extraConfig: `${CONFIG}\n${tlsTimeouts('xai', 'perplexity')}`,
    env: {
      LLMGW_XAI_BASE_URL: tls.untrustedURL,
      LLMGW_PERPLEXITY_BASE_URL: tls.plainURL,
      // a small quarantine: RSS then shows live memory, not ASan's store of freed blocks
      ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || 'detect_leaks=1'}:quarantine_size_mb=16`,
    },
  });
  keys = await soloKeys(env, Object.values(MODELS));
  await second;
}, { timeout: 60000 });

after(async () => {
  // both stopped (each reports its own sanitizer findings), then the endpoints
  const stops = await Promise.allSettled([env && env.stop(), env2 && env2.stop()]);
  await stopTlsEndpoints();
  for (const s of stops) if (s.status === 'rejected') throw s.reason;
}, { timeout: 30000 });

// The cases of these faults: without fallback on each provider, with fallback on one of them
// (in turn, so that each wire format has its share); slow ones first, so that their waits
// overlap the quick ones.
function matrix(faults) {
  const cases = [];
  faults.forEach((f, i) => {
    f.providers.forEach((p, j) => {
      const kinds = j === i % f.providers.length ? ['solo', 'fallback'] : ['solo'];
      cases.push(...casesOf(f, p, kinds));
    });
  });
  return cases.sort((a, b) => Number(!!b.fault.slow) - Number(!!a.fault.slow));
}

// The TLS faults on the anthropic and gemini wire formats, on the second gateway.
const TLS2 = [
  { ...FAULTS.find((f) => f.id === 'tls-untrusted'), providers: ['anthropic'] },
  { ...FAULTS.find((f) => f.id === 'tls-plain'), providers: ['gemini'] },
];

// At most n of fn at once.
function limiter(n) {
  let running = 0;
  const waiting = [];
  return async (fn) => {
    while (running >= n) await new Promise((resolve) => waiting.push(resolve));
    running += 1;
    try {
      return await fn();
    } finally {
      running -= 1;
      if (waiting.length) waiting.shift()();
    }
  };
}

const ran = [];
const ran2 = [];
// Concurrent: most cases wait for a deadline. The TLS cases go in lanes, one at a time on this
// gateway and two on the second: a TLS handshake holds its worker's loop for its CPU time, and
// the other cases (and the fallbacks) have deadlines.
const tlsLane = limiter(1);
const tls2Lane = limiter(2);
describe('fault matrix: every fault × wire format × stream or not × fallback or not', { concurrency: 24 }, () => {
  for (const c of matrix(FAULTS)) {
    test(caseName(c), T, async () => {
      if (c.m.script) scripted.n += 1;
      const run = () => runCase(env, keys, c, true);
      ran.push({ rid: await (c.fault.tls ? tlsLane(run) : run()), c });
    });
  }
  for (const c of matrix(TLS2)) {
    test(`${caseName(c)} [second gateway]`, T, async () => {
      ran2.push({ rid: await tls2Lane(() => runCase(env2, keys2, c, true)), c });
    });
  }
});

describe('after the matrix', () => {
  test('the usage rows: a fault that may have run is charged at its reservation (uncertain), a broken answer its estimate (failed), a call that never left nothing; a fallback keeps the failed attempt\'s row', T, async () => {
    assert.deepEqual(await checkAllRows(env, ran), []);
    assert.deepEqual(await checkAllRows(env2, ran2), [], 'second gateway');
  });

  test('every scripted fault was delivered, and nothing reached the TLS endpoints', T, async () => {
    const got = (await env.fake.requests()).filter((q) => q.action !== null).length;
    assert.equal(got, scripted.n, 'each scripted fault was answered to its own request');
    assert.equal(tls.hits, 0, 'no request went through an untrusted or broken TLS connection');
  });

  test('the logs name the faults but hold no provider key and no raw API key', T, async () => {
    assertNoSecrets(assert, env2.log(), [env2.apiKey, ...Object.values(keys2)]);
    const log = env.log();
    assertNoSecrets(assert, log, [env.apiKey, ...Object.values(keys)]);
    assert.match(log, /provider=xai .*curl=60 /, 'the untrusted certificate is logged as such');
    assert.match(log, /provider=perplexity .*curl=35 /, 'so is the failed handshake');
    assert.match(log, /answered a stream request with another content type/);
  });
});

// curl found its pooled connection dead after sending and wanted to send the request again: the
// gateway refuses that resend (the provider may have run the first copy), so the outcome is
// unknown. It was answered as "could not be reached" (never sent: nothing charged, the
// idempotency key given back, any fallback tried, tools or not) whenever the resend would have
// gone out on another pooled connection, which has no connect time of its own.
test('a reset after sending on a pooled connection, with more idle connections pooled → uncertain, never "not sent"', { timeout: 30000 }, async () => {
  const got = [];
  for (let round = 0; round < 4; round++) {
    // fill both workers' pools: 12 transfers at once (each held 200 ms by the fake)
    await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const tok = `[[pool${round}-${i}]]`;
      await env.fake.next('openai', 'delay', { ms: 200, match: tok });
      const r = await call(env, { key: keys['gpt-4o'], model: 'gpt-4o', stream: false, content: `warm ${tok}` });
      assert.equal(r.status, 200, r.text);
    }));
    const tok = `[[pooled-reset${round}]]`;
    await env.fake.next('openai', 'reset', { match: tok });
    const r = await call(env, { key: keys['gpt-4o'], model: 'gpt-4o', stream: false, content: `reset ${tok}` });
    checkClean(r, env);
    got.push({ rid: r.headers['x-request-id'], code: JSON.parse(r.text).error?.code });
  }
  assert.deepEqual(got.map((g) => g.code), Array(4).fill('uncertain_upstream_state'),
    `each reset is an unknown outcome (${JSON.stringify(got)})`);
  const rows = await rowsOf(env, got.map((g) => g.rid));
  for (const { rid } of got) {
    const row = rows.get(rid);
    assert.equal(row.state, 'uncertain');
    assert.equal(row.cost_micros, row.reserved_micros, 'charged at its reservation');
  }
});

// ------------------------------------------------------------------ soak: every fault, many times
const ROUNDS = 50;
const SLOW_EVERY = 5; // the timeouts every 5th round (10 times each),
const TLS_EVERY = 25; // the TLS handshakes (~150 ms of ASan CPU each) every 25th (and the warm-up)
const CONC = 16;

// Every fault once (the slow ones, and a normal request, each SLOW_EVERY-th round, TLS each
// TLS_EVERY-th), its mode, provider and key kind rotating so that the rounds go through every
// combination.
function soakRound(r) {
  const cases = [];
  const normal = { id: 'normal', what: 'no fault', providers: FAKE_PROVIDERS, N: { exp: served() }, S: { exp: served() }, slow: true };
  [...FAULTS, normal].forEach((f, i) => {
    if ((f.slow && r % SLOW_EVERY !== 0) || (f.tls && r % TLS_EVERY !== 0)) return;
    const modes = ['N', 'S'].filter((m) => f[m]);
    const k = r + i;
    const keyKind = Math.floor(k / 6) % 2 === 0 ? 'solo' : 'fallback';
    const c = casesOf(f, f.providers[k % f.providers.length], [keyKind]);
    cases.push(c.find((x) => x.mode === modes[k % modes.length]));
  });
  return cases;
}

test(`soak: ${ROUNDS} rounds of the mixed faults → descriptors back to the baseline, RSS bounded, rows as designed, still serving`, { timeout: 120000 }, async () => {
  const failures = [];
  const runAll = async (cases) => {
    const done = [];
    const scripts = cases.map(prepare).filter(Boolean);
    for (let i = 0; i < scripts.length; i += 200) await env.fake.nextAll(scripts.slice(i, i + 200));
    const one = async (c) => {
      try {
        done.push({ rid: await runCase(env, keys, c, false, true), c });
      } catch (e) {
        if (failures.length < 10) failures.push(`${caseName(c)}: ${e.message.slice(0, 1500)}`);
      }
    };
    // the TLS handshakes in a lane of their own (one at a time), beside the rest
    await Promise.all([pool(cases.filter((c) => !c.fault.tls), CONC - 1, one),
      pool(cases.filter((c) => c.fault.tls), 1, one)]);
    return done;
  };
  // settled: every answer in, no row still reserved, the gateway done closing what it closes
  const settle = async () => {
    await env.usageTotals();
    await sleep(300);
  };

  // warm-up: two rounds with every fault (lazy set-up, curl's and the store's caches)
  await runAll([...soakRound(0), ...soakRound(SLOW_EVERY)]);
  await settle();
  const fd0 = fdSnapshot(env);
  const rss0 = rssKB(env);
  const t0 = Date.now();
  const pids = [env.gw.pid, env.fake.child.pid, process.pid];
  const cpu0 = pids.map(cpuS);
  const cases = [];
  for (let r = 1; r <= ROUNDS; r++) cases.push(...soakRound(r));
  const done = await runAll(cases);
  const soakMs = Date.now() - t0;
  const cpu = pids.map((p, i) => (cpuS(p) - cpu0[i]).toFixed(1)).join('/');
  await settle();
  const fd1 = fdSnapshot(env);
  const rss1 = rssKB(env);
  const summary = `${cases.length} requests in ${soakMs} ms (CPU s gateway/fake/test ${cpu}); fds ${JSON.stringify(fd0)} → ${JSON.stringify(fd1)}; ` +
    `RSS ${(rss0 / 1024).toFixed(1)} MB → ${(rss1 / 1024).toFixed(1)} MB`;
  process.stdout.write(`# faults soak: ${summary}\n`);
  assert.deepEqual(failures, [], `every fault answered as in the matrix (${summary})`);
  assert.equal(env.exitInfo(), null, 'the gateway is alive');

  // Descriptors: no client connection is left (each request closed its own); everything that is
  // not a TCP connection (files, the listener, pipes, timers) is back to the baseline, but for 2
  // (a store file or a timer that may be open at the moment of a snapshot); connections to the
  // upstreams are the workers' curl keep-alive pools to the fake: at most one per transfer in
  // flight at once, so at most CONC per worker (2 workers), however many requests ran.
  assert.equal(fd1.client, 0, `no client connection left open (${summary})`);
  assert.ok(fd1.other <= fd0.other + 2, `other descriptors back to the baseline (${summary})`);
  assert.ok(fd1.upstream <= 2 * CONC, `upstream connections bounded by the keep-alive pools (${summary})`);
  // Memory: ASan's quarantine is 16 MB here (freed blocks it keeps), and its allocator keeps
  // what it once mapped; allowing 24 MB of growth over ~650 requests catches a leak of 40 kB a
  // request (an oversized answer is 68 kB, a long stream 128 kB), and LeakSanitizer at exit
  // anything smaller that is lost.
  assert.ok(rss1 - rss0 <= 24 * 1024, `RSS growth bounded by 24 MB (${summary})`);

  // the rows are as in the matrix, and none is left reserved
  assert.deepEqual(await checkAllRows(env, done), [], 'usage rows as designed');
  assert.deepEqual(await env.queryRows("state = 'reserved'"), [], 'no usage row left reserved');

  // still serving
  const ok = await call(env, { key: env.apiKey, model: 'gpt-4o', stream: false, content: 'still there?' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(JSON.parse(ok.text).choices[0].message.content, 'echo: still there?');
  const hz = await env.request('GET', '/healthz', { auth: false });
  assert.equal(hz.status, 200);
});
