#!/usr/bin/env node
// Streaming load for bench/streams.sh: a slow OpenAI-style SSE upstream, and a client that
// holds many streams open at once and times each one's first byte.
//
//   node bench/streams.js upstream PORT INTERVAL_MS CHUNKS
//       every POST gets a chat.completion.chunk stream: the role chunk at once, then CHUNKS
//       content chunks INTERVAL_MS apart, the finish chunk, a usage chunk and [DONE]
//   node bench/streams.js client URL KEY MODEL STREAMS CONCURRENCY CHUNKS [RAMP_MS]
//       STREAMS streams, at most CONCURRENCY at once (started over RAMP_MS when they all start
//       together); prints one JSON line: completed, failed, the first errors, time to first
//       byte (p50, p99, max, in microseconds) and the peak number open at once
'use strict';

const http = require('node:http');

const [mode, ...args] = process.argv.slice(2);

function chunk(delta, finish) {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-stream0', object: 'chat.completion.chunk', created: 1764547200,
    model: 'grok-3', choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
}

function upstream(port, intervalMs, chunks) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(chunk({ role: 'assistant', content: '' }, null));
      let sent = 0;
      const timer = setInterval(() => {
        if (sent < chunks) {
          res.write(chunk({ content: `word${sent} ` }, null));
          sent++;
          return;
        }
        clearInterval(timer);
        res.write(chunk({}, 'stop'));
        res.write(`data: ${JSON.stringify({
          id: 'chatcmpl-stream0', object: 'chat.completion.chunk', created: 1764547200,
          model: 'grok-3', choices: [],
          usage: { prompt_tokens: 12, completion_tokens: chunks, total_tokens: 12 + chunks },
        })}\n\n`);
        res.end('data: [DONE]\n\n');
      }, intervalMs);
      res.on('close', () => clearInterval(timer));
    });
  });
  server.maxConnections = 0; // no cap
  server.keepAliveTimeout = 60000;
  // a deep accept queue: thousands of streams arrive within seconds
  server.listen(port, '127.0.0.1', 8192, () => console.log(`listening ${port}`));
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function client(url, key, model, streams, concurrency, chunks, rampMs) {
  const u = new URL(url);
  const body = JSON.stringify({
    model, stream: true, messages: [{ role: 'user', content: 'Tell me a story.' }],
  });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const ttfb = [];
  const errors = [];
  let started = 0, finished = 0, completed = 0, open = 0, peakOpen = 0;
  const t0 = process.hrtime.bigint();

  function one() {
    started++;
    open++;
    peakOpen = Math.max(peakOpen, open);
    const begin = process.hrtime.bigint();
    let first = true, text = '', done = false;
    const end = (err) => {
      if (done) return;
      done = true;
      open--;
      finished++;
      const events = (text.match(/^data: /gm) || []).length;
      if (err) errors.push(err);
      else if (!text.includes('data: [DONE]')) errors.push(`no [DONE] (${events} events)`);
      else if (events < chunks + 3) errors.push(`only ${events} events`);
      else completed++;
      next();
    };
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: {
        'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
        ...(key ? { authorization: `Bearer ${key}` } : {}),
      },
    }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        res.on('end', () => end(`status ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (first) {
          first = false;
          ttfb.push(Number(process.hrtime.bigint() - begin) / 1000);
        }
        text += d;
      });
      res.on('end', () => end(null));
      res.on('error', (e) => end(e.message));
    });
    req.on('error', (e) => end(e.message));
    req.end(body);
  }

  function next() {
    if (finished === streams) {
      ttfb.sort((a, b) => a - b);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(JSON.stringify({
        streams, completed, failed: streams - completed, errors: errors.slice(0, 5),
        ttfb_p50_us: Math.round(percentile(ttfb, 0.5)), ttfb_p99_us: Math.round(percentile(ttfb, 0.99)),
        ttfb_max_us: Math.round(ttfb.length ? ttfb[ttfb.length - 1] : 0), peak_open: peakOpen,
        seconds: Number(secs.toFixed(1)),
      }));
      process.exit(0);
    }
    while (started < streams && open < concurrency) {
      if (rampMs > 0 && started > 0) { // spread the first wave over the ramp
        const due = (rampMs * started) / concurrency;
        const now = Number(process.hrtime.bigint() - t0) / 1e6;
        if (started < concurrency && now < due) {
          setTimeout(next, Math.max(1, due - now));
          return;
        }
      }
      one();
    }
  }
  next();
}

if (mode === 'upstream') {
  upstream(Number(args[0]), Number(args[1]), Number(args[2]));
} else if (mode === 'client') {
  client(args[0], args[1], args[2], Number(args[3]), Number(args[4]), Number(args[5]),
    Number(args[6] || 0));
} else {
  console.error('usage: streams.js upstream PORT INTERVAL_MS CHUNKS |'
    + ' client URL KEY MODEL STREAMS CONCURRENCY CHUNKS [RAMP_MS]');
  process.exit(2);
}
