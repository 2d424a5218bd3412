// POST /v1/chat/completions through the official openai client, for every provider, stream and
// non-stream: the answer, usage and cost, the usage row, and the exact request the provider got.
'use strict';

const { describe, test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const {
  startEnv, readSSE, expectedCostMicros, FAKE_KEYS, FAKE_USAGE, REQUEST_ID_RE, assertNoSecrets,
} = require('./harness');

const T = { timeout: 20000 };
const SYSTEM = 'You are terse.';

const CASES = [
  { provider: 'openai', model: 'gpt-4o' },
  { provider: 'openai', model: 'o3' },
  { provider: 'anthropic', model: 'claude-sonnet-4-6' },
  { provider: 'gemini', model: 'gemini-2.5-flash' },
  { provider: 'xai', model: 'grok-3' },
  { provider: 'perplexity', model: 'sonar-pro' },
];

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

let env;
let client;

before(async () => {
  env = await startEnv();
  client = env.client();
}, { timeout: 60000 });
after(async () => { if (env) await env.stop(); }, { timeout: 20000 });
beforeEach(async () => { if (env) await env.fake.reset(); }, { timeout: 10000 });

function expectedCost(model) {
  return expectedCostMicros(model, FAKE_USAGE[model]);
}

function checkUsageObject(usage, model) {
  const u = FAKE_USAGE[model];
  assert.ok(usage, 'usage present');
  assert.equal(usage.prompt_tokens, u.input, 'prompt_tokens');
  assert.equal(usage.completion_tokens, u.output, 'completion_tokens');
  assert.equal(usage.total_tokens, u.input + u.output, 'total_tokens');
  assert.equal(usage.prompt_tokens_details?.cached_tokens, u.cached, 'prompt_tokens_details.cached_tokens');
  assert.equal(usage.completion_tokens_details?.reasoning_tokens, u.reasoning, 'completion_tokens_details.reasoning_tokens');
  assert.equal(typeof usage.cost_usd, 'number', 'usage.cost_usd is a number');
  assert.equal(Math.round(usage.cost_usd * 1e6), expectedCost(model), `usage.cost_usd (${usage.cost_usd}) in micro-USD`);
}

async function checkUsageRow(requestId, model, provider, { stream }) {
  const u = FAKE_USAGE[model];
  const row = await env.waitUsage(requestId);
  assert.ok(row, `usage row for ${requestId}`);
  assert.equal(row.state, 'settled', 'row.state');
  assert.equal(row.status, 200, 'row.status');
  assert.equal(row.provider, provider, 'row.provider');
  assert.equal(row.model, model, 'row.model');
  assert.equal(row.tokens_in, u.input, 'row.tokens_in');
  assert.equal(row.tokens_out, u.output, 'row.tokens_out');
  assert.equal(row.cached_tokens, u.cached, 'row.cached_tokens');
  assert.equal(row.reasoning_tokens, u.reasoning, 'row.reasoning_tokens');
  assert.equal(row.cost_micros, expectedCost(model), 'row.cost_micros');
  if (stream) assert.ok(row.cost_micros > 0, 'a streamed request is never recorded at cost 0');
  if (row.stream !== undefined && row.stream !== null) assert.equal(Number(row.stream), stream ? 1 : 0, 'row.stream');
  return row;
}

function textOfContent(c) {
  return typeof c === 'string' ? c : (Array.isArray(c) ? c.map((p) => p.text).join('') : undefined);
}

function systemText(sys) {
  if (typeof sys === 'string') return sys;
  if (Array.isArray(sys)) return sys.map((b) => b.text).join('');
  return undefined;
}

// What the fake received must be that provider's own format, with its credential.
async function checkUpstreamRequest(provider, model, { stream, prompt }) {
  const reqs = await env.fake.requests(provider);
  assert.equal(reqs.length, 1, `${provider} got exactly one request`);
  const r = reqs[0];
  const b = r.body;
  assert.equal(r.method, 'POST');
  assert.equal(r.aborted, false, 'the gateway read the whole answer');
  assert.ok(!JSON.stringify(r.headers).includes(env.apiKey), 'the caller\'s gateway key is not forwarded upstream');
  assert.ok(!JSON.stringify(r.body).includes(env.apiKey), 'nor put in the upstream body');
  for (const [p, k] of Object.entries(FAKE_KEYS)) {
    if (p !== provider) assert.ok(!JSON.stringify(r.headers).includes(k), `${provider} request does not carry the ${p} key`);
  }
  if (provider === 'anthropic') {
    assert.equal(r.path, '/v1/messages');
    assert.equal(r.headers['x-api-key'], FAKE_KEYS.anthropic);
    assert.ok(r.headers['anthropic-version'], 'anthropic-version header');
    assert.equal(b.model, model);
    assert.equal(systemText(b.system), SYSTEM, 'system prompt is top-level');
    assert.ok(b.messages.every((m) => m.role === 'user' || m.role === 'assistant'), 'no system role in messages');
    const last = b.messages[b.messages.length - 1];
    assert.equal(last.role, 'user');
    const lastText = typeof last.content === 'string' ? last.content : last.content.map((c) => c.text).join('');
    assert.equal(lastText, prompt);
    assert.equal(typeof b.max_tokens, 'number', 'max_tokens is set (required by Anthropic)');
    assert.ok(b.max_tokens > 0);
    assert.equal(b.stream === true, stream, 'stream flag');
  } else if (provider === 'gemini') {
    assert.equal(r.path, `/v1beta/models/${model}:${stream ? 'streamGenerateContent' : 'generateContent'}`);
    if (stream) assert.equal(r.query.alt, 'sse', 'alt=sse');
    assert.equal(r.query.key, undefined, 'no key in the query string');
    assert.equal(r.headers['x-goog-api-key'], FAKE_KEYS.gemini);
    assert.equal(b.messages, undefined, 'no OpenAI messages field');
    assert.ok(Array.isArray(b.contents), 'contents[]');
    const last = b.contents[b.contents.length - 1];
    assert.equal(last.role, 'user');
    assert.equal(last.parts.map((p) => p.text).join(''), prompt);
    assert.equal(b.systemInstruction?.parts?.map((p) => p.text).join(''), SYSTEM, 'systemInstruction');
    assert.ok(!b.contents.some((c) => c.role === 'system'), 'no system role in contents');
  } else {
    assert.equal(r.path, provider === 'perplexity' ? '/chat/completions' : '/v1/chat/completions');
    assert.equal(r.headers.authorization, `Bearer ${FAKE_KEYS[provider]}`);
    assert.equal(b.model, model);
    // o-series models may get the system prompt as a "developer" message
    const sysRoles = model === 'o3' ? ['system', 'developer'] : ['system'];
    assert.equal(b.messages.length, 2, 'system + user');
    assert.ok(sysRoles.includes(b.messages[0].role), `first message role ${b.messages[0].role}`);
    assert.equal(textOfContent(b.messages[0].content), SYSTEM);
    assert.equal(b.messages[1].role, 'user');
    const userText = typeof b.messages[1].content === 'string' ? b.messages[1].content
      : b.messages[1].content.map((c) => c.text).join('');
    assert.equal(userText, prompt);
    assert.equal(b.stream === true, stream, 'stream flag');
    if (stream && (provider === 'openai' || provider === 'xai')) {
      assert.equal(b.stream_options?.include_usage, true, 'the gateway asks for stream usage');
    }
    for (const k of ['auto_route', 'conversation_id', 'provider']) assert.equal(b[k], undefined, `gateway extension ${k} not forwarded`);
  }
  return r;
}

describe('non-stream chat completions', () => {
  for (const { provider, model } of CASES) {
    test(`${model} (${provider}) non-stream: echo answer, provider/route_method, usage + cost_usd, settled usage row, ${provider}-format upstream request`, T, async () => {
      const prompt = `hello ${provider} ${model}`;
      const { data, response } = await client.chat.completions.create({
        model,
        messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: prompt }],
      }).withResponse();
      const rid = response.headers.get('x-request-id');
      assert.match(rid || '', REQUEST_ID_RE, 'X-Request-Id header');
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.model, model, 'model is the one asked for');
      assert.equal(data.provider, provider);
      assert.equal(data.route_method, 'explicit');
      assert.equal(data.choices.length, 1);
      assert.equal(data.choices[0].message.role, 'assistant');
      assert.equal(data.choices[0].message.content, `echo: ${prompt}`);
      assert.equal(data.choices[0].finish_reason, 'stop');
      checkUsageObject(data.usage, model);
      await checkUsageRow(rid, model, provider, { stream: false });
      await checkUpstreamRequest(provider, model, { stream: false, prompt });
    });
  }
});

describe('streamed chat completions', () => {
  for (const { provider, model } of CASES) {
    test(`${model} (${provider}) stream: chunks echo the prompt, finish stop, usage chunk with cost_usd, [DONE], settled row with non-zero cost, ${provider}-format stream request`, T, async () => {
      const prompt = `stream to ${provider} ${model}`;
      const { data: stream, response } = await client.chat.completions.create({
        model,
        messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: prompt }],
        stream: true,
        stream_options: { include_usage: true },
      }).withResponse();
      const rid = response.headers.get('x-request-id');
      assert.match(rid || '', REQUEST_ID_RE, 'X-Request-Id header');
      assert.match(response.headers.get('content-type') || '', /^text\/event-stream/);
      let text = '';
      let finish = null;
      let usageChunk = null;
      let n = 0;
      for await (const chunk of stream) {
        n += 1;
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.equal(chunk.model, model, 'chunk.model is the one asked for');
        if (chunk.choices.length === 0) {
          assert.ok(chunk.usage, 'a chunk without choices carries usage');
          usageChunk = chunk;
          continue;
        }
        assert.equal(usageChunk, null, 'the usage chunk is the last one');
        const c = chunk.choices[0];
        if (c.delta && typeof c.delta.content === 'string') text += c.delta.content;
        if (c.finish_reason) finish = c.finish_reason;
      }
      assert.ok(n >= 2, 'several chunks');
      assert.equal(text, `echo: ${prompt}`);
      assert.equal(finish, 'stop');
      assert.ok(usageChunk, 'final usage chunk (choices: []) present');
      checkUsageObject(usageChunk.usage, model);
      await checkUsageRow(rid, model, provider, { stream: true });
      await checkUpstreamRequest(provider, model, { stream: true, prompt });
    });
  }

  test('gpt-4o stream over raw SSE: data: lines, ends with data: [DONE], usage chunk has choices: []', T, async () => {
    const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'raw sse' }] }),
      signal: AbortSignal.timeout(8000),
    });
    assert.equal(res.status, 200);
    const { events, done } = await readSSE(res);
    assert.equal(done, true, 'ends with [DONE]');
    assert.equal(events[events.length - 1].data, '[DONE]', '[DONE] is the last event');
    const usage = events.filter((e) => e.json && Array.isArray(e.json.choices) && e.json.choices.length === 0);
    assert.equal(usage.length, 1, 'exactly one usage chunk');
    assert.equal(typeof usage[0].json.usage.cost_usd, 'number');
    assert.ok(events.every((e) => e.data === '[DONE]' || e.json), 'every data line is JSON');
  });

  test('claude-sonnet-4-6 stream without stream_options still records the full cost (gateway asks upstream for usage)', T, async () => {
    const { data: stream, response } = await client.chat.completions.create({
      model: 'claude-sonnet-4-6',
      messages: [{ role: 'user', content: 'no usage asked' }],
      stream: true,
    }).withResponse();
    const rid = response.headers.get('x-request-id');
    let text = '';
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
    }
    assert.equal(text, 'echo: no usage asked');
    const row = await env.waitUsage(rid);
    assert.equal(row.state, 'settled');
    assert.equal(row.cost_micros, expectedCost('claude-sonnet-4-6'));
  });

  test('gpt-4o stream without stream_options: gateway still sends include_usage upstream and records the full cost', T, async () => {
    const { data: stream, response } = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'no usage asked' }],
      stream: true,
    }).withResponse();
    const rid = response.headers.get('x-request-id');
    let text = '';
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
    }
    assert.equal(text, 'echo: no usage asked');
    const [r] = await env.fake.requests('openai');
    assert.equal(r.body.stream_options?.include_usage, true);
    const row = await env.waitUsage(rid);
    assert.equal(row.state, 'settled');
    assert.equal(row.cost_micros, expectedCost('gpt-4o'));
  });
});

describe('request translation details', () => {
  test('o3 (reasoning): max_tokens is sent upstream as max_completion_tokens (not max_tokens)', T, async () => {
    const data = await client.chat.completions.create({
      model: 'o3', max_tokens: 77, messages: [{ role: 'user', content: 'think' }],
    });
    assert.equal(data.choices[0].message.content, 'echo: think');
    const [r] = await env.fake.requests('openai');
    assert.equal(r.body.max_completion_tokens, 77);
    assert.equal(r.body.max_tokens, undefined);
  });

  test('claude-sonnet-4-6: max_tokens and temperature reach Anthropic unchanged', T, async () => {
    await client.chat.completions.create({
      model: 'claude-sonnet-4-6', max_tokens: 123, temperature: 0.3,
      messages: [{ role: 'user', content: 'params' }],
    });
    const [r] = await env.fake.requests('anthropic');
    assert.equal(r.body.max_tokens, 123);
    assert.equal(r.body.temperature, 0.3);
  });

  test('gemini-2.5-flash: max_tokens and temperature become generationConfig.maxOutputTokens/temperature', T, async () => {
    await client.chat.completions.create({
      model: 'gemini-2.5-flash', max_tokens: 55, temperature: 0.4,
      messages: [{ role: 'user', content: 'params' }],
    });
    const [r] = await env.fake.requests('gemini');
    assert.equal(r.body.generationConfig?.maxOutputTokens, 55);
    assert.equal(r.body.generationConfig?.temperature, 0.4);
  });

  test('claude-sonnet-4-6: multi-turn assistant/user history keeps its order and roles', T, async () => {
    const data = await client.chat.completions.create({
      model: 'claude-sonnet-4-6',
      messages: [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'reply one' },
        { role: 'user', content: 'second' },
      ],
    });
    assert.equal(data.choices[0].message.content, 'echo: second');
    const [r] = await env.fake.requests('anthropic');
    assert.deepEqual(r.body.messages.map((m) => m.role), ['user', 'assistant', 'user']);
  });

  test('gemini-2.5-flash: assistant turns become role "model" in contents', T, async () => {
    await client.chat.completions.create({
      model: 'gemini-2.5-flash',
      messages: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'reply one' },
        { role: 'user', content: 'second' },
      ],
    });
    const [r] = await env.fake.requests('gemini');
    assert.deepEqual(r.body.contents.map((c) => c.role), ['user', 'model', 'user']);
  });

  test('user content given as text parts arrays reaches each provider as the same text', T, async () => {
    for (const model of ['gpt-4o', 'claude-sonnet-4-6', 'gemini-2.5-flash']) {
      const data = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'part one, ' }, { type: 'text', text: 'part two' }] }],
      });
      assert.equal(data.choices[0].message.content, 'echo: part one, part two', model);
    }
  });
});

describe('tool calls', () => {
  for (const { provider, model } of CASES.filter((c) => ['gpt-4o', 'claude-sonnet-4-6', 'gemini-2.5-flash', 'grok-3'].includes(c.model))) {
    test(`${model} (${provider}) non-stream tools: tools translated upstream, answer is an OpenAI tool_call get_weather {"city":"Paris"} with finish tool_calls`, T, async () => {
      const data = await client.chat.completions.create({
        model, tools: [WEATHER_TOOL], messages: [{ role: 'user', content: 'weather in Paris?' }],
      });
      const c = data.choices[0];
      assert.equal(c.finish_reason, 'tool_calls');
      assert.equal(c.message.tool_calls?.length, 1);
      const tc = c.message.tool_calls[0];
      assert.equal(tc.type, 'function');
      assert.equal(typeof tc.id, 'string');
      assert.ok(tc.id.length > 0);
      assert.equal(tc.function.name, 'get_weather');
      assert.deepEqual(JSON.parse(tc.function.arguments), { city: 'Paris' });
      const [r] = await env.fake.requests(provider);
      if (provider === 'anthropic') {
        assert.equal(r.body.tools?.[0]?.name, 'get_weather');
        assert.deepEqual(r.body.tools[0].input_schema, WEATHER_TOOL.function.parameters);
      } else if (provider === 'gemini') {
        const fd = r.body.tools?.[0]?.functionDeclarations?.[0];
        assert.equal(fd?.name, 'get_weather');
        assert.ok(fd.parameters, 'parameters forwarded');
      } else {
        assert.equal(r.body.tools?.[0]?.function?.name, 'get_weather');
      }
    });
  }

  for (const { provider, model } of CASES.filter((c) => ['gpt-4o', 'claude-sonnet-4-6', 'gemini-2.5-flash'].includes(c.model))) {
    test(`${model} (${provider}) stream tools: tool_call deltas assemble to get_weather {"city":"Paris"}, finish tool_calls`, T, async () => {
      const stream = await client.chat.completions.create({
        model, tools: [WEATHER_TOOL], stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'weather in Paris?' }],
      });
      let name = '';
      let args = '';
      let id = null;
      let finish = null;
      for await (const chunk of stream) {
        const c = chunk.choices[0];
        if (!c) continue;
        for (const tc of c.delta?.tool_calls || []) {
          assert.equal(tc.index, 0);
          if (tc.id) id = tc.id;
          if (tc.function?.name) name += tc.function.name;
          if (tc.function?.arguments) args += tc.function.arguments;
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
      assert.ok(id, 'tool call id');
      assert.equal(name, 'get_weather');
      assert.deepEqual(JSON.parse(args), { city: 'Paris' });
      assert.equal(finish, 'tool_calls');
    });
  }

  test('claude-sonnet-4-6: assistant tool_calls + tool message become tool_use and a user tool_result block', T, async () => {
    const data = await client.chat.completions.create({
      model: 'claude-sonnet-4-6',
      tools: [WEATHER_TOOL],
      messages: [
        { role: 'user', content: 'weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'toolu_01', content: '18C sunny' },
      ],
    });
    assert.equal(data.choices[0].message.content, 'echo: tool result: 18C sunny');
    const [r] = await env.fake.requests('anthropic');
    const msgs = r.body.messages;
    assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user']);
    const tu = msgs[1].content.find((b) => b.type === 'tool_use');
    assert.equal(tu.id, 'toolu_01');
    assert.equal(tu.name, 'get_weather');
    assert.deepEqual(tu.input, { city: 'Paris' });
    const tr = msgs[2].content.find((b) => b.type === 'tool_result');
    assert.equal(tr.tool_use_id, 'toolu_01');
  });

  test('gemini-2.5-flash: assistant tool_calls + tool message become functionCall and functionResponse parts', T, async () => {
    const data = await client.chat.completions.create({
      model: 'gemini-2.5-flash',
      tools: [WEATHER_TOOL],
      messages: [
        { role: 'user', content: 'weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_01', content: '18C sunny' },
      ],
    });
    assert.match(data.choices[0].message.content, /^echo: tool result: /);
    const [r] = await env.fake.requests('gemini');
    const parts = r.body.contents.flatMap((c) => c.parts);
    const fc = parts.find((p) => p.functionCall);
    assert.equal(fc?.functionCall?.name, 'get_weather');
    assert.deepEqual(fc.functionCall.args, { city: 'Paris' });
    const fr = parts.find((p) => p.functionResponse);
    assert.equal(fr?.functionResponse?.name, 'get_weather');
  });
});

test('the gateway log holds no provider key and no raw API key', T, async () => {
  const log = env.log();
  assertNoSecrets(assert, log, [env.apiKey]);
});
