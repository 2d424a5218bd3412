// The LLM router: a small model (claude-haiku-4-5 on the fake Anthropic) picks the model for
// auto-routed requests; a garbage answer, an error or a timeout falls back to the heuristic.
'use strict';

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv } = require('./harness');

const T = { timeout: 20000 };
const STORY = [{ role: 'user', content: 'Tell me a story about a lighthouse keeper and the sea.' }];

let env;
before(async () => {
  env = await startEnv({
    extraConfig: 'router: {enabled: true, model: claude-haiku-4-5, timeout_ms: 800, max_prompt_chars: 200}',
  });
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

function chat(body, key = env.apiKey) {
  return env.request('POST', '/v1/chat/completions', { body, headers: { authorization: `Bearer ${key}` } });
}

test('happy path: the router\'s choice serves the request; its own call has its own usage row', T, async () => {
  await env.fake.next('anthropic', 'reply', { content: '{"model": "gemini-2.5-pro"}' });
  const r = await chat({ auto_route: true, messages: STORY });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.route_method, 'auto_router');
  assert.equal(r.json.model, 'gemini-2.5-pro');
  assert.equal(r.json.provider, 'gemini');
  assert.match(r.headers.get('x-llmgw-route-reason') || '', /^gemini-2\.5-pro; rule=router; chosen by claude-haiku-4-5/);
  // the router was asked with a bounded prompt that lists the candidates
  const [ask] = await env.fake.requests('anthropic');
  assert.equal(ask.body.model, 'claude-haiku-4-5');
  assert.match(JSON.stringify(ask.body.system), /model router/);
  const prompt = ask.body.messages[0].content;
  const text = typeof prompt === 'string' ? prompt : prompt.map((p) => p.text).join('');
  assert.match(text, /gemini-2\.5-pro/);
  assert.match(text, /lighthouse keeper/);
  assert.ok(ask.body.max_tokens <= 64);
  // the answer came from the chosen model
  const served = await env.fake.requests('gemini');
  assert.equal(served.length, 1);
  assert.match(served[0].path, /gemini-2\.5-pro:generateContent/);
  const rid = r.headers.get('x-request-id');
  const router = await env.waitUsage(`${rid}.router`);
  assert.ok(router, 'a usage row for the router call');
  assert.equal(router.kind, 'router');
  assert.equal(router.parent_request_id, rid);
  assert.equal(router.model, 'claude-haiku-4-5');
  assert.equal(router.state, 'settled');
  assert.ok(router.cost_micros > 0, 'the router call is charged');
  const main = await env.waitUsage(rid);
  assert.equal(main.route_method, 'auto_router');
  assert.equal(main.model, 'gemini-2.5-pro');
  assert.match(env.log(), new RegExp(`req=${rid} auto_router: gemini-2.5-pro`));
});

test('the prompt shows at most max_prompt_chars of the request', T, async () => {
  await env.fake.next('anthropic', 'reply', { content: '{"model":"gpt-4o-mini"}' });
  const long = 'word '.repeat(400) + 'SECRET_TAIL_MARKER';
  const r = await chat({ auto_route: true, messages: [{ role: 'user', content: long }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.model, 'gpt-4o-mini');
  const [ask] = await env.fake.requests('anthropic');
  assert.doesNotMatch(JSON.stringify(ask.body), /SECRET_TAIL_MARKER/);
});

for (const [label, script, note] of [
  ['a garbage answer', { action: 'reply', content: 'Honestly, any of them would be lovely.' }, /named no allowed candidate/],
  ['a model outside the candidates', { action: 'reply', content: '{"model": "gpt-9-ultra"}' }, /named no allowed candidate/],
  ['an error status', { action: 'status', status: 500 }, /answered with an error/],
  ['a timeout', { action: 'delay', ms: 2500 }, /no answer in time/],
]) {
  test(`router ${label} → the heuristic decides`, T, async () => {
    const { action, ...extra } = script;
    await env.fake.next('anthropic', action, extra);
    const t0 = Date.now();
    const r = await chat({ auto_route: true, messages: [{ role: 'user', content: 'hi!' }] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.route_method, 'heuristic');
    assert.equal(r.json.model, 'gpt-4o-mini', 'the short_chat rule');
    const reason = r.headers.get('x-llmgw-route-reason') || '';
    assert.match(reason, /^gpt-4o-mini; rule=short_chat; .*router: claude-haiku-4-5 failed/);
    assert.match(reason, note);
    assert.ok(Date.now() - t0 < 2000, 'the router timeout (800 ms) bounds the wait');
    const row = await env.waitUsage(`${r.headers.get('x-request-id')}.router`);
    assert.ok(row && row.state !== 'reserved', `router row settled (${row && row.state})`);
    if (label === 'a timeout') {
      assert.equal(row.state, 'uncertain');
      assert.equal(row.cost_micros, row.reserved_micros);
    }
  });
}

test('a key that may not use the router model\'s provider is routed by the heuristic, its text never sent there', T, async () => {
  const key = await env.createKey('no-anthropic', ['--providers', 'openai,gemini']);
  const r = await chat({ auto_route: true, messages: STORY }, key);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.route_method, 'heuristic');
  assert.match(r.headers.get('x-llmgw-route-reason') || '', /router model is not allowed/);
  assert.equal((await env.fake.requests('anthropic')).length, 0);
});

test('the router only chooses among what the key may use', T, async () => {
  const key = await env.createKey('openai-gemini', ['--providers', 'anthropic,gemini']);
  await env.fake.next('anthropic', 'reply', { content: '{"model": "gpt-4o"}' }); // not allowed
  const r = await chat({ auto_route: true, messages: STORY }, key);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.route_method, 'heuristic');
  assert.notEqual(r.json.provider, 'openai');
  const [ask] = await env.fake.requests('anthropic');
  const text = JSON.stringify(ask.body.messages);
  assert.doesNotMatch(text, /gpt-4o/, 'openai models are not even offered');
});

test('explicit models never ask the router', T, async () => {
  const r = await chat({ model: 'gpt-4o', messages: STORY });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.route_method, 'explicit');
  assert.equal((await env.fake.requests('anthropic')).length, 0);
});
