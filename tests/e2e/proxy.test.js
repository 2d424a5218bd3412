// Outbound proxies, from the environment as curl reads it: with http_proxy set, the gateway's
// calls to a provider (answers and streams) go through that proxy; a host named in no_proxy goes
// direct; HTTP_PROXY in capitals is not taken (a CGI client could set it), ALL_PROXY is.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startEnv, readSSE } = require('./harness');

const T = { timeout: 30000 };
const BODY = { model: 'gpt-4o', max_tokens: 20, messages: [{ role: 'user', content: 'via a proxy?' }] };

// A plain forward proxy: an absolute-form request line is passed on to its host as it is.
function startProxy() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let target;
    try {
      target = new URL(req.url);
    } catch {
      res.writeHead(400).end('not a proxy request');
      return;
    }
    seen.push({ method: req.method, url: req.url, auth: req.headers.authorization || '' });
    const up = http.request({ host: target.hostname, port: target.port, path: target.pathname + target.search,
      method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

const started = [];
after(async () => { for (const s of started) await s.stop(); }, { timeout: 30000 });
async function withEnv(env) {
  const proxy = await startProxy();
  started.push(proxy);
  const vars = {};
  for (const [k, v] of Object.entries(env)) vars[k] = v === 'PROXY' ? proxy.url : v;
  const gw = await startEnv({ env: vars });
  started.push(gw);
  return { proxy, gw };
}

test('http_proxy: answers and streams go through the proxy, with the provider key', T, async () => {
  const { proxy, gw } = await withEnv({ http_proxy: 'PROXY' });
  const r = await gw.request('POST', '/v1/chat/completions', { body: BODY });
  assert.equal(r.status, 200, r.text);
  assert.equal(proxy.seen.length, 1);
  assert.equal(proxy.seen[0].method, 'POST');
  assert.match(proxy.seen[0].url, /^http:\/\/127\.0\.0\.1:\d+\/openai\/.*chat\/completions$/);
  assert.match(proxy.seen[0].auth, /^Bearer \S+/);

  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...BODY, model: 'claude-sonnet-4-6', stream: true }),
  });
  assert.equal(res.status, 200);
  const sse = await readSSE(res);
  assert.ok(sse.done, sse.raw);
  assert.ok(sse.events.some((e) => e.json && e.json.choices && e.json.choices.length), sse.raw);
  assert.equal(proxy.seen.length, 2);
  assert.match(proxy.seen[1].url, /\/anthropic\//);
});

test('no_proxy names the provider host: straight there, the proxy sees nothing', T, async () => {
  const { proxy, gw } = await withEnv({ http_proxy: 'PROXY', no_proxy: 'example.test,127.0.0.1' });
  const r = await gw.request('POST', '/v1/chat/completions', { body: BODY });
  assert.equal(r.status, 200, r.text);
  assert.equal(proxy.seen.length, 0);
});

test('HTTP_PROXY in capitals is not taken for http; ALL_PROXY is', T, async () => {
  const upper = await withEnv({ HTTP_PROXY: 'PROXY' });
  assert.equal((await upper.gw.request('POST', '/v1/chat/completions', { body: BODY })).status, 200);
  assert.equal(upper.proxy.seen.length, 0);
  const all = await withEnv({ ALL_PROXY: 'PROXY' });
  assert.equal((await all.gw.request('POST', '/v1/chat/completions', { body: BODY })).status, 200);
  assert.equal(all.proxy.seen.length, 1);
});
