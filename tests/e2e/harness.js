// tests/e2e/harness.js — starts the fake upstream and one llmgw gateway for a test file.
//
//   const { startEnv } = require('./harness');
//   let env;
//   before(async () => { env = await startEnv(); });
//   after(async () => { await env.stop(); });
//
// env: { baseURL, apiKey, port, tmp, db, dbPath, fake: {url, next, nextAll, requests, reset, clear},
//        log(), superadminKey(), createKey(name), revokeKey(keyId), listKeys(), usageRow(id), waitUsage(id, opts),
//        client(opts) (official openai client), request(method, path, opts), stop() }
// startEnv options: timeouts {first_byte_ms, total_ms, ...} and limits {max_body_bytes,
//   max_upstream_body_bytes, ...} (merged into the config's defaults), extraConfig (more YAML
//   lines), env (more environment, e.g. LLMGW_<P>_BASE_URL), omitProviders, postgres.
'use strict';

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..');
// LLMGW_E2E_BIN overrides the binary (e.g. a build elsewhere); cwd stays the repo root.
const BIN = process.env.LLMGW_E2E_BIN ? path.resolve(process.env.LLMGW_E2E_BIN) : path.join(ROOT, 'build', 'llmgw');
const FAKE = path.join(ROOT, 'tests', 'fake', 'server.js');
const CATALOG = path.join(ROOT, 'catalog', 'models.yaml');

const PROVIDERS = ['openai', 'anthropic', 'gemini', 'xai', 'perplexity'];
const FAKE_KEYS = {
  openai: 'fake-openai-key',
  anthropic: 'fake-anthropic-key',
  gemini: 'fake-gemini-key',
  xai: 'fake-xai-key',
  perplexity: 'fake-perplexity-key',
};
// The marker the fake puts in every scripted error message (must never reach a client).
const LEAK_MARKER = 'FAKE_PROVIDER_INTERNAL_DETAIL';

const REQUEST_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

// The secret sweep (issue 10): with LLMGW_E2E_SWEEP=DIR, each env's files are kept in DIR at
// stop() — the database (and WAL), the gateway's stderr (its logs), the exports and audit
// answers it fetched, a PostgreSQL schema's dump — with secrets.json, every secret the env saw:
// provider keys, raw API keys (created, rotated, the superadmin's), subject tokens, HMAC keys,
// share codes. tests/e2e/sweep.js then looks for each secret in its env's files.
const SWEEP = process.env.LLMGW_E2E_SWEEP || '';
const SECRET_TEXT_RE = /\b(?:llmgw|llmst)_[A-Za-z0-9_-]{32,}/g;
const SECRET_FIELDS = new Set(['key', 'api_key', 'raw_key', 'subject_token', 'hmac_key', 'share_code']);
function collectSecrets(into, text, json) {
  for (const m of String(text).matchAll(SECRET_TEXT_RE)) into.add(m[0]);
  const walk = (v, depth) => {
    if (depth > 6 || v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === 'string' && SECRET_FIELDS.has(k) && x.length >= 16) into.add(x);
      else walk(x, depth + 1);
    }
  };
  walk(json, 0);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Run a command; resolve {stdout, stderr}; reject with both in the message on failure.
function run(cmd, args, { timeoutMs = 15000, env, cwd = ROOT } = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env: env || process.env, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          err.message = `${cmd} ${args.join(' ')} failed: ${err.message}\nstdout: ${stdout}\nstderr: ${stderr}`;
          err.stdout = stdout;
          err.stderr = stderr;
          reject(err);
        } else {
          resolve({ stdout, stderr });
        }
      });
  });
}

function lastLine(s) {
  const lines = String(s).split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.length ? lines[lines.length - 1] : '';
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------ fake upstream
async function startFake() {
  const child = spawn(process.execPath, [FAKE, '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const rl = readline.createInterface({ input: child.stdout });
  const port = await withTimeout(new Promise((resolve, reject) => {
    rl.once('line', (line) => {
      const m = /^listening (\d+)$/.exec(line.trim());
      if (m) resolve(Number(m[1])); else reject(new Error(`fake said: ${line}`));
    });
    child.once('exit', (code) => reject(new Error(`fake exited (${code}): ${stderr}`)));
  }), 5000, 'fake upstream start');
  const url = `http://127.0.0.1:${port}`;

  async function call(method, p, body) {
    const res = await fetch(url + p, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`fake ${method} ${p}: ${res.status} ${text}`);
    return JSON.parse(text);
  }

  return {
    port,
    url,
    child,
    stderr: () => stderr,
    // next('openai', 'status', {status: 500}) — script the provider's next answer.
    next: (provider, action, extra = {}) => call('POST', '/_control/next', { provider, action, ...extra }),
    // nextAll([{provider, action, ...}, ...]) — script many answers in one call.
    nextAll: (entries) => call('POST', '/_control/next', entries),
    requests: (provider) => call('GET', provider ? `/_requests?provider=${encodeURIComponent(provider)}` : '/_requests'),
    clear: () => call('DELETE', '/_requests'),
    reset: () => call('POST', '/_control/reset'),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await withTimeout(exited, 3000, 'fake stop').catch(() => child.kill('SIGKILL'));
    },
  };
}

// ------------------------------------------------------------------ catalog and costs
let catalogCache = null;
function loadCatalog() {
  if (catalogCache) return catalogCache;
  const YAML = require('yaml');
  const doc = YAML.parse(fs.readFileSync(CATALOG, 'utf8'));
  let models = doc && (doc.models || doc.catalog || doc);
  if (models && !Array.isArray(models) && typeof models === 'object') {
    models = Object.entries(models).map(([id, m]) => ({ id, ...(m || {}) }));
  }
  if (!Array.isArray(models)) throw new Error(`cannot find a models list in ${CATALOG}`);
  catalogCache = { doc, models };
  return catalogCache;
}

function catalogModel(id) {
  const { models } = loadCatalog();
  const m = models.find((x) => x && (x.id === id || (Array.isArray(x.aliases) && x.aliases.includes(id))));
  if (!m) throw new Error(`model ${id} not in ${CATALOG}`);
  return m;
}

function pick(obj, names) {
  if (!obj || typeof obj !== 'object') return undefined;
  for (const n of names) if (obj[n] !== undefined && obj[n] !== null) return obj[n];
  return undefined;
}

// Decimal string (or number) of USD → integer micro-USD, exactly ("2.50" → 2500000n).
function usdToMicros(v) {
  const s = String(v).trim();
  const m = /^(\d+)(?:\.(\d{0,6}))?$/.exec(s);
  if (!m) throw new Error(`bad price ${JSON.stringify(v)}`);
  return BigInt(m[1]) * 1000000n + BigInt((m[2] || '').padEnd(6, '0'));
}

// Prices of a catalog model as integer micro-USD per million tokens (search fees: micro-USD per
// 1000 requests). Tolerant of the exact key names so the tests follow the data file.
function modelPrices(id) {
  const m = catalogModel(id);
  const p = pick(m, ['price', 'prices', 'pricing']) || m;
  const input = pick(p, ['input', 'input_per_mtok', 'input_usd_per_mtok', 'prompt']);
  const output = pick(p, ['output', 'output_per_mtok', 'output_usd_per_mtok', 'completion']);
  const cached = pick(p, ['cached_input', 'cache_read', 'cached', 'input_cached', 'cache_read_input']);
  const write = pick(p, ['cache_write', 'cache_creation', 'cache_write_input', 'cache_creation_input']);
  const fees = pick(p, ['search_fee_per_1k', 'search_fees_per_1k', 'search_fee']) ||
    pick(m, ['search_fee_per_1k', 'search_fees_per_1k', 'search_fee']);
  if (input === undefined || output === undefined) throw new Error(`model ${id}: no input/output price in catalog`);
  const out = {
    input: usdToMicros(input),
    output: usdToMicros(output),
    cached: cached === undefined ? usdToMicros(input) : usdToMicros(cached),
    cacheWrite: write === undefined ? usdToMicros(input) : usdToMicros(write),
    searchFee: null,
  };
  if (fees && typeof fees === 'object') {
    out.searchFee = {};
    for (const k of ['low', 'medium', 'high']) if (fees[k] !== undefined) out.searchFee[k] = usdToMicros(fees[k]);
  }
  return out;
}

// Expected cost in integer micro-USD (Number), rounded half up once:
//   (uncached_in × input + cached × cached_price + cache_write × write_price + out × output)/1e6
//   + searches × fee_per_1k[ctx] / 1000
// u: {input (all prompt tokens incl. cached/written), cached, cacheWrite, output (incl. reasoning),
//     searches, ctx}
function expectedCostMicros(id, u) {
  const pr = modelPrices(id);
  const cached = BigInt(u.cached || 0);
  const write = BigInt(u.cacheWrite || 0);
  const uncached = BigInt(u.input) - cached - write;
  // units: 1e-12 USD
  let sum = uncached * pr.input + cached * pr.cached + write * pr.cacheWrite + BigInt(u.output) * pr.output;
  if (u.searches) {
    if (!pr.searchFee) throw new Error(`model ${id}: no search fee in catalog`);
    const fee = pr.searchFee[u.ctx || 'medium'];
    sum += BigInt(u.searches) * fee * 1000n; // fee micro-USD per 1000 req → 1e-12 USD per req
  }
  return Number((sum + 500000n) / 1000000n);
}

// The fake's fixed usage (see tests/fake/server.js), in normalised form. With catalog/models.yaml
// of 2026-11-24 the expected costs (micro-USD) are:
//   gpt-4o   100×2.50 + 20×1.25 + 30×10                 = 575
//   o3       100×2 + 20×0.50 + 50×8                     = 610
//   sonnet   100×3 + 60×0.30 + 40×3.75 + 30×15          = 918
//   flash    80×0.30 + 30×0.03 + 40×2.50 = 124.9        → 125
//   grok-3   90×3 + 10×0.75 + 25×15 = 652.5             → 653 (half up)
//   sonar    80×3 + 40×15 + 1 search × $6/1000 = 840+6000 = 6840
// expectedCostMicros() computes them from the catalog so a price edit does not break the tests.
const FAKE_USAGE = {
  'gpt-4o': { input: 120, cached: 20, cacheWrite: 0, output: 30, reasoning: 0 },
  o3: { input: 120, cached: 20, cacheWrite: 0, output: 50, reasoning: 20 },
  'claude-sonnet-4-6': { input: 200, cached: 60, cacheWrite: 40, output: 30, reasoning: 0 },
  'gemini-2.5-flash': { input: 110, cached: 30, cacheWrite: 0, output: 40, reasoning: 15 },
  'grok-3': { input: 100, cached: 10, cacheWrite: 0, output: 25, reasoning: 0 },
  'sonar-pro': { input: 80, cached: 0, cacheWrite: 0, output: 40, reasoning: 0, searches: 1, ctx: 'low' },
};
// A model of every provider (each priced in FAKE_USAGE), in PROVIDERS' order: for the suites
// that run the same requests against every provider.
const PROVIDER_MODELS = {
  openai: 'gpt-4o',
  anthropic: 'claude-sonnet-4-6',
  gemini: 'gemini-2.5-flash',
  xai: 'grok-3',
  perplexity: 'sonar-pro',
};

// ------------------------------------------------------------------ gateway
async function startEnv(opts = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} not built (run make)`);
  const fake = await startFake();
  try {
    return await startEnvWith(fake, opts);
  } catch (e) {
    // A failed start must not leave the fake running: it would keep the test process alive.
    await fake.stop().catch(() => {});
    throw e;
  }
}

async function startEnvWith(fake, opts) {
  const omit = new Set(opts.omitProviders || []);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmgw-e2e-'));
  const dbPath = path.join(tmp, 'gw.db');
  // opts.postgres: a schema of its own on the tests' PostgreSQL (make test starts one)
  let db = `sqlite:${dbPath}`;
  let pgSchema = null;
  if (opts.postgres) {
    const base = process.env.LLMGW_TEST_PG_URL;
    if (!base) throw new Error('LLMGW_TEST_PG_URL is not set (make test starts PostgreSQL)');
    pgSchema = `e2e_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
    await run('psql', [base, '-q', '-c', `CREATE SCHEMA ${pgSchema}`], { timeoutMs: 10000 });
    db = `${base}${base.includes('?') ? '&' : '?'}options=-csearch_path%3D${pgSchema}`;
  }
  // One row as an object, from whichever store.
  async function queryRows(where) {
    if (pgSchema) {
      const { stdout } = await run('psql', [db, '-At', '-c',
        `SELECT COALESCE(json_agg(u), '[]') FROM usage u WHERE ${where}`], { timeoutMs: 5000 });
      return JSON.parse(stdout.trim() || '[]');
    }
    const { stdout } = await run('sqlite3', ['-cmd', '.timeout 5000', '-json', dbPath, `select * from usage where ${where}`], { timeoutMs: 10000 });
    return stdout.trim() ? JSON.parse(stdout) : [];
  }
  // Any SELECT, as an array of row objects, from whichever store (tests inspect what is stored).
  async function query(sql) {
    if (pgSchema) {
      const { stdout } = await run('psql', [db, '-At', '-c',
        `SELECT COALESCE(json_agg(q), '[]') FROM (${sql}) q`], { timeoutMs: 20000 });
      return JSON.parse(stdout.trim() || '[]');
    }
    const { stdout } = await run('sqlite3', ['-cmd', '.timeout 10000', '-json', dbPath, sql], { timeoutMs: 20000 });
    return stdout.trim() ? JSON.parse(stdout) : [];
  }
  // Run SQL statements (seeding) on whichever store.
  async function execSQL(sql) {
    if (pgSchema) await run('psql', [db, '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeoutMs: 60000 });
    // (the gateway writes meanwhile: wait for its write lock rather than fail at once)
    else await run('sqlite3', ['-cmd', '.timeout 10000', dbPath, sql], { timeoutMs: 60000 });
  }
  const cliEnv = { ...process.env };
  for (const p of PROVIDERS) {
    delete cliEnv[`${p.toUpperCase()}_API_KEY`];
    delete cliEnv[`LLMGW_${p.toUpperCase()}_BASE_URL`];
  }
  for (const k of ['LLMGW_CONFIG', 'LLMGW_LISTEN', 'LLMGW_DB', 'LLMGW_WORKERS', 'LLMGW_MODE']) delete cliEnv[k];

  const secrets = new Set(Object.values(FAKE_KEYS));
  const planted = new Set(); // secrets a test itself wrote into the store (not the gateway's doing)
  const sweepFiles = []; // [name, text] saved into the env's dir at stop
  const cli = async (args, o = {}) => {
    const r = await run(BIN, args, { env: cliEnv, ...o });
    collectSecrets(secrets, r.stdout);
    return r;
  };
  await cli(['migrate', '--db', db]);
  await cli(['orgs', 'create', 'acme', '--db', db]);
  const createKey = async (name = 'e2e', extra = []) => {
    const { stdout } = await cli(['keys', 'create', '--org', 'acme', '--name', name, ...extra, '--db', db]);
    const key = lastLine(stdout);
    if (!key || /\s/.test(key)) throw new Error(`no raw key on the last stdout line: ${stdout}`);
    return key;
  };
  const apiKey = await createKey('e2e');

  const configPath = path.join(tmp, 'gw.yaml');
  fs.writeFileSync(configPath, [
    `timeouts: {${Object.entries({ first_byte_ms: 1500, total_ms: 6000, connect_ms: 1000, ...(opts.timeouts || {}) })
      .map(([k, v]) => `${k}: ${Number(v)}`).join(', ')}}`,
    `limits: {${Object.entries({ max_body_bytes: 65536, ...(opts.limits || {}) })
      .map(([k, v]) => `${k}: ${Number(v)}`).join(', ')}}`,
    ...(opts.extraConfig ? [opts.extraConfig] : []),
    '',
  ].join('\n'));

  const port = await freePort();
  const env = { ...cliEnv };
  for (const p of PROVIDERS) {
    const up = p.toUpperCase();
    if (!omit.has(p)) env[`${up}_API_KEY`] = FAKE_KEYS[p];
    env[`LLMGW_${up}_BASE_URL`] = `${fake.url}/${p}`;
  }
  Object.assign(env, opts.env || {});
  const baseURL = `http://127.0.0.1:${port}`;
  let gw = null;
  let log = '';
  let errLog = ''; // stderr only (stdout has the first start's banner, the superadmin key by design)
  let exitInfo = null;
  let exited = null;

  // Spawn `llmgw serve` on port with this env's config and database; resolves once /healthz
  // answers 200. onLog gets its output; returns {child, exited (a promise), exitInfo()}.
  async function spawnGateway(p, onLog) {
    // opts.execPrefix: a command that execs the gateway (e.g. prlimit with its limits)
    const argv = [...(opts.execPrefix || []), BIN, 'serve', '--config', configPath, '--listen', `127.0.0.1:${p}`, '--db', db, '--workers', '2'];
    const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let info = null;
    child.stdout.on('data', onLog);
    child.stderr.on('data', (d) => { onLog(d); if (onLog.stderr) onLog.stderr(d); });
    const done = new Promise((resolve) => child.once('exit', (code, signal) => { info = { code, signal }; resolve(info); }));
    const deadline = Date.now() + 10000;
    for (;;) {
      if (info) throw new Error(`llmgw serve exited early (${JSON.stringify(info)})`);
      try {
        const r = await fetch(`http://127.0.0.1:${p}/healthz`, { signal: AbortSignal.timeout(1000) });
        await r.arrayBuffer();
        if (r.status === 200) break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error('llmgw serve did not answer /healthz 200 within 10 s');
      }
      await sleep(100);
    }
    return { child, exited: done, exitInfo: () => info };
  }

  async function launch() {
    try {
      const onLog = (d) => { log += d; };
      onLog.stderr = (d) => { errLog += d; };
      const g = await spawnGateway(port, onLog);
      gw = g.child;
      exited = g.exited.then((i) => { exitInfo = i; return i; });
      exitInfo = null;
    } catch (e) {
      e.message += `; log:\n${log}`;
      throw e;
    }
  }

  try {
    await launch();
  } catch (e) {
    await fake.stop();
    throw e;
  }

  // kill -9 the gateway (a crash), then start it again on the same database.
  async function crash() {
    if (exitInfo) return;
    gw.kill('SIGKILL');
    await withTimeout(exited, 5000, 'llmgw kill -9');
  }
  async function restart() {
    await crash();
    await launch();
  }

  async function usageRow(requestId) {
    if (typeof requestId !== 'string' || !REQUEST_ID_RE.test(requestId)) {
      throw new Error(`refusing to query with request id ${JSON.stringify(requestId)}`);
    }
    const rows = await queryRows(`request_id='${requestId}'`);
    return rows[0] || null;
  }

  // Poll until the row exists and is no longer "reserved" (or timeout; returns the last row seen).
  async function waitUsage(requestId, { timeoutMs = 3000 } = {}) {
    const end = Date.now() + timeoutMs;
    let row = null;
    for (;;) {
      row = await usageRow(requestId);
      if (row && row.state !== 'reserved') return row;
      if (Date.now() > end) return row;
      await sleep(50);
    }
  }

  // Plain HTTP helper: returns {status, headers, text, json}.
  async function request(method, p, { headers = {}, body, rawBody, auth = true, timeoutMs = 8000, base = baseURL } = {}) {
    const h = { ...headers };
    if (auth && !Object.keys(h).some((k) => ['authorization', 'x-api-key'].includes(k.toLowerCase()))) {
      h.authorization = `Bearer ${apiKey}`;
    }
    let b;
    if (rawBody !== undefined) b = rawBody;
    else if (body !== undefined) b = JSON.stringify(body);
    if (b !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
    const res = await fetch(base + p, { method, headers: h, body: b, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    if (SWEEP) {
      collectSecrets(secrets, text, json);
      if (/^\/admin\/v1\/(usage\/export|conversations\/export|audit)|^\/v1\/(org\/)?conversations/.test(p)) {
        sweepFiles.push([`answer-${sweepFiles.length}.txt`, text]);
      }
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  function client(o = {}) {
    const OpenAI = require('openai');
    const Ctor = OpenAI.default || OpenAI;
    return new Ctor({ baseURL: `${baseURL}/v1`, apiKey: o.apiKey || apiKey, maxRetries: 0, timeout: o.timeout || 8000 });
  }

  // Test builds only: move the gateway's wall clock forward (sliding windows, budget resets).
  async function advanceClock(ms) {
    const r = await request('POST', '/__test/clock', { body: { advance_ms: ms }, auth: false });
    if (r.status !== 200) throw new Error(`the clock hook needs a test build (${r.status}): ${r.text}`);
    return r.json.offset_ms;
  }

  // `llmgw usage ... --format totals` → {rows, requests, tokens_in, tokens_out, cost_micros}.
  // Rows are settled just after their answers (a store thread writes them, in batches), so
  // first wait (up to 3 s) until no row is still "reserved".
  async function usageTotals(args = []) {
    for (let end = Date.now() + 3000; Date.now() < end;) {
      if ((await queryRows("state = 'reserved'")).length === 0) break;
      await sleep(50);
    }
    const { stdout } = await cli(['usage', ...args, '--format', 'totals', '--db', db]);
    const m = /totals (.*)$/m.exec(stdout);
    if (!m) throw new Error(`no totals line: ${stdout}`);
    return Object.fromEntries(m[1].split(' ').map((kv) => { const [k, v] = kv.split('='); return [k, Number(v)]; }));
  }

  // Another gateway node on the same database, config and fake (its own port and node id).
  const nodes = [];
  async function startNode() {
    const nport = await freePort();
    const nbase = `http://127.0.0.1:${nport}`;
    let nlog = '';
    const g = await spawnGateway(nport, (d) => { nlog += d; }).catch((e) => {
      e.message += `; log:\n${nlog}`;
      throw e;
    });
    const node = {
      baseURL: nbase,
      log: () => nlog,
      request: (method, p, o = {}) => request(method, p, { ...o, base: nbase }),
      crash: async () => {
        if (!g.exitInfo()) { g.child.kill('SIGKILL'); await withTimeout(g.exited, 5000, 'node kill'); }
      },
      stop: async () => {
        if (!g.exitInfo()) {
          g.child.kill('SIGTERM');
          await withTimeout(g.exited, 8000, 'node stop').catch(() => g.child.kill('SIGKILL'));
        }
        const m = nlog.match(/(ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:)[\s\S]{0,3000}/);
        if (m) throw new Error(`sanitizer report in a node's log:\n${m[0]}`);
      },
    };
    nodes.push(node);
    return node;
  }

  // Move what the env wrote into the sweep directory (see SWEEP above).
  async function keepForSweep() {
    const sa = (/shown only this once:\s+(llmgw_[A-Za-z0-9_-]+)/.exec(log) || [])[1];
    if (sa) secrets.add(sa);
    fs.writeFileSync(path.join(tmp, 'gw-stderr.log'), errLog);
    for (const [name, text] of sweepFiles) fs.writeFileSync(path.join(tmp, name), text);
    if (pgSchema) {
      await run('pg_dump', ['--no-owner', '-n', pgSchema, '-f', path.join(tmp, 'pg-dump.sql'), process.env.LLMGW_TEST_PG_URL],
        { timeoutMs: 60000 }).catch((e) => fs.writeFileSync(path.join(tmp, 'pg-dump.failed'), e.message));
    }
    for (const s of planted) secrets.delete(s);
    fs.writeFileSync(path.join(tmp, 'secrets.json'), JSON.stringify([...secrets]));
    fs.mkdirSync(SWEEP, { recursive: true });
    const dest = path.join(SWEEP, path.basename(tmp));
    try { fs.renameSync(tmp, dest); } catch { fs.cpSync(tmp, dest, { recursive: true }); }
  }

  async function stop() {
    for (const n of nodes) await n.stop();
    if (!exitInfo) {
      gw.kill('SIGTERM');
      try {
        await withTimeout(exited, 8000, 'llmgw stop');
      } catch {
        gw.kill('SIGKILL');
        await withTimeout(exited, 2000, 'llmgw kill').catch(() => {});
      }
    }
    await fake.stop();
    if (SWEEP) await keepForSweep();
    if (pgSchema) {
      await run('psql', [process.env.LLMGW_TEST_PG_URL, '-q', '-c', `DROP SCHEMA ${pgSchema} CASCADE`], { timeoutMs: 10000 })
        .catch(() => {});
    }
    if (!process.env.LLMGW_E2E_KEEP && !SWEEP) fs.rmSync(tmp, { recursive: true, force: true });
    // The suite runs the gateway built with ASan+UBSan (or TSan): any report fails the file.
    const m = log.match(/(ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:)[\s\S]{0,3000}/);
    if (m) throw new Error(`sanitizer report in the gateway log:\n${m[0]}`);
  }

  return {
    baseURL,
    apiKey,
    port,
    tmp,
    db,
    dbPath,
    configPath,
    fake,
    get gw() { return gw; },
    log: () => log,
    crash,
    restart,
    startNode,
    queryRows,
    query,
    execSQL,
    postgres: !!pgSchema,
    advanceClock,
    usageTotals,
    keyId: async (name) => {
      const out = (await cli(['keys', 'list', '--org', 'acme', '--db', db])).stdout;
      const line = out.split('\n').find((l) => l.trim().split(/\s+/).pop() === name);
      return line ? line.trim().split(/\s+/)[0] : null;
    },
    // The superadmin key serve created and printed on its first start.
    superadminKey: () => (/shown only this once:\s+(llmgw_[A-Za-z0-9_-]+)/.exec(log) || [])[1],
    exitInfo: () => exitInfo,
    // The request's access line (one JSON object per request in the log), parsed; waits 3 s.
    accessLine: async (requestId) => {
      for (let end = Date.now() + 3000; ;) {
        const line = log.split('\n').find((l) => l.startsWith('{') && l.includes(`"request_id":"${requestId}"`));
        if (line) return JSON.parse(line);
        if (Date.now() > end) throw new Error(`no access line for ${requestId}`);
        await sleep(50);
      }
    },
    cli,
    // A secret this test wrote into the store itself, on purpose: the sweep leaves it out.
    plantedSecret: (s) => planted.add(s),
    createKey,
    listKeys: async () => (await cli(['keys', 'list', '--org', 'acme', '--db', db])).stdout,
    revokeKey: (keyId) => cli(['keys', 'revoke', keyId, '--db', db]),
    usageRow,
    waitUsage,
    request,
    client,
    stop,
  };
}

// ------------------------------------------------------------------ SSE helpers
// Read a fetch Response body as SSE; returns {events: [{event, data}], done (saw [DONE]), raw}.
async function readSSE(res, { onEvent, timeoutMs = 8000 } = {}) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let raw = '';
  const events = [];
  let done = false;
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (Date.now() > end) throw new Error('readSSE timeout');
    const { value, done: eof } = await reader.read();
    if (eof) break;
    const s = dec.decode(value, { stream: true });
    raw += s;
    buf += s;
    let idx;
    while ((idx = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, idx);
      buf = buf.slice(idx + (buf[idx] === '\r' ? 4 : 2));
      const ev = { event: null, data: '' };
      const dataLines = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':')) continue;
        if (line.startsWith('event:')) ev.event = line.slice(6).trim();
        else if (line.startsWith('data:')) dataLines.push(line.slice(5).replace(/^ /, ''));
      }
      if (dataLines.length === 0 && ev.event === null) continue;
      ev.data = dataLines.join('\n');
      if (ev.data === '[DONE]') done = true;
      else {
        try { ev.json = JSON.parse(ev.data); } catch { /* leave raw */ }
      }
      events.push(ev);
      if (onEvent && onEvent(ev, events) === false) {
        await reader.cancel().catch(() => {});
        return { events, done, raw, cancelled: true };
      }
    }
  }
  return { events, done, raw };
}

function assertNoSecrets(assert, text, extra = []) {
  for (const k of Object.values(FAKE_KEYS)) assert.ok(!text.includes(k), `text contains provider key ${k}`);
  for (const s of extra) if (s) assert.ok(!text.includes(s), `text contains secret ${s.slice(0, 6)}…`);
}

module.exports = {
  ROOT,
  BIN,
  PROVIDERS,
  FAKE_KEYS,
  FAKE_USAGE,
  PROVIDER_MODELS,
  LEAK_MARKER,
  REQUEST_ID_RE,
  startEnv,
  startFake,
  readSSE,
  expectedCostMicros,
  modelPrices,
  catalogModel,
  assertNoSecrets,
  sleep,
  withTimeout,
};
