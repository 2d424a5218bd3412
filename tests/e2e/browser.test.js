// The browser side, in Debian's chromium (headless, driven by playwright-core): the example page
// served by the gateway exchanges a share code minted by the test (the app's backend), streams
// a completion from the fake provider through its signed session, and leaves nothing of the
// session in localStorage, sessionStorage, cookies or IndexedDB.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv } = require('./harness');
const { pkce, approvedClient } = require('./subject');

const { launch: launchChromium } = require('./chromium');
const T = { timeout: 60000 };
let env;
let browser;
let origin;
let clientId;

before(async () => {
  env = await startEnv();
  origin = env.baseURL; // the page is the gateway's own: http://127.0.0.1:PORT
  const { stdout } = await env.cli(['keys', 'create', '--org', 'acme', '--role', 'org_admin', '--db', env.db]);
  clientId = await approvedClient(env, stdout.trim().split('\n').pop(), env.superadminKey(),
    { name: 'example', origins: [origin], allowed_models: ['gpt-4o-mini'] });
  browser = await launchChromium();
}, { timeout: 60000 });
after(async () => {
  if (browser) await browser.close();
  if (env) await env.stop();
}, { timeout: 30000 });

async function shareCode() {
  const p = pkce();
  const m = await env.request('POST', '/v1/sessions/share-codes', {
    body: { app_client_id: clientId, subject: 'browser-user', code_challenge: p.challenge, code_challenge_method: 'S256' },
  });
  assert.equal(m.status, 200, m.text);
  return { code: m.json.share_code, verifier: p.verifier };
}

test('the library and the example page are served', T, async () => {
  const js = await env.request('GET', '/sdk/llmgw.js', { auth: false });
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.match(js.text, /export async function exchangeForSession/);
  assert.match(js.text, /export async function callCompletion/);
  assert.match(js.text, /export async function createPkcePair/);
  const page = await env.request('GET', '/example/', { auth: false });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /text\/html/);
  assert.match(page.headers.get('content-security-policy'), /script-src 'self'/);
  const post = await env.request('POST', '/sdk/llmgw.js', { auth: false, body: {} });
  assert.equal(post.status, 405);
});

test('the library\'s PKCE pair is one the gateway takes', T, async () => {
  const { createPkcePair } = await import(`${env.baseURL}/sdk/llmgw.js`).catch(async () => {
    // node cannot import over http: load the served text as a data: module instead
    const src = (await env.request('GET', '/sdk/llmgw.js', { auth: false })).text;
    return import(`data:text/javascript;base64,${Buffer.from(src).toString('base64')}`);
  });
  const p = await createPkcePair();
  assert.equal(p.codeChallengeMethod, 'S256');
  const m = await env.request('POST', '/v1/sessions/share-codes', {
    body: { app_client_id: clientId, subject: 'u', code_challenge: p.codeChallenge, code_challenge_method: 'S256' },
  });
  assert.equal(m.status, 200, m.text);
  const x = await env.request('POST', '/v1/sessions/exchange', {
    auth: false, headers: { origin }, body: { share_code: m.json.share_code, code_verifier: p.codeVerifier },
  });
  assert.equal(x.status, 200, x.text);
});

test('in chromium: exchange, a streamed completion, and nothing stored', T, async () => {
  const { code, verifier } = await shareCode();
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${origin}/example/#share_code=${code}&code_verifier=${verifier}`);
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('session ready'), null, { timeout: 15000 })
    .catch(async (e) => { throw new Error(`${e.message}; status: ${await page.textContent('#status')}; errors: ${errors}`); });
  assert.equal(new URL(page.url()).hash, '', 'the fragment with the verifier is gone');
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('done'), null, { timeout: 15000 })
    .catch(async (e) => { throw new Error(`${e.message}; status: ${await page.textContent('#status')}; errors: ${errors}`); });
  const answer = await page.textContent('#answer');
  assert.ok(answer.length > 0, 'the streamed text is on the page');
  assert.match(await page.textContent('#status'), /done: \d+ chunks/);
  // the fake provider saw one streamed call for the allowed model
  const calls = (await env.fake.requests('openai')).filter((r) => r.body && r.body.stream === true && r.body.model === 'gpt-4o-mini');
  assert.ok(calls.length >= 1, 'a streamed call upstream');
  // nothing of the session anywhere the page could keep it
  const stored = await page.evaluate(async () => ({
    local: localStorage.length,
    session: sessionStorage.length,
    cookie: document.cookie,
    idb: indexedDB.databases ? (await indexedDB.databases()).length : 0,
  }));
  assert.deepEqual(stored, { local: 0, session: 0, cookie: '', idb: 0 });
  assert.deepEqual(await context.cookies(), []);
  // the code was used once: a reload of the same link cannot start a second session
  const again = await context.newPage();
  await again.goto(`${origin}/example/#share_code=${code}&code_verifier=${verifier}`);
  await again.waitForFunction(() => document.getElementById('status').textContent.startsWith('exchange refused'), null, { timeout: 15000 });
  assert.match(await again.textContent('#status'), /invalid_share_code/);
  assert.deepEqual(errors, []);
  await context.close();
});
