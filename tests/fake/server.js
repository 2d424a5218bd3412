#!/usr/bin/env node
// tests/fake/server.js — a scripted fake upstream that speaks each provider's real wire format.
//
//   node tests/fake/server.js [--port N]      (default 0 = ephemeral)
//   first stdout line: "listening <port>"
//
// The gateway's base URL for provider P is http://127.0.0.1:<port>/<P>. Routes:
//   POST /openai/v1/chat/completions          OpenAI Chat Completions (stream: data: chunks + [DONE])
//   POST /xai/v1/chat/completions             same shape
//   POST /perplexity/chat/completions         same shape + citations/search_results; the stream
//                                             carries usage on the finish chunk and has no [DONE]
//   POST /anthropic/v1/messages               Anthropic Messages (stream: event:/data: pairs)
//   POST /anthropic/v1/messages/count_tokens  {input_tokens: 1000 + length of JSON(messages)}
//   POST /gemini/v1beta/models/{m}:generateContent
//   POST /gemini/v1beta/models/{m}:streamGenerateContent?alt=sse
//
// Credentials expected (anything else → that provider's real 401 shape; gemini: 400 API_KEY_INVALID):
//   openai     Authorization: Bearer fake-openai-key
//   xai        Authorization: Bearer fake-xai-key
//   perplexity Authorization: Bearer fake-perplexity-key
//   anthropic  x-api-key: fake-anthropic-key   and an anthropic-version header
//   gemini     x-goog-api-key: fake-gemini-key  and NO key in the query string
//
// Answers are deterministic: the text is "echo: " + the text of the last user message.
// Anthropic with thinking {type:"enabled"}: a thinking block (text THINKING, signature
// "sig-fake-1") comes first, streamed as thinking_delta + signature_delta. When the
// request carries tools (and the last message is not a tool result) the answer is a call to the
// first tool with arguments {"city":"Paris"}; when the question says "parallel", two calls at
// once ({"city":"Paris"}, then {"city":"Rome"}).
//
// Fixed usage numbers (the same for stream and non-stream; see USAGE below):
//   openai  (gpt-4o etc.)           prompt_tokens 120 (of which cached_tokens 20), completion_tokens 30,
//                                   reasoning_tokens 0, total 150
//   openai  reasoning (o1/o3/o4*/gpt-5*)  prompt_tokens 120 (cached 20), completion_tokens 50
//                                   (of which reasoning_tokens 20), total 170
//   xai                              prompt_tokens 100 (cached 10), completion_tokens 25, reasoning 0,
//                                   total 125  (grok-4* / *-reasoning: completion 35 incl. reasoning 10)
//   perplexity                       prompt_tokens 80, completion_tokens 40, total 120,
//                                   citation_tokens 12, num_search_queries 1,
//                                   search_context_size = request web_search_options.search_context_size
//                                   or "low"
//   anthropic                        input_tokens 100 (uncached), cache_creation_input_tokens 40,
//                                   cache_read_input_tokens 60, output_tokens 30
//                                   (stream: message_start says output_tokens 1, message_delta 30)
//   gemini                           promptTokenCount 110 (includes cachedContentTokenCount 30),
//                                   candidatesTokenCount 25, thoughtsTokenCount 15 for gemini-2.5*
//                                   models (0 otherwise, field omitted), totalTokenCount 150 (135)
//
// Scripting — per-provider FIFO queue, each entry consumed by that provider's next request:
//   POST /_control/next {provider, action, ...}
//     "status"   {status, body?, headers?}  error answer (provider-shaped body by default; a 429
//                                            carries retry-after: 2 unless headers are given)
//     "delay"    {ms}                       wait, then answer normally
//     "reset"    {rst?}                     destroy the socket without answering (rst: true =
//                                            abort it with a TCP RST instead of a FIN)
//     "hang"                                never answer
//     "truncate" {mode?}                    stream: a few events then end without the end marker
//                                            (mode "end" = clean HTTP end [default], "destroy" =
//                                            socket destroyed, "rst" = TCP RST); non-stream: half
//                                            the body, then the socket is destroyed ("rst": reset;
//                                            "end" given explicitly: half the body, chunked, then
//                                            a clean HTTP end)
//     "badjson"  {mid?}                     200 with invalid JSON (stream: an invalid data: line;
//                                            mid: true = after the content events but the last)
//     "slow"     {ms, events?}              stream with ms between events (~20 content events)
//     "big"      {repeat?, events?}         stream (openai/xai/perplexity): the echoed text
//                                            repeated `repeat` times, sent at once in `events` pieces
//     "reply"    {content, ms?}             answer normally (after ms), but with this text
//                                            (e.g. a router model's choice)
//     "stall"                               200 headers and a part of the answer (non-stream: half
//                                            the body, chunked; stream: the content events but the
//                                            last), then silence until the client closes
//     "drip"     {ms, bytes?, events?}      the whole normal answer (stream or not), `bytes`
//                                            (default 1) at a time with ms between writes (a
//                                            stream's text in `events` content events, default 3)
//     "huge"     {bytes, events?}           an answer whose text is "echo: " and then `bytes`
//                                            characters (any provider); non-stream: one body;
//                                            stream: "echo: " in one event, then the rest in
//                                            `events` (default 1) equal content events
//     "ctype"    {shape, type?}             a 200 with Content-Type `type` (default: the shape's
//                                            own) and a body of `shape`: "html" (an HTML error page
//                                            with the marker below), "json" (the whole non-stream
//                                            answer, also to a stream request), "sse" (the whole
//                                            stream, also to a non-stream request)
//   Any entry may carry {match: "text"}: it is then consumed only by a request whose raw body
//   contains that text (so concurrent tests each get their own fault); entries without match
//   are consumed first come, first served as before. The body may also be an array of entries
//   (all checked, then all queued).
//   POST /_control/reset                    clear queues and the request log
//   GET  /_requests[?provider=P]            [{provider, method, path, query, headers, body,
//                                             aborted, answered, closedByFake, action, at}]
//                                            path is relative to the provider prefix; body is the
//                                            parsed JSON (the raw string if it did not parse);
//                                            aborted = the gateway closed the connection before
//                                            the answer finished (not counting reset/truncate,
//                                            where the fake closes it: closedByFake)
//   DELETE /_requests                       clear the request log
//
// Error bodies for scripted statuses (and the "ctype" html page) contain the marker
// FAKE_PROVIDER_INTERNAL_DETAIL so tests can check it never reaches the gateway's client.
'use strict';

const http = require('node:http');

const COUNT_TOKENS_BASE = 1000; // count_tokens answers this + the length of JSON(messages)
const KEYS = {
  openai: 'fake-openai-key',
  anthropic: 'fake-anthropic-key',
  gemini: 'fake-gemini-key',
  xai: 'fake-xai-key',
  perplexity: 'fake-perplexity-key',
};
const PROVIDERS = Object.keys(KEYS);
const LEAK_MARKER = 'FAKE_PROVIDER_INTERNAL_DETAIL';

const USAGE = {
  openai: (model) => (isOpenAIReasoning(model)
    ? { prompt: 120, cached: 20, completion: 50, reasoning: 20 }
    : { prompt: 120, cached: 20, completion: 30, reasoning: 0 }),
  xai: (model) => (/^grok-4|reasoning/.test(model) && !/non-reasoning/.test(model)
    ? { prompt: 100, cached: 10, completion: 35, reasoning: 10 }
    : { prompt: 100, cached: 10, completion: 25, reasoning: 0 }),
  perplexity: () => ({ prompt: 80, cached: 0, completion: 40, reasoning: 0, citation: 12, searches: 1 }),
  anthropic: () => ({ input: 100, cache_creation: 40, cache_read: 60, output: 30 }),
  gemini: (model) => ({ prompt: 110, cached: 30, candidates: 25,
    thoughts: /^gemini-2\.5/.test(model) ? 15 : 0 }),
};

function isOpenAIReasoning(model) {
  return /^(o1|o3|o4|gpt-5)/.test(String(model || ''));
}

// ---------------------------------------------------------------- state
const queues = Object.fromEntries(PROVIDERS.map((p) => [p, []]));
let requestLog = [];
let counter = 0;
const sockets = new Set();

function nextId(prefix) {
  counter += 1;
  return `${prefix}${String(counter).padStart(6, '0')}`;
}

// ---------------------------------------------------------------- helpers
function sendJSON(res, status, obj, headers = {}) {
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .filter((p) => p && (p.type === 'text' || (p.type === undefined && typeof p.text === 'string')))
      .map((p) => p.text)
      .join('');
  }
  return '';
}

// Returns {text, toolResult} for the last user-ish message of a request in provider format P.
function lastUser(provider, body) {
  if (provider === 'gemini') {
    const contents = Array.isArray(body.contents) ? body.contents : [];
    for (let i = contents.length - 1; i >= 0; i--) {
      const c = contents[i];
      if (!c || (c.role && c.role !== 'user' && c.role !== 'function')) continue;
      const parts = Array.isArray(c.parts) ? c.parts : [];
      const fr = parts.find((p) => p && p.functionResponse);
      if (fr) return { text: JSON.stringify(fr.functionResponse.response ?? {}), toolResult: true };
      return { text: parts.filter((p) => p && typeof p.text === 'string').map((p) => p.text).join(''), toolResult: false };
    }
    return { text: '', toolResult: false };
  }
  const msgs = Array.isArray(body.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i];
    if (!m) continue;
    if (provider === 'anthropic') {
      if (m.role !== 'user') continue;
      if (Array.isArray(m.content)) {
        const tr = m.content.find((b) => b && b.type === 'tool_result');
        if (tr) return { text: typeof tr.content === 'string' ? tr.content : textOf(tr.content), toolResult: true };
      }
      return { text: textOf(m.content), toolResult: false };
    }
    if (m.role === 'tool') return { text: textOf(m.content), toolResult: true };
    if (m.role === 'user') return { text: textOf(m.content), toolResult: false };
  }
  return { text: '', toolResult: false };
}

function firstToolName(provider, body) {
  const tools = Array.isArray(body.tools) ? body.tools : [];
  if (tools.length === 0) return null;
  if (provider === 'anthropic') return tools[0] && tools[0].name ? tools[0].name : null;
  if (provider === 'gemini') {
    const fd = tools[0] && Array.isArray(tools[0].functionDeclarations) ? tools[0].functionDeclarations[0] : null;
    return fd && fd.name ? fd.name : null;
  }
  return tools[0] && tools[0].function && tools[0].function.name ? tools[0].function.name : null;
}

// Scripted answer texts ("reply" action), by request body.
const REPLY = new WeakMap();
// Scripted stream pieces of that text ("huge" action), by request body.
const SPLIT = new WeakMap();

// The stream pieces of an answer text: the scripted ones, else n equal pieces.
function textPieces(body, text, n) {
  return SPLIT.has(body) ? SPLIT.get(body) : pieces(text, n);
}

// Decide the answer: {kind: "text", text} or {kind: "tool", name, args}
function decideAnswer(provider, body) {
  if (REPLY.has(body)) return { kind: 'text', text: REPLY.get(body) };
  const u = lastUser(provider, body);
  const tool = firstToolName(provider, body);
  if (tool && !u.toolResult) {
    // "parallel" in the question: two calls at once (Paris, then Rome)
    const calls = [{ name: tool, args: { city: 'Paris' } }];
    if (/parallel/.test(u.text)) calls.push({ name: tool, args: { city: 'Rome' } });
    return { kind: 'tool', name: tool, args: { city: 'Paris' }, calls };
  }
  return { kind: 'text', text: 'echo: ' + (u.toolResult ? 'tool result: ' : '') + u.text };
}

// Split a text in n roughly equal pieces (at least one piece, never empty pieces unless text empty).
function pieces(text, n) {
  if (text.length === 0) return [''];
  const out = [];
  const size = Math.max(1, Math.ceil(text.length / n));
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

// ---------------------------------------------------------------- error shapes
const STATUS_NAMES = {
  400: ['invalid_request_error', 'INVALID_ARGUMENT'],
  401: ['authentication_error', 'UNAUTHENTICATED'],
  403: ['permission_error', 'PERMISSION_DENIED'],
  404: ['not_found_error', 'NOT_FOUND'],
  413: ['request_too_large', 'INVALID_ARGUMENT'],
  429: ['rate_limit_error', 'RESOURCE_EXHAUSTED'],
  500: ['api_error', 'INTERNAL'],
  503: ['overloaded_error', 'UNAVAILABLE'],
  529: ['overloaded_error', 'UNAVAILABLE'],
};

function errorBody(provider, status, message) {
  const [anthropicType, googleStatus] = STATUS_NAMES[status] || ['api_error', 'UNKNOWN'];
  if (provider === 'anthropic') {
    return { type: 'error', error: { type: anthropicType, message } };
  }
  if (provider === 'gemini') {
    return { error: { code: status, message, status: googleStatus } };
  }
  const code = status === 401 ? 'invalid_api_key'
    : status === 429 ? 'rate_limit_exceeded'
      : status === 404 ? 'model_not_found'
        : null;
  const type = status === 429 ? 'requests'
    : status >= 500 ? 'server_error'
      : 'invalid_request_error';
  return { error: { message, type, param: null, code } };
}

function authError(provider, res, reason) {
  if (provider === 'gemini') {
    return sendJSON(res, 400, {
      error: {
        code: 400,
        message: `API key not valid. Please pass a valid API key. (${reason})`,
        status: 'INVALID_ARGUMENT',
        details: [{
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'API_KEY_INVALID',
          domain: 'googleapis.com',
          metadata: { service: 'generativelanguage.googleapis.com' },
        }],
      },
    });
  }
  if (provider === 'anthropic') {
    return sendJSON(res, 401, { type: 'error', error: { type: 'authentication_error', message: `invalid x-api-key (${reason})` } });
  }
  return sendJSON(res, 401, {
    error: { message: `Incorrect API key provided (${reason}).`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
  });
}

function checkAuth(provider, req, query) {
  const h = req.headers;
  if (provider === 'anthropic') {
    if (!h['anthropic-version']) return 'missing anthropic-version header';
    if (h['x-api-key'] !== KEYS.anthropic) return 'bad or missing x-api-key';
    return null;
  }
  if (provider === 'gemini') {
    if (query.has('key')) return 'key must not be in the query string';
    if (h['x-goog-api-key'] !== KEYS.gemini) return 'bad or missing x-goog-api-key';
    return null;
  }
  if (h.authorization !== `Bearer ${KEYS[provider]}`) return 'bad or missing bearer token';
  return null;
}

// ---------------------------------------------------------------- OpenAI-family answers
function openaiUsage(provider, model, body) {
  const u = USAGE[provider](model);
  const usage = {
    prompt_tokens: u.prompt,
    completion_tokens: u.completion,
    total_tokens: u.prompt + u.completion,
  };
  if (provider === 'perplexity') {
    const ctx = (body.web_search_options && body.web_search_options.search_context_size) || 'low';
    usage.citation_tokens = u.citation;
    usage.num_search_queries = u.searches;
    usage.search_context_size = ctx;
  } else {
    usage.prompt_tokens_details = { cached_tokens: u.cached, audio_tokens: 0 };
    usage.completion_tokens_details = { reasoning_tokens: u.reasoning, audio_tokens: 0,
      accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 };
  }
  return usage;
}

function perplexityExtras() {
  return {
    citations: ['https://example.com/a', 'https://example.org/b'],
    search_results: [
      { title: 'Example A', url: 'https://example.com/a', date: '2025-01-01' },
      { title: 'Example B', url: 'https://example.org/b', date: '2025-02-01' },
    ],
  };
}

function openaiComplete(provider, model, body, res) {
  const ans = decideAnswer(provider, body);
  const message = { role: 'assistant', content: null, refusal: null };
  let finish = 'stop';
  if (ans.kind === 'tool') {
    message.tool_calls = ans.calls.map((c, i) => ({ id: `call_fake_${i + 1}`, type: 'function',
      function: { name: c.name, arguments: JSON.stringify(c.args) } }));
    finish = 'tool_calls';
  } else {
    message.content = ans.text;
  }
  const out = {
    id: provider === 'perplexity' ? nextId('pplx-') : nextId('chatcmpl-fake'),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    // n > 1: as many choices, the same answer in each
    choices: Array.from({ length: Number.isInteger(body.n) && body.n > 1 ? Math.min(body.n, 8) : 1 },
      (_, i) => ({ index: i, message, logprobs: null, finish_reason: finish })),
    usage: openaiUsage(provider, model, body),
    system_fingerprint: 'fp_fake',
  };
  if (provider === 'perplexity') Object.assign(out, perplexityExtras());
  return out;
}

// Builds the list of SSE frames (strings) for an OpenAI-family stream.
function openaiStreamFrames(provider, model, body, opts = {}) {
  const ans = decideAnswer(provider, body);
  const id = provider === 'perplexity' ? nextId('pplx-') : nextId('chatcmpl-fake');
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = !!(body.stream_options && body.stream_options.include_usage);
  const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_fake' };
  const extras = provider === 'perplexity' ? perplexityExtras() : {};
  const frame = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
  const chunk = (delta, finish = null, more = {}) => frame({ ...base, ...extras,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...more });

  const content = [];
  content.push(chunk({ role: 'assistant', content: '', refusal: null }));
  let finish = 'stop';
  if (ans.kind === 'tool') {
    finish = 'tool_calls';
    ans.calls.forEach((c, i) => {
      content.push(chunk({ tool_calls: [{ index: i, id: `call_fake_${i + 1}`, type: 'function',
        function: { name: c.name, arguments: '' } }] }));
      for (const p of pieces(JSON.stringify(c.args), opts.nPieces || 3)) {
        content.push(chunk({ tool_calls: [{ index: i, function: { arguments: p } }] }));
      }
    });
  } else {
    for (const p of textPieces(body, ans.text, opts.nPieces || 3)) content.push(chunk({ content: p }));
  }
  const usage = openaiUsage(provider, model, body);
  const end = [];
  if (provider === 'perplexity') {
    // Perplexity: usage on the finish chunk, no [DONE].
    end.push(chunk({}, finish, { usage }));
  } else {
    end.push(chunk({}, finish));
    if (includeUsage) end.push(frame({ ...base, choices: [], usage }));
    end.push('data: [DONE]\n\n');
  }
  return { content, end };
}

// ---------------------------------------------------------------- Anthropic answers
function anthropicUsage(model, streamStart) {
  const u = USAGE.anthropic(model);
  return {
    input_tokens: u.input,
    cache_creation_input_tokens: u.cache_creation,
    cache_read_input_tokens: u.cache_read,
    output_tokens: streamStart ? 1 : u.output,
    service_tier: 'standard',
  };
}

// Extended thinking asked for (thinking: {type: "enabled"}): answers start with a thinking block.
const THINKING = 'Let me think about that.';
const thinks = (body) => body && body.thinking && body.thinking.type === 'enabled';

function anthropicComplete(model, body) {
  const ans = decideAnswer('anthropic', body);
  const content = ans.kind === 'tool'
    ? ans.calls.map((c, i) => ({ type: 'tool_use', id: `toolu_fake_${i + 1}`, name: c.name, input: c.args }))
    : [{ type: 'text', text: ans.text }];
  if (thinks(body)) content.unshift({ type: 'thinking', thinking: THINKING, signature: 'sig-fake-1' });
  return {
    id: nextId('msg_fake'),
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: ans.kind === 'tool' ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    usage: anthropicUsage(model, false),
  };
}

function anthropicStreamFrames(model, body, opts = {}) {
  const ans = decideAnswer('anthropic', body);
  const ev = (name, obj) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;
  const content = [];
  content.push(ev('message_start', { type: 'message_start', message: {
    id: nextId('msg_fake'), type: 'message', role: 'assistant', model, content: [],
    stop_reason: null, stop_sequence: null, usage: anthropicUsage(model, true) } }));
  let i = 0; // the answer's block index (a thinking block comes first when thinking is on)
  if (thinks(body)) {
    content.push(ev('content_block_start', { type: 'content_block_start', index: 0,
      content_block: { type: 'thinking', thinking: '', signature: '' } }));
    for (const p of pieces(THINKING, 2)) {
      content.push(ev('content_block_delta', { type: 'content_block_delta', index: 0,
        delta: { type: 'thinking_delta', thinking: p } }));
    }
    content.push(ev('content_block_delta', { type: 'content_block_delta', index: 0,
      delta: { type: 'signature_delta', signature: 'sig-fake-1' } }));
    content.push(ev('content_block_stop', { type: 'content_block_stop', index: 0 }));
    i = 1;
  }
  if (ans.kind === 'tool') {
    ans.calls.forEach((c, k) => {
      if (k > 0) content.push(ev('content_block_stop', { type: 'content_block_stop', index: i++ }));
      content.push(ev('content_block_start', { type: 'content_block_start', index: i,
        content_block: { type: 'tool_use', id: `toolu_fake_${k + 1}`, name: c.name, input: {} } }));
      if (k === 0) content.push(ev('ping', { type: 'ping' }));
      for (const p of pieces(JSON.stringify(c.args), opts.nPieces || 3)) {
        content.push(ev('content_block_delta', { type: 'content_block_delta', index: i,
          delta: { type: 'input_json_delta', partial_json: p } }));
      }
    });
  } else {
    content.push(ev('content_block_start', { type: 'content_block_start', index: i,
      content_block: { type: 'text', text: '' } }));
    content.push(ev('ping', { type: 'ping' }));
    for (const p of textPieces(body, ans.text, opts.nPieces || 3)) {
      content.push(ev('content_block_delta', { type: 'content_block_delta', index: i,
        delta: { type: 'text_delta', text: p } }));
    }
  }
  const end = [];
  end.push(ev('content_block_stop', { type: 'content_block_stop', index: i }));
  end.push(ev('message_delta', { type: 'message_delta',
    delta: { stop_reason: ans.kind === 'tool' ? 'tool_use' : 'end_turn', stop_sequence: null },
    usage: { output_tokens: USAGE.anthropic(model).output } }));
  end.push(ev('message_stop', { type: 'message_stop' }));
  return { content, end };
}

// ---------------------------------------------------------------- Gemini answers
function geminiUsage(model, candidatesSoFar) {
  const u = USAGE.gemini(model);
  const cand = candidatesSoFar === undefined ? u.candidates : candidatesSoFar;
  const thoughts = u.thoughts;
  const meta = {
    promptTokenCount: u.prompt,
    candidatesTokenCount: cand,
    totalTokenCount: u.prompt + cand + thoughts,
    cachedContentTokenCount: u.cached,
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: u.prompt }],
  };
  if (thoughts) meta.thoughtsTokenCount = thoughts;
  return meta;
}

function geminiComplete(model, body) {
  const ans = decideAnswer('gemini', body);
  const parts = ans.kind === 'tool'
    ? ans.calls.map((c) => ({ functionCall: { name: c.name, args: c.args } }))
    : [{ text: ans.text }];
  return {
    candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }],
    usageMetadata: geminiUsage(model),
    modelVersion: model,
    responseId: nextId('fakeresp'),
  };
}

function geminiStreamFrames(model, body, opts = {}) {
  const ans = decideAnswer('gemini', body);
  const responseId = nextId('fakeresp');
  const u = USAGE.gemini(model);
  const frame = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
  const content = [];
  const end = [];
  if (ans.kind === 'tool') {
    end.push(frame({ candidates: [{ content: { role: 'model', parts: ans.calls.map((c) => ({ functionCall: { name: c.name, args: c.args } })) },
      finishReason: 'STOP', index: 0 }], usageMetadata: geminiUsage(model), modelVersion: model, responseId }));
    return { content, end };
  }
  const ps = textPieces(body, ans.text, opts.nPieces || 3);
  // All pieces but the last are content frames with growing usage; the last carries STOP.
  ps.forEach((p, i) => {
    const last = i === ps.length - 1;
    const cand = last ? u.candidates : Math.max(1, Math.floor((u.candidates * (i + 1)) / ps.length));
    const obj = { candidates: [{ content: { role: 'model', parts: [{ text: p }] }, index: 0 }],
      usageMetadata: geminiUsage(model, cand), modelVersion: model, responseId };
    if (last) {
      obj.candidates[0].finishReason = 'STOP';
      end.push(frame(obj));
    } else {
      content.push(frame(obj));
    }
  });
  return { content, end };
}

// ---------------------------------------------------------------- dispatch
function route(method, pathname) {
  const m = /^\/(openai|anthropic|gemini|xai|perplexity)(\/.*)$/.exec(pathname);
  if (!m) return null;
  const provider = m[1];
  const rest = m[2];
  if (method !== 'POST') return { provider, kind: 'not_found' };
  if ((provider === 'openai' || provider === 'xai') && rest === '/v1/chat/completions') return { provider, kind: 'chat' };
  if (provider === 'perplexity' && rest === '/chat/completions') return { provider, kind: 'chat' };
  if (provider === 'anthropic' && rest === '/v1/messages') return { provider, kind: 'messages' };
  if (provider === 'anthropic' && rest === '/v1/messages/count_tokens') return { provider, kind: 'count_tokens' };
  if (provider === 'gemini') {
    const g = /^\/v1beta\/models\/([A-Za-z0-9._-]+):(generateContent|streamGenerateContent)$/.exec(rest);
    if (g) return { provider, kind: 'gemini', model: g[1], stream: g[2] === 'streamGenerateContent' };
  }
  return { provider, kind: 'not_found' };
}

// Writes frames to an SSE response; stops if the connection is gone. Returns false if aborted.
async function writeFrames(res, frames, gapMs) {
  for (const f of frames) {
    if (res.destroyed || res.writableEnded) return false;
    res.write(f);
    if (gapMs > 0) await sleep(gapMs);
  }
  return !res.destroyed;
}

function startSSE(res, type) {
  res.writeHead(200, {
    'content-type': type || 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  if (res.socket) res.socket.setNoDelay(true);
}

// The provider's next scripted action for a request with this raw body (see "match" above).
function takeAction(provider, raw) {
  const q = queues[provider];
  const i = q.findIndex((a) => a.match === undefined || a.match === null || raw.includes(String(a.match)));
  return i < 0 ? null : q.splice(i, 1)[0];
}

// Writes s (a string) to res `bytes` at a time with gapMs between writes; stops if the
// connection is gone. Returns false if aborted.
async function drip(res, s, bytes, gapMs) {
  const b = Buffer.from(s);
  for (let i = 0; i < b.length; i += bytes) {
    if (res.destroyed || res.writableEnded) return false;
    res.write(b.subarray(i, i + bytes));
    await sleep(gapMs);
  }
  return !res.destroyed;
}

function htmlPage() {
  return '<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>' +
    `<h1>502 Bad Gateway</h1><p>${LEAK_MARKER}: upstream shard-7 did not answer</p></body></html>\n`;
}

async function handleProvider(req, res, r, url, entry, parsed, raw) {
  const provider = r.provider;
  const authProblem = checkAuth(provider, req, url.searchParams);
  if (authProblem) { authError(provider, res, authProblem); return; }

  if (r.kind === 'not_found') {
    sendJSON(res, 404, errorBody(provider, 404, `no such route ${url.pathname}`));
    return;
  }
  if (parsed === undefined || parsed === null || typeof parsed !== 'object') {
    sendJSON(res, 400, errorBody(provider, 400, 'request body is not a JSON object'));
    return;
  }
  const body = parsed;

  if (r.kind === 'count_tokens') {
    // As the real endpoint: model and messages, no max_tokens; a count that is easy to check
    if (typeof body.model !== 'string' || !Array.isArray(body.messages)) {
      sendJSON(res, 400, errorBody(provider, 400, 'model and messages are required'));
    } else if ('max_tokens' in body || 'stream' in body) {
      sendJSON(res, 400, errorBody(provider, 400, 'max_tokens: Extra inputs are not permitted'));
    } else {
      sendJSON(res, 200, { input_tokens: COUNT_TOKENS_BASE + JSON.stringify(body.messages).length });
    }
    return;
  }

  let model;
  let stream;
  if (r.kind === 'gemini') {
    model = r.model;
    stream = r.stream;
    if (stream && url.searchParams.get('alt') !== 'sse') {
      sendJSON(res, 400, errorBody(provider, 400, 'this fake only streams with alt=sse'));
      return;
    }
  } else {
    model = body.model;
    stream = body.stream === true;
    if (typeof model !== 'string' || model === '') {
      sendJSON(res, 400, errorBody(provider, 400, 'model is required'));
      return;
    }
    if (!Array.isArray(body.messages)) {
      sendJSON(res, 400, errorBody(provider, 400, 'messages is required'));
      return;
    }
    if (provider === 'anthropic' && typeof body.max_tokens !== 'number') {
      sendJSON(res, 400, errorBody(provider, 400, 'max_tokens: Field required'));
      return;
    }
  }

  const action = takeAction(provider, raw);
  entry.action = action ? action.action : null;
  const act = action ? action.action : 'normal';

  switch (act) {
    case 'status': {
      const status = Number(action.status) || 500;
      const bodyOut = action.body !== undefined ? action.body
        : errorBody(provider, status, `${LEAK_MARKER}: upstream failure at shard-7 for ${KEYS[provider].slice(0, 4)}… (status ${status})`);
      let headers = action.headers;
      if (!headers) headers = status === 429 ? { 'retry-after': '2' } : {};
      if (typeof bodyOut === 'string') {
        res.writeHead(status, { 'content-type': 'text/plain', ...headers });
        res.end(bodyOut);
      } else {
        sendJSON(res, status, bodyOut, headers);
      }
      return;
    }
    case 'reset':
      entry.closedByFake = true;
      if (action.rst) req.socket.resetAndDestroy();
      else req.socket.destroy();
      return;
    case 'hang':
      return; // never answer; the socket stays until the client or the fake closes it
    case 'badjson':
      if (stream && action.mid) break; // after the content events, below
      if (stream) {
        startSSE(res);
        res.end('data: {"id":"broken", "choices": [ {"delta": {"content": "oops"\n\n');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id": "broken", "object": "chat.completion", "choices": [ {"message": ');
      }
      return;
    case 'delay':
      await sleep(Number(action.ms) || 0);
      if (res.destroyed) return;
      break;
    case 'reply':
      REPLY.set(body, String(action.content));
      await sleep(Number(action.ms) || 0);
      if (res.destroyed) return;
      break;
    case 'huge': {
      const filler = 'x'.repeat(Math.max(1, Number(action.bytes) || 1));
      REPLY.set(body, 'echo: ' + filler);
      SPLIT.set(body, ['echo: ', ...pieces(filler, Math.max(1, Number(action.events) || 1))]);
      break;
    }
    case 'ctype':
      if (action.shape === 'html') {
        const page = htmlPage();
        res.writeHead(200, { 'content-type': action.type || 'text/html; charset=utf-8',
          'content-length': Buffer.byteLength(page) });
        res.end(page);
        return;
      }
      break;
    default:
      break;
  }
  // "ctype": the answer's shape, whatever the request asked for
  const asStream = act === 'ctype' ? action.shape === 'sse' : stream;
  const ctype = act === 'ctype' ? action.type : undefined;

  if (!asStream) {
    if (act === 'slow') await sleep((Number(action.ms) || 100) * (Number(action.events) || 20));
    if (res.destroyed) return;
    let out;
    if (r.kind === 'chat') out = openaiComplete(provider, model, body);
    else if (r.kind === 'messages') out = anthropicComplete(model, body);
    else out = geminiComplete(model, body);
    const s = JSON.stringify(out);
    const half = s.slice(0, Math.floor(s.length / 2));
    if (act === 'truncate' && action.mode === 'end') { // chunked: a clean end, half a body
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(half);
      return;
    }
    if (act === 'truncate') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
      res.write(half);
      entry.closedByFake = true;
      setTimeout(() => (action.mode === 'rst' ? req.socket.resetAndDestroy() : req.socket.destroy()), 50);
      return;
    }
    if (act === 'stall') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(half);
      return; // silence; the socket stays until the client closes it
    }
    if (act === 'drip') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
      if (await drip(res, s, Number(action.bytes) || 1, Number(action.ms) || 10)) res.end();
      return;
    }
    sendJSON(res, 200, out, ctype ? { 'content-type': ctype } : {});
    return;
  }

  const slow = act === 'slow';
  let nPieces = slow || (act === 'drip' && action.events) ? (Number(action.events) || 20) : 3;
  let genBody = body;
  if (act === 'big' && r.kind === 'chat') {
    // A large answer, fast: the last user message repeated `repeat` times, in `events` pieces.
    genBody = JSON.parse(JSON.stringify(body));
    const last = [...genBody.messages].reverse().find((m) => m.role === 'user' && typeof m.content === 'string');
    if (last) last.content = last.content.repeat(Number(action.repeat) || 100);
    nPieces = Number(action.events) || 2000;
  }
  let frames;
  if (r.kind === 'chat') frames = openaiStreamFrames(provider, model, genBody, { nPieces });
  else if (r.kind === 'messages') frames = anthropicStreamFrames(model, body, { nPieces });
  else frames = geminiStreamFrames(model, body, { nPieces });

  startSSE(res, ctype);
  // The content events but the last (never the end marker: finish chunk / [DONE] /
  // message_stop / finishReason).
  const c = frames.content;
  const partial = c.length > 2 ? c.slice(0, c.length - 1) : c;
  if (act === 'truncate') {
    await writeFrames(res, partial, 10);
    await sleep(50);
    if (action.mode === 'destroy' || action.mode === 'rst') {
      entry.closedByFake = true;
      if (action.mode === 'rst') req.socket.resetAndDestroy();
      else req.socket.destroy();
    } else if (!res.destroyed) {
      res.end();
    }
    return;
  }
  if (act === 'badjson') { // mid: the content events but the last, then garbage
    await writeFrames(res, partial, 10);
    if (!res.destroyed) res.end('data: {"id":"broken", "choices": [ {"delta": {"content": "oops"\n\n');
    return;
  }
  if (act === 'stall') {
    await writeFrames(res, partial, 0);
    return; // silence; the socket stays until the client closes it
  }
  if (act === 'drip') {
    if (await drip(res, [...frames.content, ...frames.end].join(''), Number(action.bytes) || 1,
      Number(action.ms) || 10)) res.end();
    return;
  }
  const gap = slow ? (Number(action.ms) || 100) : 0;
  if (!(await writeFrames(res, frames.content, gap))) return;
  if (!(await writeFrames(res, frames.end, gap))) return;
  if (!res.destroyed) res.end();
}

function handleControl(req, res, url, raw) {
  const p = url.pathname;
  if (p === '/_control/next' && req.method === 'POST') {
    let cmds;
    try { cmds = JSON.parse(raw); } catch { return sendJSON(res, 400, { error: 'invalid JSON' }); }
    const batch = Array.isArray(cmds);
    if (!batch) cmds = [cmds];
    const known = ['status', 'delay', 'reset', 'hang', 'truncate', 'badjson', 'slow', 'big', 'reply',
      'stall', 'drip', 'huge', 'ctype'];
    for (const cmd of cmds) {
      if (!cmd || !PROVIDERS.includes(cmd.provider)) return sendJSON(res, 400, { error: 'unknown provider' });
      if (!known.includes(cmd.action)) return sendJSON(res, 400, { error: 'unknown action' });
    }
    for (const cmd of cmds) queues[cmd.provider].push(cmd);
    if (batch) return sendJSON(res, 200, { ok: true, queued: cmds.length });
    return sendJSON(res, 200, { ok: true, queued: queues[cmds[0].provider].length });
  }
  if (p === '/_control/reset' && req.method === 'POST') {
    for (const q of Object.values(queues)) q.length = 0;
    requestLog = [];
    return sendJSON(res, 200, { ok: true });
  }
  if (p === '/_requests' && req.method === 'GET') {
    const prov = url.searchParams.get('provider');
    const list = prov ? requestLog.filter((e) => e.provider === prov) : requestLog;
    return sendJSON(res, 200, list);
  }
  if (p === '/_requests' && req.method === 'DELETE') {
    requestLog = [];
    return sendJSON(res, 200, { ok: true });
  }
  if (p === '/_health') return sendJSON(res, 200, { ok: true });
  return sendJSON(res, 404, { error: 'no such control route' });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://fake.local');
  const raw = await readBody(req);
  if (url.pathname.startsWith('/_')) { handleControl(req, res, url, raw); return; }

  const r = route(req.method, url.pathname);
  if (!r) { sendJSON(res, 404, { error: { message: 'unknown provider prefix', type: 'invalid_request_error', code: null } }); return; }

  let body;
  try { body = raw.length ? JSON.parse(raw) : null; } catch { body = undefined; }
  const entry = {
    provider: r.provider,
    method: req.method,
    path: url.pathname.slice(r.provider.length + 1),
    query: Object.fromEntries(url.searchParams),
    headers: { ...req.headers },
    body: body === undefined ? raw : body,
    aborted: false,
    answered: false,
    closedByFake: false,
    action: null,
    at: Date.now(),
  };
  // FAKE_NO_RECORD=1 (the benchmark) keeps memory flat under load.
  if (!process.env.FAKE_NO_RECORD) requestLog.push(entry);
  // aborted = the client closed the connection before our answer finished.
  res.on('close', () => {
    if (!res.writableFinished) entry.aborted = !entry.closedByFake;
    else entry.answered = true;
  });
  try {
    await handleProvider(req, res, r, url, entry, body, raw);
  } catch (e) {
    process.stderr.write(`fake: handler error: ${e && e.stack}\n`);
    if (!res.headersSent) sendJSON(res, 500, errorBody(r.provider, 500, 'fake internal error'));
    else res.destroy();
  }
});

server.keepAliveTimeout = 5000;
server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

function parsePort(argv) {
  const i = argv.indexOf('--port');
  if (i >= 0 && argv[i + 1] !== undefined) return Number(argv[i + 1]);
  const eq = argv.find((a) => a.startsWith('--port='));
  if (eq) return Number(eq.slice(7));
  return 0;
}

server.listen(parsePort(process.argv.slice(2)), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function shutdown() {
  server.close();
  for (const s of sockets) s.destroy();
  setTimeout(() => process.exit(0), 100).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
