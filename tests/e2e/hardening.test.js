// The server's in-process hardening (issue 10): in production mode `llmgw serve` runs with
// no_new_privs, no capabilities, no core dumps and a seccomp allowlist on every thread, and
// still serves (plain, streamed, stored, exported); it can be turned off (hardening: off) and is
// off in development unless asked for. The status is read from /proc/<pid>/status.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startEnv, readSSE } = require('./harness');

const T = { timeout: 60000 };
const envs = [];
after(async () => { for (const e of envs) await e.stop(); }, { timeout: 30000 });

async function start(env) {
  const e = await startEnv({ env });
  envs.push(e);
  return e;
}

function status(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k) => (new RegExp(`^${k}:\\s+(\\S+)`, 'm').exec(s) || [])[1];
  return { nnp: get('NoNewPrivs'), capEff: get('CapEff'), capPrm: get('CapPrm'), capBnd: get('CapBnd'), seccomp: get('Seccomp') };
}

function threadsOf(pid) {
  return fs.readdirSync(`/proc/${pid}/task`).map((t) => {
    const s = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
    return { seccomp: (/^Seccomp:\s+(\d)/m.exec(s) || [])[1], capEff: (/^CapEff:\s+(\S+)/m.exec(s) || [])[1] };
  });
}

test('production mode: no new privileges, no capabilities, a seccomp filter on every thread, and it serves', T, async () => {
  const env = await start({ LLMGW_MODE: 'production' });
  const s = status(env.gw.pid);
  assert.equal(s.nnp, '1');
  assert.equal(s.capEff, '0000000000000000');
  assert.equal(s.capPrm, '0000000000000000');
  if (process.getuid() === 0) assert.equal(s.capBnd, '0000000000000000', 'the bounding set is empty too');
  assert.equal(s.seccomp, '2');
  for (const t of threadsOf(env.gw.pid)) {
    assert.equal(t.seccomp, '2', 'every thread is filtered');
    assert.equal(t.capEff, '0000000000000000');
  }
  assert.match(env.log(), /hardened: no new privileges, no capabilities, no core dumps, system calls filtered/);
  // it still does its work: plain, streamed, idempotent, conversations, admin reads, metrics
  let r = await env.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] } });
  assert.equal(r.status, 200, r.text);
  const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude-sonnet-4-6', stream: true, messages: [{ role: 'user', content: 'stream' }] }),
  });
  assert.equal(res.status, 200);
  const sse = await readSSE(res);
  assert.ok(sse.done, 'the stream ends with [DONE]');
  r = await env.request('POST', '/v1/chat/completions', { headers: { 'idempotency-key': 'hardened-1' }, body: { model: 'gemini-2.5-flash', conversation_id: 'h', messages: [{ role: 'user', content: 'remember' }] } });
  assert.equal(r.status, 200, r.text);
  const again = await env.request('POST', '/v1/chat/completions', { headers: { 'idempotency-key': 'hardened-1' }, body: { model: 'gemini-2.5-flash', conversation_id: 'h', messages: [{ role: 'user', content: 'remember' }] } });
  assert.equal(again.text, r.text, 'replayed');
  const root = env.superadminKey();
  const m = await env.request('GET', '/admin/v1/metrics', { headers: { authorization: `Bearer ${root}` } });
  assert.equal(m.status, 200);
  const h = await env.request('GET', '/admin/v1/health', { headers: { authorization: `Bearer ${root}` } });
  assert.equal(h.status, 200);
  assert.equal(h.json.store_status, 'ok');
  assert.equal(status(env.gw.pid).seccomp, '2');
});

test('hardening: off in production, and off by default in development', T, async () => {
  const off = await start({ LLMGW_MODE: 'production', LLMGW_HARDENING: 'off' });
  // (the whole e2e suite also passes with LLMGW_HARDENING=on: the allowlist covers every path)
  assert.equal(status(off.gw.pid).seccomp, '0');
  assert.doesNotMatch(off.log(), /hardened:/);
  const dev = await start({ LLMGW_HARDENING: 'auto' }); // the default: whatever this run's environment says
  assert.equal(status(dev.gw.pid).seccomp, '0');
  const on = await start({ LLMGW_HARDENING: 'on' });
  assert.equal(status(on.gw.pid).seccomp, '2', 'development asks for it');
  const r = await on.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] } });
  assert.equal(r.status, 200, r.text);
});

test('llmgw healthcheck: exit 0 when /healthz answers 200, non-zero otherwise (no shell needed)', T, async () => {
  const env = envs[0] || await start({});
  await env.cli(['healthcheck', '--url', `${env.baseURL}/healthz`]);
  await assert.rejects(env.cli(['healthcheck', '--url', `${env.baseURL}/nope`]), /answered 404/);
});

// cgroup v1 (pids, memory) or v2 (unified), where this machine lets us make one
function cgroupDirs(name) {
  const v2 = '/sys/fs/cgroup/cgroup.controllers';
  const dirs = fs.existsSync(v2) ? [`/sys/fs/cgroup/${name}`] : [`/sys/fs/cgroup/pids/${name}`, `/sys/fs/cgroup/memory/${name}`];
  try {
    for (const d of dirs) fs.mkdirSync(d);
  } catch {
    for (const d of dirs) try { fs.rmdirSync(d); } catch { /* */ }
    return null;
  }
  return { v2: fs.existsSync(v2), dirs };
}

test('under the deployment\'s limits (256 tasks, 512 MB, as compose.yaml and llmgw.service set them), 300 concurrent requests all succeed', { timeout: 90000 }, async (t) => {
  const cg = cgroupDirs(`llmgw-e2e-${process.pid}`);
  if (!cg) {
    t.skip('cgroups are not writable on this machine: the limits cannot be applied without Docker');
    return;
  }
  const env = await start({ LLMGW_MODE: 'production' });
  const pid = env.gw.pid;
  const w = (d, f, v) => fs.writeFileSync(`${d}/${f}`, String(v));
  try {
    if (cg.v2) {
      w(cg.dirs[0], 'pids.max', 256);
      w(cg.dirs[0], 'memory.max', 512 << 20);
      w(cg.dirs[0], 'cgroup.procs', pid);
    } else {
      w(cg.dirs[0], 'pids.max', 256);
      w(cg.dirs[1], 'memory.limit_in_bytes', 512 << 20);
      for (const d of cg.dirs) w(d, 'cgroup.procs', pid);
    }
    const one = (i) => (i % 3 === 0
      ? fetch(`${env.baseURL}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${env.apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: `s${i}` }] }) }).then(async (r) => ({ status: r.status, done: (await readSSE(r)).done }))
      : env.request('POST', '/v1/chat/completions', { body: { model: i % 2 ? 'claude-sonnet-4-6' : 'gemini-2.5-flash', messages: [{ role: 'user', content: `m${i}` }] }, timeoutMs: 30000 }).then((r) => ({ status: r.status, done: true })));
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => one(i)));
    assert.deepEqual(results.filter((r) => r.status !== 200 || !r.done), [], 'every request answered');
    const threads = fs.readdirSync(`/proc/${pid}/task`).length;
    const peak = (f) => Number(fs.readFileSync(f, 'utf8').trim());
    const pidsPeak = fs.existsSync(`${cg.dirs[0]}/pids.peak`) ? peak(`${cg.dirs[0]}/pids.peak`) : threads;
    const memFile = cg.v2 ? `${cg.dirs[0]}/memory.peak` : `${cg.dirs[1]}/memory.max_usage_in_bytes`;
    const memPeak = fs.existsSync(memFile) ? peak(memFile) : 0;
    console.log(`# under limits: ${threads} threads now, ${pidsPeak} tasks at most, memory peak ${(memPeak / 1048576).toFixed(0)} MB`);
    assert.ok(pidsPeak < 64, `tasks well under 256 (${pidsPeak})`);
    assert.ok(memPeak < 512 << 20, `memory under 512 MB (${memPeak})`);
    assert.equal(status(pid).seccomp, '2');
  } finally {
    const root = (d) => d.slice(0, d.lastIndexOf('/'));
    for (const d of cg.dirs) {
      try { fs.writeFileSync(`${root(d)}/cgroup.procs`, String(pid)); } catch { /* gone */ }
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const d of cg.dirs) try { fs.rmdirSync(d); } catch { /* still busy: left for the machine */ }
  }
});

// Open n kept-alive client connections, each having had one answer (so the gateway holds a whole
// HTTP connection for it, not just a socket in the accept queue). Resolves with the sockets.
async function holdConnections(port, n) {
  const net = require('node:net');
  const socks = [];
  const one = () => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('error', reject);
    s.on('connect', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('data', (d) => {
      got += d;
      if (/\r\n\r\n/.test(got) && / 200 /.test(got)) { s.removeAllListeners('data'); resolve(s); }
    });
  });
  for (let i = 0; i < n; i += 512) {
    const batch = await Promise.all(Array.from({ length: Math.min(512, n - i) }, one));
    socks.push(...batch);
  }
  return socks;
}

test('at the documented connection limit (2 workers × limits.max_connections_per_worker 4096 = 8192 open connections) threads stay well under 256 and memory under 512 MB, and the gateway serves', { timeout: 90000 }, async () => {
  const e = await startEnv({ env: { LLMGW_MODE: 'production' }, timeouts: { request_read_ms: 120000 } });
  envs.push(e);
  const pid = e.gw.pid;
  const socks = await holdConnections(e.port, 8192);
  try {
    const open = fs.readdirSync(`/proc/${pid}/fd`).length;
    assert.ok(open >= 8192, `the gateway holds every connection (${open} descriptors)`);
    // and serves beside them: plain and streamed
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 4 === 0
      ? fetch(`${e.baseURL}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${e.apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: `s${i}` }] }) }).then(async (r) => r.status === 200 && (await readSSE(r)).done)
      : e.request('POST', '/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: `m${i}` }] }, timeoutMs: 30000 }).then((r) => r.status === 200))));
    assert.ok(rs.every(Boolean), 'every request beside the held connections answered');
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st) || [])[1]);
    const threads = kb('Threads');
    const hwm = kb('VmHWM') * 1024;
    console.log(`# 8192 connections held: ${threads} threads, peak RSS ${(hwm / 1048576).toFixed(0)} MB (${process.env.LLMGW_E2E_BIN || 'build/llmgw'})`);
    assert.ok(threads < 64, `threads well under 256 (${threads})`);
    assert.ok(hwm < 512 << 20, `peak RSS under 512 MB (${hwm})`);
    assert.equal(status(pid).seccomp, '2');
  } finally {
    for (const s of socks) s.destroy();
  }
});
