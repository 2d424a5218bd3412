// Client compatibility (issue 12): the official clients people already use, unchanged, against
// the gateway, for a model of every provider behind it — the `openai` client (chat, stream,
// tools, JSON mode) and the Vercel AI SDK (`ai` with `@ai-sdk/openai-compatible`: generateText,
// streamText). A provider that lacks a feature must answer a clear 400 naming it; that is the
// cell's expected result. The matrix is printed at the end (the README's table).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEnv, PROVIDER_MODELS } = require('./harness');
const { compatMatrix } = require('./matrix');

const T = { timeout: 30000 };
const MODELS = PROVIDER_MODELS;
const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
// Features a provider lacks: the gateway's 400 and the words it must say.
const NO_TOOLS = { perplexity: /perplexity models do not support tools/ };
const LACKS = {
  'openai/tools': NO_TOOLS,
  'openai/parallel tool calls': NO_TOOLS,
  'openai/n > 1': { anthropic: /n must be 1/, gemini: /n must be 1/, perplexity: /n must be 1/ },
  'openai/logprobs': { anthropic: /'logprobs' is not supported by anthropic models/,
    gemini: /'logprobs' is not supported by gemini models/, perplexity: /'logprobs' is not supported by perplexity models/ },
  'openai/json': { anthropic: /'response_format' is not supported by anthropic models/,
    perplexity: /perplexity models take response_format json_schema, not json_object/ },
};

let env;
const matrix = compatMatrix(Object.keys(MODELS));
before(async () => { env = await startEnv(); }, { timeout: 60000 });
after(async () => {
  if (env) await env.stop();
  matrix.print('compat matrix\n# | client / feature');
}, { timeout: 20000 });

// One cell of the table (matrix.js): where the provider lacks the feature, LACKS says the 400.
const cell = (feature, provider, fn) => matrix.cell(feature, provider, fn, (LACKS[feature] || {})[provider]);

async function lastUpstreamBody(provider) {
  const reqs = await env.fake.requests(provider);
  return reqs[reqs.length - 1].body;
}

for (const [provider, model] of Object.entries(MODELS)) {
  test(`openai client, ${provider} (${model}): chat`, T, async () => {
    await cell('openai/chat', provider, async () => {
      const r = await env.client().chat.completions.create({ model, messages: [{ role: 'user', content: 'compat chat' }] });
      assert.equal(r.choices[0].message.content, 'echo: compat chat');
      assert.ok(r.usage.prompt_tokens > 0 && typeof r.usage.cost_usd === 'number');
    });
  });

  test(`openai client, ${provider} (${model}): stream`, T, async () => {
    await cell('openai/stream', provider, async () => {
      const s = await env.client().chat.completions.create({
        model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'compat stream' }],
      });
      let text = '';
      let usage = null;
      for await (const ch of s) {
        text += ch.choices[0]?.delta?.content || '';
        if (ch.usage) usage = ch.usage;
      }
      assert.equal(text, 'echo: compat stream');
      assert.ok(usage && usage.completion_tokens > 0, 'usage on the last chunk');
    });
  });

  test(`openai client, ${provider} (${model}): tools (and streamed tool-call deltas)`, T, async () => {
    await cell('openai/tools', provider, async () => {
      const r = await env.client().chat.completions.create({ model, tools: [WEATHER], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
      const call = r.choices[0].message.tool_calls[0];
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
      assert.equal(call.function.name, 'get_weather');
      assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
      const s = await env.client().chat.completions.create({ model, stream: true, tools: [WEATHER], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
      const args = {};
      const names = {};
      let finish = null;
      for await (const ch of s) {
        for (const tc of ch.choices[0]?.delta?.tool_calls || []) {
          args[tc.index] = (args[tc.index] || '') + (tc.function?.arguments || '');
          if (tc.function?.name) names[tc.index] = tc.function.name;
        }
        finish = ch.choices[0]?.finish_reason || finish;
      }
      assert.equal(finish, 'tool_calls');
      assert.equal(names[0], 'get_weather');
      assert.deepEqual(JSON.parse(args[0]), { city: 'Paris' });
    });
  });

  if (provider === 'openai') {
    test('openai client, o3 (a reasoning model): max_completion_tokens and reasoning_effort; reasoning_effort refused on gpt-4o', T, async () => {
      await cell('openai/reasoning_effort', provider, async () => {
        const r = await env.client().chat.completions.create({ model: 'o3', max_completion_tokens: 200, reasoning_effort: 'low', messages: [{ role: 'user', content: 'think' }] });
        assert.equal(r.choices[0].message.content, 'echo: think');
        assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
        const sent = await lastUpstreamBody('openai');
        assert.equal(sent.max_completion_tokens, 200);
        assert.equal(sent.reasoning_effort, 'low');
        await assert.rejects(env.client().chat.completions.create({ model: 'gpt-4o', reasoning_effort: 'low', messages: [{ role: 'user', content: 'x' }] }),
          (e) => e.status === 400 && /reasoning_effort/.test(e.message));
      });
    });
  }

  test(`openai client, ${provider} (${model}): JSON mode`, T, async () => {
    await cell('openai/json', provider, async () => {
      const r = await env.client().chat.completions.create({
        model, response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'json please' }],
      });
      assert.equal(r.choices[0].message.content, 'echo: json please');
      const sent = await lastUpstreamBody(provider);
      if (provider === 'gemini') assert.equal(sent.generationConfig.responseMimeType, 'application/json');
      else assert.deepEqual(sent.response_format, { type: 'json_object' });
    });
    if (provider === 'perplexity' || provider === 'gemini') {
      // json_schema: what Perplexity takes, and Gemini's responseJsonSchema
      const schema = { type: 'object', properties: { a: { type: 'string' } } };
      const r = await env.client().chat.completions.create({
        model, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } }, messages: [{ role: 'user', content: 'schema please' }],
      });
      assert.equal(r.choices[0].message.content, 'echo: schema please');
      const sent = await lastUpstreamBody(provider);
      if (provider === 'gemini') assert.deepEqual(sent.generationConfig.responseJsonSchema, schema);
      else assert.deepEqual(sent.response_format.json_schema.schema, schema);
    }
  });

  test(`openai client, ${provider} (${model}): parallel tool calls, whole and streamed`, T, async () => {
    await cell('openai/parallel tool calls', provider, async () => {
      const messages = [{ role: 'user', content: 'parallel: weather in Paris and Rome?' }];
      const r = await env.client().chat.completions.create({ model, tools: [WEATHER], messages });
      assert.deepEqual(r.choices[0].message.tool_calls.map((t) => JSON.parse(t.function.arguments)), [{ city: 'Paris' }, { city: 'Rome' }]);
      const ids = r.choices[0].message.tool_calls.map((t) => t.id);
      assert.equal(new Set(ids).size, 2, 'distinct call ids');
      const s = await env.client().chat.completions.create({ model, stream: true, tools: [WEATHER], messages });
      const args = {};
      for await (const ch of s) {
        for (const tc of ch.choices[0]?.delta?.tool_calls || []) args[tc.index] = (args[tc.index] || '') + (tc.function?.arguments || '');
      }
      assert.deepEqual(Object.values(args).map((a) => JSON.parse(a)), [{ city: 'Paris' }, { city: 'Rome' }]);
      // both results go back in one turn
      const r2 = await env.client().chat.completions.create({
        model, tools: [WEATHER], messages: [...messages, r.choices[0].message,
          { role: 'tool', tool_call_id: ids[0], content: 'sunny' }, { role: 'tool', tool_call_id: ids[1], content: 'rain' }],
      });
      assert.equal(r2.choices[0].finish_reason, 'stop');
    });
  });

  test(`openai client, ${provider} (${model}): n, logprobs, user`, T, async () => {
    await cell('openai/n > 1', provider, async () => {
      const rid = `n2-${provider}-${Date.now()}`;
      const r = await env.client().chat.completions.create({ model, n: 2, max_tokens: 100, messages: [{ role: 'user', content: 'two' }] },
        { headers: { 'X-Request-Id': rid } });
      assert.equal(r.choices.length, 2);
      assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
      const one = `n1-${provider}-${Date.now()}`;
      await env.client().chat.completions.create({ model, max_tokens: 100, messages: [{ role: 'user', content: 'two' }] },
        { headers: { 'X-Request-Id': one } });
      const [a, b] = [await env.waitUsage(rid), await env.waitUsage(one)];
      const more = Number(a.reserved_tokens) - Number(b.reserved_tokens); // (+ the few bytes of "n":2)
      assert.ok(more >= 100 && more < 110, `each choice reserves its max_tokens: ${more} more`);
    });
    await cell('openai/logprobs', provider, async () => {
      await env.client().chat.completions.create({ model, logprobs: true, top_logprobs: 2, messages: [{ role: 'user', content: 'lp' }] });
      const sent = await lastUpstreamBody(provider);
      assert.equal(sent.logprobs, true);
      assert.equal(sent.top_logprobs, 2);
    });
    await cell('openai/user', provider, async () => {
      await env.client().chat.completions.create({ model, user: 'end-user-7', messages: [{ role: 'user', content: 'who' }] });
      const sent = await lastUpstreamBody(provider);
      if (provider === 'anthropic') assert.deepEqual(sent.metadata, { user_id: 'end-user-7' });
      else if (provider !== 'gemini') assert.equal(sent.user, 'end-user-7');
    });
  });

  test(`Vercel AI SDK, ${provider} (${model}): generateText and streamText`, T, async () => {
    const { generateText, streamText } = require('ai');
    const { createOpenAICompatible } = require('@ai-sdk/openai-compatible');
    const gw = createOpenAICompatible({ name: 'llmgw', baseURL: `${env.baseURL}/v1`, apiKey: env.apiKey, includeUsage: true });
    await cell('ai/generateText', provider, async () => {
      const r = await generateText({ model: gw(model), prompt: 'compat ai', maxRetries: 0 });
      assert.equal(r.text, 'echo: compat ai');
      assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, JSON.stringify(r.usage));
    });
    await cell('ai/streamText', provider, async () => {
      const s = streamText({ model: gw(model), prompt: 'compat ai stream', maxRetries: 0, onError: () => {} });
      let text = '';
      for await (const t of s.textStream) text += t;
      assert.equal(text, 'echo: compat ai stream');
      const u = await s.usage;
      assert.ok(u.outputTokens > 0, JSON.stringify(u));
    });
  });
}
