// POST /v1/messages — the Anthropic Messages dialect (issue 12) — through the official
// @anthropic-ai/sdk client for a model of every provider: messages, streams with
// .finalMessage(), tools (and streamed tool input), tool results, system blocks; the exact event
// sequence; errors in Anthropic's shape; thinking and cache_control reaching Anthropic only;
// count_tokens (Anthropic's own count for its models, the gateway's estimate for the others).
'use strict';

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, FAKE_USAGE, PROVIDER_MODELS, expectedCostMicros, assertNoSecrets } = require('./harness');
const { compatMatrix } = require('./matrix');

const T = { timeout: 30000 };
const MODELS = { anthropic: PROVIDER_MODELS.anthropic, ...PROVIDER_MODELS }; // its own first
const WEATHER = { name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };

let env;
let anthropic;
const matrix = compatMatrix(Object.keys(MODELS));
const cell = matrix.cell;
before(async () => {
  env = await startEnv();
  const Anthropic = require('@anthropic-ai/sdk');
  const Ctor = Anthropic.default || Anthropic;
  anthropic = new Ctor({ baseURL: env.baseURL, apiKey: env.apiKey, maxRetries: 0, timeout: 20000 });
}, { timeout: 60000 });
after(async () => {
  if (env) await env.stop();
  matrix.print('messages matrix\n# | @anthropic-ai/sdk feature');
}, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

// Anthropic's usage for the fake's counts: input_tokens is what was neither cached nor written.
function anthropicUsage(model) {
  const u = FAKE_USAGE[model];
  return { input_tokens: u.input - u.cached - u.cacheWrite, output_tokens: u.output, cache_read_input_tokens: u.cached, cache_creation_input_tokens: u.cacheWrite };
}

async function lastUpstream(provider) {
  const reqs = await env.fake.requests(provider);
  return reqs[reqs.length - 1];
}

for (const [provider, model] of Object.entries(MODELS)) {
  test(`@anthropic-ai/sdk, ${provider} (${model}): messages.create`, T, async () => {
    await cell('messages', provider, async () => {
      const rid = `msgs-${provider}-${Date.now()}`;
      const r = await anthropic.messages.create({ model, max_tokens: 64, system: 'Be brief.', messages: [{ role: 'user', content: 'hello there' }] },
        { headers: { 'X-Request-Id': rid } });
      assert.equal(r.type, 'message');
      assert.equal(r.role, 'assistant');
      assert.equal(r.id, `msg_${rid}`);
      assert.equal(r.model, model);
      assert.deepEqual(r.content, [{ type: 'text', text: 'echo: hello there' }]);
      assert.equal(r.stop_reason, 'end_turn');
      const want = anthropicUsage(model);
      for (const k of Object.keys(want)) assert.equal(r.usage[k], want[k], `usage.${k}`);
      assert.equal(Math.round(r.usage.cost_usd * 1e6), expectedCostMicros(model, FAKE_USAGE[model]), 'cost_usd');
      const row = await env.waitUsage(rid);
      assert.equal(row.endpoint, 'messages');
      assert.equal(row.model, model);
      assert.equal(row.state, 'settled');
      assert.equal(Number(row.tokens_in), FAKE_USAGE[model].input);
      assert.equal(Number(row.tokens_out), FAKE_USAGE[model].output);
      assert.equal(Number(row.cost_micros), expectedCostMicros(model, FAKE_USAGE[model]));
      const up = await lastUpstream(provider);
      if (provider === 'anthropic') assert.equal(up.body.system, 'Be brief.');
      else if (provider === 'gemini') assert.equal(up.body.systemInstruction.parts[0].text, 'Be brief.');
      else assert.deepEqual(up.body.messages[0], { role: 'system', content: 'Be brief.' });
    });
  });

  test(`@anthropic-ai/sdk, ${provider} (${model}): stream and finalMessage()`, T, async () => {
    await cell('stream + finalMessage()', provider, async () => {
      const s = anthropic.messages.stream({ model, max_tokens: 64, messages: [{ role: 'user', content: 'stream me' }] });
      let text = '';
      s.on('text', (t) => { text += t; });
      const m = await s.finalMessage();
      assert.equal(text, 'echo: stream me');
      assert.deepEqual(m.content, [{ type: 'text', text: 'echo: stream me', ...(m.content[0].citations !== undefined ? { citations: m.content[0].citations } : {}) }]);
      assert.equal(m.stop_reason, 'end_turn');
      assert.equal(m.usage.output_tokens, FAKE_USAGE[model].output);
    });
  });

  test(`@anthropic-ai/sdk, ${provider} (${model}): tools, streamed tool input, tool results`, T, async () => {
    await cell('tools', provider, async () => {
      const r = await anthropic.messages.create({ model, max_tokens: 64, tools: [WEATHER], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
      assert.equal(r.stop_reason, 'tool_use');
      const use = r.content.find((b) => b.type === 'tool_use');
      assert.equal(use.name, 'get_weather');
      assert.deepEqual(use.input, { city: 'Paris' });
      const s = anthropic.messages.stream({ model, max_tokens: 64, tools: [WEATHER], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
      const m = await s.finalMessage();
      const su = m.content.find((b) => b.type === 'tool_use');
      assert.equal(m.stop_reason, 'tool_use');
      assert.deepEqual(su.input, { city: 'Paris' });
      // the tool's result goes back as the provider takes it
      const r2 = await anthropic.messages.create({
        model, max_tokens: 64, tools: [WEATHER],
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: [{ type: 'tool_use', id: use.id, name: 'get_weather', input: { city: 'Paris' } }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 18 C' }] },
        ],
      });
      assert.equal(r2.stop_reason, 'end_turn');
      const up = await lastUpstream(provider);
      if (provider === 'anthropic') {
        assert.equal(up.body.messages[2].content[0].type, 'tool_result');
        assert.equal(up.body.messages[2].content[0].tool_use_id, use.id);
      } else if (provider !== 'gemini') {
        assert.deepEqual(up.body.messages[2], { role: 'tool', tool_call_id: use.id, content: 'sunny, 18 C' });
      }
    }, provider === 'perplexity' ? /perplexity models do not support tools/ : null);
  });
}

test('the raw event sequence of a streamed answer (text, then a tool call) is the one the SDK expects', T, async () => {
  const res = await fetch(`${env.baseURL}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': env.apiKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'events' }] }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const raw = await res.text();
  const events = [...raw.matchAll(/^event: (\S+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1], data: JSON.parse(m[2]) }));
  const names = events.map((e) => e.event);
  assert.equal(names[0], 'message_start');
  assert.equal(names[1], 'ping');
  assert.equal(names[2], 'content_block_start');
  assert.ok(names.slice(3, -3).every((n) => n === 'content_block_delta'), names.join(','));
  assert.deepEqual(names.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  for (const e of events) assert.equal(e.data.type, e.event, 'each data names its event');
  assert.equal(events.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta.text).join(''), 'echo: events');
  const md = events.find((e) => e.event === 'message_delta').data;
  assert.equal(md.delta.stop_reason, 'end_turn');
  assert.equal(md.usage.output_tokens, FAKE_USAGE['gpt-4o'].output);
  assert.ok(!raw.includes('[DONE]') && !raw.includes('chat.completion'), 'nothing of the OpenAI stream');
});

test('errors in Anthropic\'s shape: a bad key (401), a missing max_tokens (400), an unknown model (404), a provider\'s refusal (400, its text kept back)', T, async () => {
  const Anthropic = require('@anthropic-ai/sdk');
  const Ctor = Anthropic.default || Anthropic;
  const bad = new Ctor({ baseURL: env.baseURL, apiKey: 'llmgw_not-a-real-key-0000000000000000000000000', maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: 'gpt-4o', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 401 && e.error?.type === 'error' && e.error?.error?.type === 'authentication_error');
  const send = (body) => env.request('POST', '/v1/messages', { body, headers: { 'anthropic-version': '2023-06-01' } });
  let r = await send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(r.status, 400);
  assert.equal(r.json.type, 'error');
  assert.equal(r.json.error.type, 'invalid_request_error');
  assert.match(r.json.error.message, /max_tokens/);
  r = await send({ model: 'no-such-model', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.type, 'not_found_error');
  assert.equal(r.json.error.code, 'model_not_found');
  r = await env.request('POST', '/v1/messages', { auth: false, body: { model: 'gpt-4o', max_tokens: 5, messages: [] } });
  assert.equal(r.status, 401);
  assert.equal(r.json.error.type, 'authentication_error');
  // the provider refuses: its reason stays in the gateway's log
  await env.fake.next('anthropic', 'status', { status: 400 });
  await assert.rejects(anthropic.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error?.error?.type, 'invalid_request_error');
      assert.equal(e.error?.error?.code, 'upstream_rejected_request');
      assertNoSecrets(assert, JSON.stringify(e.error));
      return true;
    });
});

test('a stream that fails midway ends with an error event', T, async () => {
  await env.fake.next('openai', 'truncate', { mode: 'destroy' });
  const res = await fetch(`${env.baseURL}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': env.apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'break' }] }),
  });
  const raw = await res.text();
  const names = [...raw.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
  assert.equal(names[0], 'message_start');
  assert.equal(names[names.length - 1], 'error');
  assert.ok(!names.includes('message_stop'));
});

test('thinking, top_k and cache_control reach Anthropic as sent, and no other provider; stop_sequences and metadata.user_id reach both in their form', T, async () => {
  const body = {
    max_tokens: 2048, top_k: 5, thinking: { type: 'enabled', budget_tokens: 1024 }, stop_sequences: ['END', 'STOP'],
    metadata: { user_id: 'end-user-9' },
    system: [{ type: 'text', text: 'Long context.', cache_control: { type: 'ephemeral' } }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'cached question', cache_control: { type: 'ephemeral' } }] }],
  };
  await anthropic.messages.create({ model: 'claude-sonnet-4-6', ...body });
  let up = (await lastUpstream('anthropic')).body;
  assert.deepEqual(up.thinking, body.thinking);
  assert.equal(up.top_k, 5);
  assert.deepEqual(up.system, body.system);
  assert.deepEqual(up.messages[0].content, body.messages[0].content);
  assert.deepEqual(up.stop_sequences, ['END', 'STOP']);
  assert.deepEqual(up.metadata, { user_id: 'end-user-9' });
  await anthropic.messages.create({ model: 'gpt-4o', ...body });
  up = (await lastUpstream('openai')).body;
  assert.deepEqual(up.stop, ['END', 'STOP']);
  assert.equal(up.user, 'end-user-9');
  assert.equal(up.thinking, undefined);
  assert.equal(up.top_k, undefined);
  assert.ok(!JSON.stringify(up).includes('cache_control'));
  assert.equal(up.messages[0].content[0].text, 'Long context.');
});

test('images: base64 and URL sources reach the provider in its own form', T, async () => {
  const content = [{ type: 'text', text: 'what is it?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }];
  await anthropic.messages.create({ model: 'gpt-4o', max_tokens: 20, messages: [{ role: 'user', content }] });
  const up = (await lastUpstream('openai')).body;
  assert.deepEqual(up.messages[0].content[1], { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } });
  await anthropic.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 20, messages: [{ role: 'user', content }] });
  const ua = (await lastUpstream('anthropic')).body;
  assert.deepEqual(ua.messages[0].content[1], content[1]);
});

test('count_tokens: Anthropic counts for its models, the gateway estimates for the others; nothing is spent', T, async () => {
  const req = { messages: [{ role: 'user', content: 'How many tokens is this sentence?' }], system: 'Be brief.' };
  const rows0 = (await env.query('SELECT COUNT(*) AS n FROM usage'))[0].n;
  const a = await anthropic.messages.countTokens({ model: 'claude-sonnet-4-6', ...req });
  const up = (await lastUpstream('anthropic'));
  assert.equal(up.path, '/v1/messages/count_tokens');
  assert.equal(up.body.model, 'claude-sonnet-4-6');
  assert.equal(a.input_tokens, 1000 + JSON.stringify(up.body.messages).length, 'Anthropic\'s own count');
  const raw = await env.request('POST', '/v1/messages/count_tokens', { body: { model: 'gpt-4o', ...req } });
  assert.equal(raw.status, 200);
  assert.equal(raw.headers.get('x-llmgw-token-count'), 'estimate');
  assert.ok(raw.json.input_tokens > 5 && raw.json.input_tokens < 40, `an estimate: ${raw.json.input_tokens}`);
  const r2 = await env.request('POST', '/v1/messages/count_tokens', { body: { model: 'claude-sonnet-4-6', ...req } });
  assert.equal(r2.headers.get('x-llmgw-token-count'), 'anthropic');
  const bad = await env.request('POST', '/v1/messages/count_tokens', { body: { model: 'gpt-4o' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.type, 'invalid_request_error');
  const unknown = await env.request('POST', '/v1/messages/count_tokens', { body: { model: 'nope', ...req } });
  assert.equal(unknown.status, 404);
  assert.equal((await env.query('SELECT COUNT(*) AS n FROM usage'))[0].n, rows0, 'no usage row');
});

test('Idempotency-Key: a streamed Messages answer replays as the same events', T, async () => {
  const send = () => fetch(`${env.baseURL}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': env.apiKey, 'content-type': 'application/json', 'idempotency-key': 'msg-idem-1' },
    body: JSON.stringify({ model: 'gpt-4o', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'once' }] }),
  }).then(async (r) => ({ status: r.status, replayed: r.headers.get('idempotent-replayed'), text: await r.text() }));
  const first = await send();
  let second;
  for (let i = 0; i < 40; i++) {
    second = await send();
    if (second.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  assert.equal(second.replayed, 'true');
  assert.equal(second.text, first.text);
  assert.equal((await env.fake.requests('openai')).length, 1, 'executed once');
});

test('to an Anthropic model the answer is Anthropic\'s own: thinking blocks and signatures kept, streamed as sent', T, async () => {
  const body = { model: 'claude-sonnet-4-6', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'think first' }] };
  const r = await anthropic.messages.create(body);
  assert.deepEqual(r.content, [
    { type: 'thinking', thinking: 'Let me think about that.', signature: 'sig-fake-1' },
    { type: 'text', text: 'echo: think first' },
  ]);
  assert.equal(r.usage.cache_creation_input_tokens, FAKE_USAGE['claude-sonnet-4-6'].cacheWrite);
  assert.ok(r.usage.cost_usd > 0);
  const s = anthropic.messages.stream(body);
  let thinking = '';
  s.on('thinking', (t) => { thinking += t; });
  const m = await s.finalMessage();
  assert.equal(thinking, 'Let me think about that.');
  assert.deepEqual(m.content, r.content);
  assert.match(m.id, /^msg_req_|^msg_/);
  assert.equal(m.model, 'claude-sonnet-4-6');
  assert.equal(m.usage.output_tokens, FAKE_USAGE['claude-sonnet-4-6'].output);
  // and a later turn can hand the thinking back: to Anthropic as it was, to others without it
  const turns = [{ role: 'user', content: 'think first' }, { role: 'assistant', content: r.content }, { role: 'user', content: 'and then?' }];
  await anthropic.messages.create({ ...body, messages: turns });
  assert.deepEqual((await lastUpstream('anthropic')).body.messages[1].content[0].type, 'thinking');
  await anthropic.messages.create({ ...body, model: 'gpt-4o', messages: turns });
  const up = (await lastUpstream('openai')).body;
  assert.deepEqual(up.messages[1], { role: 'assistant', content: [{ type: 'text', text: 'echo: think first' }] });
});

test('parallel tool calls: two tool_use blocks, whole and streamed, from an Anthropic model and from the others', T, async () => {
  for (const model of ['claude-sonnet-4-6', 'gpt-4o', 'gemini-2.5-flash']) {
    const body = { model, max_tokens: 64, tools: [WEATHER], messages: [{ role: 'user', content: 'parallel: Paris and Rome?' }] };
    const r = await anthropic.messages.create(body);
    assert.deepEqual(r.content.filter((b) => b.type === 'tool_use').map((b) => b.input), [{ city: 'Paris' }, { city: 'Rome' }], model);
    const m = await anthropic.messages.stream(body).finalMessage();
    assert.deepEqual(m.content.filter((b) => b.type === 'tool_use').map((b) => b.input), [{ city: 'Paris' }, { city: 'Rome' }], `${model} streamed`);
    assert.equal(new Set(m.content.map((b) => b.id)).size, 2, 'distinct ids');
  }
});

test('to an Anthropic model the request goes as the client sent it (documents, server tools, is_error, members the gateway does not know); elsewhere those are refused by name', T, async () => {
  const body = {
    model: 'claude-sonnet-4-6', max_tokens: 64, context_management: { edits: [] },
    tools: [WEATHER, { type: 'web_search_20250305', name: 'web_search', max_uses: 1 }],
    messages: [
      { role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'A memo.' } }, { type: 'text', text: 'summarize the memo' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_9', name: 'get_weather', input: { city: 'Oslo' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_9', is_error: true, content: 'no such city' }, { type: 'text', text: 'try again' }] },
    ],
  };
  const rid = `native-${Date.now()}`;
  await anthropic.messages.create(body, { headers: { 'X-Request-Id': rid } });
  const up = (await lastUpstream('anthropic')).body;
  const { model, ...rest } = up;
  assert.equal(model, 'claude-sonnet-4-6');
  const { model: _m, ...sent } = body;
  assert.deepEqual(rest, sent, 'the body as the client sent it');
  assert.equal((await env.waitUsage(rid)).state, 'settled');
  // the same to another provider: refused by name, nothing sent
  const before = (await env.fake.requests('openai')).length;
  await assert.rejects(anthropic.messages.create({ ...body, model: 'gpt-4o' }),
    (e) => e.status === 400 && /can go to an Anthropic model only/.test(e.message) && /context_management|document|web_search/.test(e.message));
  assert.equal((await env.fake.requests('openai')).length, before);
  // with conversation memory the canonical form is what goes, so such a request is refused too
  await assert.rejects(anthropic.messages.create({ ...body, conversation_id: `conv-native-${Date.now()}` }),
    (e) => e.status === 400 && /without conversation_id/.test(e.message));
});
