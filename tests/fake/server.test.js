// Self-test of the fake upstream: node --test tests/fake/
// Checks the wire formats (the official openai client parses the OpenAI-family answers), the
// credential checks, and every scripted action. Needs tests/e2e/node_modules (npm install there).
'use strict';

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { startFake, readSSE } = require('../e2e/harness');

const T = { timeout: 10000 };
let fake;

before(async () => { fake = await startFake(); });
after(async () => { if (fake) await fake.stop(); });
beforeEach(async () => { await fake.reset(); });

const HDR = {
  openai: { authorization: 'Bearer fake-openai-key' },
  xai: { authorization: 'Bearer fake-xai-key' },
  perplexity: { authorization: 'Bearer fake-perplexity-key' },
  anthropic: { 'x-api-key': 'fake-anthropic-key', 'anthropic-version': '2023-06-01' },
  gemini: { 'x-goog-api-key': 'fake-gemini-key' },
};

function post(p, body, headers = {}, signal) {
  return fetch(fake.url + p, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: signal || AbortSignal.timeout(8000),
  });
}

function openaiClient(provider) {
  const OpenAI = require(require.resolve('openai', { paths: [path.join(__dirname, '..', 'e2e')] }));
  const Ctor = OpenAI.default || OpenAI;
  const base = provider === 'perplexity' ? `${fake.url}/perplexity` : `${fake.url}/${provider}/v1`;
  return new Ctor({ baseURL: base, apiKey: `fake-${provider}-key`, maxRetries: 0, timeout: 5000 });
}

test('openai client parses the fake openai non-stream answer, usage has cached and reasoning tokens', T, async () => {
  const c = openaiClient('openai');
  const r = await c.chat.completions.create({ model: 'o3', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.choices[0].message.content, 'echo: hi');
  assert.equal(r.usage.prompt_tokens_details.cached_tokens, 20);
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 20);
  assert.equal(r.usage.completion_tokens, 50);
});

test('openai client streams the fake xai answer with include_usage: usage chunk then [DONE]', T, async () => {
  const c = openaiClient('xai');
  const s = await c.chat.completions.create({ model: 'grok-3', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'stream me' }] });
  let text = '';
  let usage = null;
  for await (const ch of s) {
    if (ch.choices.length === 0) usage = ch.usage;
    else text += ch.choices[0].delta.content || '';
  }
  assert.equal(text, 'echo: stream me');
  assert.equal(usage.prompt_tokens, 100);
});

test('perplexity stream: usage on the finish chunk, citations, no [DONE]', T, async () => {
  const res = await post('/perplexity/chat/completions', { model: 'sonar-pro', stream: true,
    web_search_options: { search_context_size: 'high' }, messages: [{ role: 'user', content: 'q' }] }, HDR.perplexity);
  const { events, done } = await readSSE(res);
  assert.equal(done, false);
  const last = events[events.length - 1].json;
  assert.equal(last.choices[0].finish_reason, 'stop');
  assert.equal(last.usage.num_search_queries, 1);
  assert.equal(last.usage.search_context_size, 'high');
  assert.ok(Array.isArray(last.citations));
});

test('anthropic stream: event names in order, usage in message_start and message_delta', T, async () => {
  const res = await post('/anthropic/v1/messages', { model: 'claude-sonnet-4-6', max_tokens: 10, stream: true,
    messages: [{ role: 'user', content: 'yo' }] }, HDR.anthropic);
  const { events } = await readSSE(res);
  const names = events.map((e) => e.event);
  assert.deepEqual([names[0], names[1], names[2]], ['message_start', 'content_block_start', 'ping']);
  assert.deepEqual(names.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(events[0].json.message.usage.cache_read_input_tokens, 60);
  assert.equal(events[events.length - 2].json.usage.output_tokens, 30);
  const text = events.filter((e) => e.event === 'content_block_delta').map((e) => e.json.delta.text).join('');
  assert.equal(text, 'echo: yo');
});

test('anthropic requires anthropic-version and max_tokens', T, async () => {
  let r = await post('/anthropic/v1/messages', { model: 'm', max_tokens: 5, messages: [] }, { 'x-api-key': 'fake-anthropic-key' });
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error.type, 'authentication_error');
  r = await post('/anthropic/v1/messages', { model: 'm', messages: [] }, HDR.anthropic);
  assert.equal(r.status, 400);
});

test('gemini stream: several data events, last has finishReason STOP and final usage, no [DONE]', T, async () => {
  const res = await post('/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
    { contents: [{ role: 'user', parts: [{ text: 'g' }] }] }, HDR.gemini);
  const { events, done } = await readSSE(res);
  assert.equal(done, false);
  assert.ok(events.length >= 2);
  const last = events[events.length - 1].json;
  assert.equal(last.candidates[0].finishReason, 'STOP');
  assert.equal(last.usageMetadata.thoughtsTokenCount, 15);
  assert.equal(last.usageMetadata.cachedContentTokenCount, 30);
  assert.equal(events.map((e) => e.json.candidates[0].content.parts[0].text).join(''), 'echo: g');
});

test('gemini refuses a key in the query string with 400 API_KEY_INVALID', T, async () => {
  const r = await post('/gemini/v1beta/models/gemini-2.5-flash:generateContent?key=fake-gemini-key',
    { contents: [] }, HDR.gemini);
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.details[0].reason, 'API_KEY_INVALID');
});

test('wrong bearer keys get the OpenAI 401 shape', T, async () => {
  for (const p of ['openai', 'xai']) {
    const r = await post(`/${p}/v1/chat/completions`, { model: 'x', messages: [] }, { authorization: 'Bearer fake-openai-keyX' });
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.code, 'invalid_api_key');
  }
});

test('tools: each provider answers with a call to the first tool, {"city":"Paris"}', T, async () => {
  let r = await (await post('/openai/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'w' }],
    tools: [{ type: 'function', function: { name: 'wx', parameters: {} } }] }, HDR.openai)).json();
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(JSON.parse(r.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris' });
  r = await (await post('/anthropic/v1/messages', { model: 'c', max_tokens: 5, messages: [{ role: 'user', content: 'w' }],
    tools: [{ name: 'wx', input_schema: {} }] }, HDR.anthropic)).json();
  assert.equal(r.stop_reason, 'tool_use');
  assert.deepEqual(r.content[0].input, { city: 'Paris' });
  r = await (await post('/gemini/v1beta/models/gemini-2.0-flash:generateContent', { contents: [{ role: 'user', parts: [{ text: 'w' }] }],
    tools: [{ functionDeclarations: [{ name: 'wx' }] }] }, HDR.gemini)).json();
  assert.deepEqual(r.candidates[0].content.parts[0].functionCall, { name: 'wx', args: { city: 'Paris' } });
  assert.equal(r.usageMetadata.thoughtsTokenCount, undefined, 'no thinking tokens for 2.0');
});

test('scripted status: provider-shaped body with the leak marker, 429 carries retry-after', T, async () => {
  await fake.next('anthropic', 'status', { status: 429 });
  const r = await post('/anthropic/v1/messages', { model: 'c', max_tokens: 5, messages: [] }, HDR.anthropic);
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '2');
  const j = await r.json();
  assert.equal(j.type, 'error');
  assert.equal(j.error.type, 'rate_limit_error');
  assert.match(j.error.message, /FAKE_PROVIDER_INTERNAL_DETAIL/);
  // queue consumed: the next request is normal
  const ok = await post('/anthropic/v1/messages', { model: 'c', max_tokens: 5, messages: [] }, HDR.anthropic);
  assert.equal(ok.status, 200);
});

test('scripted delay, reset, hang, badjson, truncate behave and are logged', T, async () => {
  const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] };
  await fake.next('openai', 'delay', { ms: 300 });
  const t0 = Date.now();
  assert.equal((await post('/openai/v1/chat/completions', body, HDR.openai)).status, 200);
  assert.ok(Date.now() - t0 >= 290);

  await fake.next('openai', 'reset');
  await assert.rejects(post('/openai/v1/chat/completions', body, HDR.openai));

  await fake.next('openai', 'hang');
  await assert.rejects(post('/openai/v1/chat/completions', body, HDR.openai, AbortSignal.timeout(300)));

  await fake.next('openai', 'badjson');
  const bj = await post('/openai/v1/chat/completions', body, HDR.openai);
  assert.equal(bj.status, 200);
  await assert.rejects(bj.json());

  await fake.next('openai', 'truncate');
  const tr = await post('/openai/v1/chat/completions', body, HDR.openai);
  await assert.rejects(tr.text(), 'non-stream truncate ends mid-body with the socket destroyed');

  await fake.next('openai', 'truncate');
  const ts = await post('/openai/v1/chat/completions', { ...body, stream: true }, HDR.openai);
  const { events, done } = await readSSE(ts);
  assert.equal(done, false);
  assert.ok(events.length >= 2);
  assert.ok(!events.some((e) => e.json?.choices?.[0]?.finish_reason));

  await new Promise((r) => setTimeout(r, 100));
  const log = await fake.requests('openai');
  assert.deepEqual(log.map((e) => e.action), ['delay', 'reset', 'hang', 'badjson', 'truncate', 'truncate']);
  assert.deepEqual(log.map((e) => e.aborted), [false, false, true, false, false, false]);
  assert.equal(log[1].closedByFake, true);
  assert.equal(log[0].body.model, 'gpt-4o');
  assert.equal(log[0].path, '/v1/chat/completions');
});

test('scripted slow stream: client abort is logged as aborted', T, async () => {
  await fake.next('gemini', 'slow', { ms: 100 });
  const ac = new AbortController();
  const res = await post('/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
    { contents: [{ role: 'user', parts: [{ text: 'slowly now please' }] }] }, HDR.gemini, ac.signal);
  await readSSE(res, { onEvent: (ev, evs) => (evs.length >= 2 ? false : undefined) });
  ac.abort();
  const end = Date.now() + 2000;
  let e;
  while (Date.now() < end) {
    [e] = await fake.requests('gemini');
    if (e.aborted) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(e.aborted, true);
  assert.equal(e.query.alt, 'sse');
  assert.equal(e.headers['x-goog-api-key'], 'fake-gemini-key');
});

test('control: unknown action/provider refused; DELETE /_requests clears the log', T, async () => {
  await assert.rejects(fake.next('openai', 'explode'));
  await assert.rejects(fake.next('nobody', 'hang'));
  await post('/xai/v1/chat/completions', { model: 'grok-3', messages: [] }, HDR.xai);
  assert.equal((await fake.requests()).length, 1);
  await fake.clear();
  assert.equal((await fake.requests()).length, 0);
});

test('match: a scripted entry waits for its own request; a batch queues several', T, async () => {
  const body = (c) => ({ model: 'gpt-4o', messages: [{ role: 'user', content: c }] });
  await fake.nextAll([
    { provider: 'openai', action: 'status', status: 503, match: '[[b]]' },
    { provider: 'openai', action: 'status', status: 500, match: '[[a]]' },
  ]);
  assert.equal((await post('/openai/v1/chat/completions', body('plain'), HDR.openai)).status, 200, 'no match: normal');
  assert.equal((await post('/openai/v1/chat/completions', body('x [[a]]'), HDR.openai)).status, 500);
  assert.equal((await post('/openai/v1/chat/completions', body('x [[b]]'), HDR.openai)).status, 503);
  assert.equal((await post('/openai/v1/chat/completions', body('x [[b]]'), HDR.openai)).status, 200, 'consumed');
  await assert.rejects(fake.nextAll([{ provider: 'openai', action: 'hang' }, { provider: 'openai', action: 'nope' }]));
  assert.equal((await post('/openai/v1/chat/completions', body('after a refused batch'), HDR.openai)).status, 200,
    'a refused batch queues nothing');
});

test('scripted rst, truncate end/rst, stall, drip, huge, ctype, badjson mid behave', T, async () => {
  const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] };
  const url = '/openai/v1/chat/completions';

  await fake.next('openai', 'reset', { rst: true });
  await assert.rejects(post(url, chat, HDR.openai), (e) => /ECONNRESET|other side closed|fetch failed/.test(`${e.cause?.code} ${e.cause?.message} ${e.message}`));

  await fake.next('openai', 'truncate', { mode: 'end' });
  const te = await post(url, chat, HDR.openai);
  const tet = await te.text();
  assert.ok(tet.length > 0 && !tet.endsWith('}'), 'half a body, cleanly ended');
  assert.throws(() => JSON.parse(tet));

  await fake.next('openai', 'truncate', { mode: 'rst' });
  const tr = await post(url, { ...chat, stream: true }, HDR.openai);
  await assert.rejects(readSSE(tr), 'a stream cut by a reset');

  await fake.next('openai', 'stall');
  const st = await post(url, { ...chat, stream: true }, HDR.openai);
  const got = await readSSE(st, { onEvent: (ev, evs) => (evs.length >= 2 ? false : undefined) });
  assert.equal(got.cancelled, true, 'events came, then silence');

  await fake.next('anthropic', 'drip', { ms: 1, bytes: 64 });
  const t0 = Date.now();
  const dr = await post('/anthropic/v1/messages', { model: 'claude-sonnet-4-6', max_tokens: 5, messages: [{ role: 'user', content: 'drip' }] }, HDR.anthropic);
  const dj = await dr.json();
  assert.equal(dj.content[0].text, 'echo: drip');
  assert.ok(Date.now() - t0 >= 3, 'written in pieces');

  await fake.next('gemini', 'huge', { bytes: 5000, events: 5 });
  const hg = await post('/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
    { contents: [{ role: 'user', parts: [{ text: 'big' }] }] }, HDR.gemini);
  const { events } = await readSSE(hg);
  const texts = events.map((e) => e.json.candidates[0].content.parts[0].text);
  assert.deepEqual(texts.map((t) => t.length), [6, 1000, 1000, 1000, 1000, 1000]);
  assert.equal(texts.join(''), `echo: ${'x'.repeat(5000)}`);

  await fake.next('openai', 'ctype', { shape: 'html' });
  const html = await post(url, chat, HDR.openai);
  assert.match(html.headers.get('content-type'), /text\/html/);
  assert.match(await html.text(), /FAKE_PROVIDER_INTERNAL_DETAIL/);
  await fake.next('openai', 'ctype', { shape: 'json' });
  const js = await post(url, { ...chat, stream: true }, HDR.openai);
  assert.match(js.headers.get('content-type'), /application\/json/);
  assert.equal((await js.json()).object, 'chat.completion');
  await fake.next('openai', 'ctype', { shape: 'sse', type: 'text/plain' });
  const ss = await post(url, chat, HDR.openai);
  assert.match(ss.headers.get('content-type'), /text\/plain/);
  assert.match(await ss.text(), /^data: /);

  await fake.next('anthropic', 'badjson', { mid: true });
  const bm = await post('/anthropic/v1/messages', { model: 'claude-sonnet-4-6', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'mid' }] }, HDR.anthropic);
  const mid = await readSSE(bm);
  assert.equal(mid.events[0].event, 'message_start', 'valid events first');
  assert.equal(mid.events[mid.events.length - 1].json, undefined, 'then an unreadable one');
});
