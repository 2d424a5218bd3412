// The admin usage dashboard (/dashboard), in Debian's chromium (headless, driven by
// playwright-core): an org_admin signs in with its key, and every figure on the page is the
// admin API's (totals, per model, per provider, per key, budgets, the recent rows of the
// export); the key is kept nowhere but in the page's memory; a wrong key gets a visible error
// and no figures. The full-page screenshot is this test's artifact: build/logs/dashboard.png.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startEnv, sleep, ROOT } = require('./harness');

const { launch: launchChromium } = require('./chromium');
const SHOT = path.join(ROOT, 'build', 'logs', 'dashboard.png');
const T = { timeout: 60000 };
// The chat requests sent through the gateway; the first claude one fails (the fake answers 500
// and fallback is off), so the gateway answers 502.
const SENT = ['gpt-4o', 'claude-sonnet-4-6', 'gemini-2.5-flash', 'gpt-4o', 'claude-sonnet-4-6', 'gpt-4o'];
const DAY_S = 86400;

let env;
let browser;
let adminKey;
let memberKeyId;
const statuses = [];

function adminGet(p, key = adminKey) {
  return env.request('GET', p, { headers: { authorization: `Bearer ${key}` }, timeoutMs: 15000 });
}
async function usage(query) {
  const r = await adminGet(`/admin/v1/usage?${query}`);
  assert.equal(r.status, 200, `GET /admin/v1/usage?${query}: ${r.text}`);
  return r.json;
}
async function exportRows(query) {
  const r = await adminGet(`/admin/v1/usage/export?format=jsonl&${query}`);
  assert.equal(r.status, 200, r.text);
  return r.text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}
const nowS = () => Math.floor(Date.now() / 1000);
function startOfTodayUTC() {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) / 1000;
}
function startOfMonthUTC() {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) / 1000;
}

before(async () => {
  env = await startEnv({ extraConfig: 'fallback: {enabled: false}' });
  const { stdout } = await env.cli(['keys', 'create', '--org', 'acme', '--role', 'org_admin', '--name', 'dashboard-admin', '--db', env.db]);
  adminKey = stdout.trim().split('\n').pop();
  assert.match(adminKey, /^llmgw_/);
  memberKeyId = await env.keyId('e2e');
  assert.ok(memberKeyId, 'the member key is listed');

  await env.fake.next('anthropic', 'status', { status: 500 });
  for (const model of SENT) {
    const r = await env.request('POST', '/v1/chat/completions', {
      body: { model, messages: [{ role: 'user', content: 'hi' }] },
    });
    statuses.push(r.status);
  }
  assert.deepEqual(statuses, [200, 502, 200, 200, 200, 200], 'one request failed (no fallback)');

  // A daily and a monthly budget on the member key (after the requests: they cannot block them).
  const p = await env.request('PATCH', `/admin/v1/keys/${memberKeyId}`, {
    headers: { authorization: `Bearer ${adminKey}` }, body: { limits: { daily_usd: 1, monthly_usd: 0.003 } },
  });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.limits.daily_usd, 1);

  // Settled: every request counted, no row still reserved.
  for (const end = Date.now() + 15000; ;) {
    const u = await usage('group_by=day');
    const rows = await exportRows(`from=${nowS() - DAY_S}`);
    if (u.totals.requests === SENT.length && rows.length === SENT.length && rows.every((r) => r.state !== 'reserved')) break;
    if (Date.now() > end) assert.fail(`usage not settled: ${JSON.stringify(u.totals)}`);
    await sleep(100);
  }

  browser = await launchChromium();
}, { timeout: 60000 });

after(async () => {
  if (browser) await browser.close();
  if (env) await env.stop();
}, { timeout: 30000 });

// A page that records what the console and the page's errors say.
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  const consoleErrors = [];
  const pageErrors = [];
  page.on('console', (m) => {
    // The browser's own probe of /favicon.ico (the gateway has none) is not the page's error.
    if (m.type() === 'error' && !/\/favicon\.ico$/.test(m.location().url || '')) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${env.baseURL}/dashboard`);
  return { context, page, consoleErrors, pageErrors };
}

async function signIn(page, key) {
  await page.fill('[data-testid="login-key"]', key);
  await page.click('[data-testid="login-submit"]');
}

const attr = (page, sel, name) => page.getAttribute(sel, name);

test('the dashboard and its files are served, HTML under the strict CSP', T, async () => {
  for (const p of ['/dashboard', '/dashboard/', '/dashboard/index.html']) {
    const r = await env.request('GET', p, { auth: false });
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type'), /text\/html/);
    assert.equal(r.headers.get('content-security-policy'),
      "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
    assert.match(r.text, /<script src="\/dashboard\/app\.js"><\/script>/);
    assert.doesNotMatch(r.text, /<script>|<style|\son[a-z]+=|style="/i, 'no inline script, style or handler');
    assert.doesNotMatch(r.text, /https?:\/\//, 'nothing from another origin');
  }
  const js = await env.request('GET', '/dashboard/app.js', { auth: false });
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.doesNotMatch(js.text, /localStorage|sessionStorage|document\.cookie|indexedDB/);
  const css = await env.request('GET', '/dashboard/style.css', { auth: false });
  assert.equal(css.status, 200);
  assert.match(css.headers.get('content-type'), /text\/css/);
  assert.doesNotMatch(css.text, /@import|url\(/, 'no external fonts or images');
  assert.equal((await env.request('POST', '/dashboard', { auth: false, body: {} })).status, 405);
});

test('in chromium: the org_admin sees the API\'s figures, and the key is kept nowhere', T, async () => {
  const from = nowS() - 30 * DAY_S;
  const byModel = await usage(`from=${from}&group_by=model`);
  const byProvider = await usage(`from=${from}&group_by=provider`);
  const byKey = await usage(`from=${from}&group_by=key`);
  const today = await usage(`from=${startOfTodayUTC()}&group_by=key`);
  const month = await usage(`from=${startOfMonthUTC()}&group_by=key`);
  const recent = await exportRows(`from=${nowS() - DAY_S}`);
  const totals = byModel.totals;
  assert.equal(totals.requests, SENT.length);
  assert.ok(totals.cost_micros > 0);

  const { context, page, consoleErrors, pageErrors } = await openPage();
  assert.equal(await page.isVisible('[data-testid="login"]'), true, 'the sign-in form first');
  await signIn(page, adminKey);
  await page.waitForSelector('[data-testid="dashboard"][data-state="ready"]', { timeout: 20000 })
    .catch(async (e) => {
      throw new Error(`${e.message}; state: ${await attr(page, '[data-testid="dashboard"]', 'data-state')}; ` +
        `error: ${await page.textContent('[data-testid="dash-error"]')}; console: ${consoleErrors} ${pageErrors}`);
    });
  assert.equal(await page.isVisible('[data-testid="dash-error"]'), false);
  assert.equal(await page.textContent('[data-testid="org-name"]'), 'acme');

  // headline cards
  assert.equal(Number(await attr(page, '[data-testid="total-spend"]', 'data-value')), totals.cost_micros);
  assert.match(await page.textContent('[data-testid="total-spend"]'), /^\$\d[\d,]*\.\d{2,6}$/);
  assert.equal(Number(await attr(page, '[data-testid="total-requests"]', 'data-value')), totals.requests);
  assert.equal(await page.textContent('[data-testid="total-requests"]'), String(totals.requests));
  assert.equal(Number(await attr(page, '[data-testid="total-tokens"]', 'data-value')), totals.tokens_in + totals.tokens_out);
  const failed = recent.filter((r) => r.status >= 400).length;
  assert.equal(failed, 1);
  assert.equal(Number(await attr(page, '[data-testid="error-rate"]', 'data-errors')), failed);
  assert.equal(Number(await attr(page, '[data-testid="error-rate"]', 'data-rows')), recent.length);
  assert.equal(await page.textContent('[data-testid="error-rate"]'), `${(100 * failed / recent.length).toFixed(1)}%`);

  // tables: one row per group, each with the API's figures
  const rowsOf = (kind, name) => page.$$eval(`[data-testid="${kind}-row"]`, (els, n) => els.map((e) => ({
    group: e.dataset[n], value: Number(e.dataset.value), requests: Number(e.dataset.requests),
    tokensIn: Number(e.dataset.tokensIn), tokensOut: Number(e.dataset.tokensOut), text: e.textContent,
  })), name);
  for (const [kind, name, api] of [['model', 'model', byModel], ['provider', 'provider', byProvider], ['key', 'key', byKey]]) {
    const rows = await rowsOf(kind, name);
    assert.equal(rows.length, api.data.length, `${kind} rows`);
    for (const g of api.data) {
      const row = rows.find((r) => r.group === g.group);
      assert.ok(row, `a ${kind} row for ${g.group}`);
      assert.deepEqual([row.value, row.requests, row.tokensIn, row.tokensOut],
        [g.cost_micros, g.requests, g.tokens_in, g.tokens_out], `${kind} ${g.group}`);
    }
  }
  assert.deepEqual((await rowsOf('model', 'model')).map((r) => r.group).sort(),
    ['claude-sonnet-4-6', 'gemini-2.5-flash', 'gpt-4o']);
  const keyRow = (await rowsOf('key', 'key')).find((r) => r.group === memberKeyId);
  assert.match(keyRow.text, /e2e/, 'the key is shown by its name');

  // the chart: one bar per day of the range, today's the API's
  const bars = await page.$$eval('[data-testid="chart"] rect.bar', (els) => els.map((e) => ({ day: e.dataset.day, value: Number(e.dataset.value) })));
  assert.ok(bars.length >= 30 && bars.length <= 31, `${bars.length} days`);
  const byDay = await usage(`from=${from}&group_by=day`);
  for (const b of bars) {
    const g = byDay.data.find((d) => d.group === b.day);
    assert.equal(b.value, g ? g.cost_micros : 0, `day ${b.day}`);
  }

  // budgets: the member key's, against its limits, from today's / this month's usage
  const budget = `[data-testid="budget-row"][data-key="${memberKeyId}"]`;
  assert.ok(await page.$(budget), 'a budget row for the budgeted key');
  const spentToday = (today.data.find((g) => g.group === memberKeyId) || {}).cost_micros || 0;
  const spentMonth = (month.data.find((g) => g.group === memberKeyId) || {}).cost_micros || 0;
  assert.equal(Number(await attr(page, `${budget} [data-testid="budget-daily"]`, 'data-value')), spentToday);
  assert.equal(Number(await attr(page, `${budget} [data-testid="budget-daily"]`, 'data-limit')), 1000000);
  assert.equal(Number(await attr(page, `${budget} [data-testid="budget-monthly"]`, 'data-value')), spentMonth);
  assert.equal(Number(await attr(page, `${budget} [data-testid="budget-monthly"]`, 'data-limit')), 3000);
  assert.match(await page.textContent(budget), /of \$1\.00/);
  const expectLevel = spentMonth / 3000 >= 1 ? 'over' : spentMonth / 3000 > 0.8 ? 'warn' : 'ok';
  assert.equal(await attr(page, `${budget} [data-testid="budget-monthly"]`, 'data-level'), expectLevel);
  assert.equal(await page.$$eval('[data-testid="budget-row"]', (els) => els.length), 1, 'only keys with a USD limit');

  // recent requests: one row per request sent, newest first; the failure in the errors list
  const recentRows = await page.$$eval('[data-testid="recent-row"]', (els) => els.map((e) => ({
    id: e.dataset.requestId, status: Number(e.dataset.status), value: Number(e.dataset.value), model: e.dataset.model,
  })));
  assert.equal(recentRows.length, SENT.length);
  assert.deepEqual(recentRows.map((r) => r.id), recent.map((r) => r.request_id).reverse());
  assert.deepEqual(recentRows.map((r) => r.model), SENT.slice().reverse());
  assert.deepEqual(recentRows.map((r) => r.status), statuses.slice().reverse());
  const errRows = await page.$$eval('[data-testid="error-row"]', (els) => els.map((e) => ({ status: Number(e.dataset.status), text: e.textContent })));
  assert.equal(errRows.length, 1);
  assert.equal(errRows[0].status, 502);
  assert.match(errRows[0].text, /claude-sonnet-4-6/);

  // nothing of the key anywhere the page could keep it, nor in the URL or the DOM
  const stored = await page.evaluate(async () => ({
    local: localStorage.length,
    session: sessionStorage.length,
    cookie: document.cookie,
    idb: indexedDB.databases ? (await indexedDB.databases()).length : 0,
    url: location.href,
  }));
  assert.deepEqual({ ...stored, url: undefined }, { local: 0, session: 0, cookie: '', idb: 0, url: undefined });
  assert.ok(!stored.url.includes(adminKey) && !stored.url.includes('?'), stored.url);
  assert.deepEqual(await context.cookies(), []);
  assert.ok(!(await page.content()).includes(adminKey), 'the key is not in the DOM');
  assert.equal(await page.inputValue('[data-testid="login-key"]'), '');

  // the CSV download: the selected range's rows, with the Authorization header
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), page.click('[data-testid="download-csv"]')]);
  assert.match(dl.suggestedFilename(), /^llmgw-usage-acme-.*\.csv$/);
  const csv = fs.readFileSync(await dl.path(), 'utf8').trim().split('\n');
  assert.match(csv[0], /^request_id,created_at,/);
  assert.equal(csv.length, 1 + recent.length);

  // the artifact
  fs.mkdirSync(path.dirname(SHOT), { recursive: true });
  await page.screenshot({ path: SHOT, fullPage: true });

  // another range redraws from the API: 24 h has the same totals here
  await page.click('[data-testid="range-24h"]');
  await page.waitForSelector('[data-testid="dashboard"][data-state="ready"]', { timeout: 20000 });
  assert.equal(Number(await attr(page, '[data-testid="total-spend"]', 'data-value')), totals.cost_micros);

  // sign out: the figures go, the form is back
  await page.click('[data-testid="sign-out"]');
  assert.equal(await page.isVisible('[data-testid="login"]'), true);
  assert.equal(await page.isVisible('[data-testid="dashboard"]'), false);
  assert.equal(await page.$$eval('[data-testid="model-row"]', (els) => els.length), 0);
  assert.equal(await attr(page, '[data-testid="total-spend"]', 'data-value'), null);

  assert.deepEqual(pageErrors, []);
  assert.deepEqual(consoleErrors, []);
  await context.close();
});

test('in chromium: a wrong key, or a member key, gets a visible error and no figures', T, async () => {
  const { context, page, pageErrors, consoleErrors } = await openPage();
  for (const [key, re] of [['llmgw_this_is_not_a_key_0000000000000000000', /not valid/],
    [env.apiKey, /org admin or superadmin/]]) {
    await signIn(page, key);
    await page.waitForSelector('[data-testid="login-error"]:visible', { timeout: 15000 });
    assert.match(await page.textContent('[data-testid="login-error"]'), re);
    assert.equal(await page.isVisible('[data-testid="dashboard"]'), false);
    assert.equal(await page.$$eval('[data-testid="model-row"], [data-testid="recent-row"]', (els) => els.length), 0);
    assert.equal(await attr(page, '[data-testid="total-spend"]', 'data-value'), null);
    assert.equal(await page.inputValue('[data-testid="login-key"]'), '');
    assert.ok(!(await page.content()).includes(key));
  }
  const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);
  assert.equal(stored, 0);
  assert.deepEqual(pageErrors, []);
  // the browser itself logs each refused fetch (401, 403); nothing else
  assert.deepEqual(consoleErrors.filter((t) => !/status of 40[13]/.test(t)), []);
  await context.close();
});
