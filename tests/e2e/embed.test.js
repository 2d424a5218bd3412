// Embedded mode (include/llmgw.h): a C program links the library and runs chat requests
// in-process — no server — against the fake provider: a plain request (own thread,
// llmgw_chat_sync), a streamed one (the host's event_base, llmgw_chat), a cancelled one, and
// two gateways in one process with separate stores that share nothing. The usage rows and
// costs are the pipeline's, as for HTTP requests.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { ROOT, BIN, startFake, FAKE_USAGE, expectedCostMicros } = require('./harness');

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 60000, maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) => {
      if (err) { err.message += `\nstdout: ${stdout}\nstderr: ${stderr}`; reject(err); } else resolve({ stdout, stderr });
    });
  });
}

async function store(dir, name) {
  const db = `sqlite:${path.join(dir, name)}`;
  await run(BIN, ['migrate', '--db', db]);
  await run(BIN, ['orgs', 'create', 'acme', '--db', db]);
  const { stdout } = await run(BIN, ['keys', 'create', '--org', 'acme', '--name', 'embed', '--db', db]);
  return { db, file: path.join(dir, name), key: stdout.trim().split('\n').pop() };
}

function rows(file, where) {
  return run('sqlite3', ['-json', file, `select * from usage where ${where}`])
    .then(({ stdout }) => (stdout.trim() ? JSON.parse(stdout) : []));
}

test('embedded: plain, streamed and cancelled calls in-process; two gateways share nothing', async () => {
  await run('make', ['--no-print-directory', '-s', 'build/san/embed_prog']);
  const fake = await startFake();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmgw-embed-'));
  try {
    const s1 = await store(dir, 'one.db');
    const s2 = await store(dir, 'two.db');
    // app clients in gw1's store: one approved, one not (a host vouches for their subjects)
    const client = async (name) => JSON.parse((await run(BIN, ['app-clients', 'create', '--org', 'acme', '--name', name,
      '--origins', 'https://app.test', '--db', s1.db])).stdout);
    const approved = await client('web');
    await run(BIN, ['app-clients', 'approve', approved.id, '--db', s1.db]);
    const unapproved = await client('draft');
    // the fake's answers in order: plain, the subject's, stream (normal), then the cancelled
    // call's (hangs)
    await fake.next('openai', 'delay', { ms: 0 });
    await fake.next('openai', 'delay', { ms: 0 });
    await fake.next('openai', 'delay', { ms: 0 });
    await fake.next('openai', 'hang');
    const { stdout, stderr } = await run('build/san/embed_prog', [fake.url, s1.db, s1.key, s2.db, s2.key, approved.id, unapproved.id],
      { env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1' } });
    assert.equal(stderr, '', 'the library writes nothing to stderr');
    const out = Object.fromEntries(stdout.trim().split('\n').map((l) => JSON.parse(l)).map((o) => [o.what, o]));

    // plain: the chat.completion, its usage row and cost in gw1's store
    assert.equal(out.plain.status, 200);
    const answer = JSON.parse(out.plain.body);
    assert.equal(answer.object, 'chat.completion');
    assert.equal(answer.choices[0].message.content, 'echo: hello embedded');
    const cost = expectedCostMicros('gpt-4o', FAKE_USAGE['gpt-4o']);
    const r1 = await rows(s1.file, "kind = 'chat' or kind is null or kind = ''");
    const plainRows = r1.filter((r) => r.status === 200 && !r.subject);
    assert.equal(plainRows.length, 1, JSON.stringify(r1));
    assert.equal(plainRows[0].state, 'settled');
    assert.equal(plainRows[0].tokens_in, 120);
    assert.equal(plainRows[0].tokens_out, 30);
    assert.equal(plainRows[0].cost_micros, cost);

    // streamed: chunks through on_chunk, the usage chunk last, the row in gw2's store only
    assert.equal(out.stream.status, 200);
    assert.match(out.stream.headers, /^Content-Type: text\/event-stream$/m);
    const chunks = out.stream.body.trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(chunks.length >= 2);
    const text = chunks.map((c) => c.choices?.[0]?.delta?.content || '').join('');
    assert.equal(text, 'echo: stream embedded');
    assert.equal(chunks[chunks.length - 1].usage.completion_tokens, 30);
    const r2 = await rows(s2.file, `request_id = '${out.stream.request_id}'`);
    assert.equal(r2.length, 1);
    assert.equal(r2[0].status, 200);
    assert.equal(r2[0].cost_micros, cost);
    assert.equal((await rows(s1.file, `request_id = '${out.stream.request_id}'`)).length, 0);

    // a subject the host vouches for: runs as its app client (the subject in the usage row);
    // an unapproved client's is refused; an API key and a subject at once is EINVAL
    assert.equal(out.subject.status, 200, out.subject.body);
    assert.equal(JSON.parse(out.subject.body).choices[0].message.content, 'echo: hello embedded');
    const subjRows = await rows(s1.file, "subject = 'user-42'");
    assert.equal(subjRows.length, 1);
    assert.ok(Number(subjRows[0].key_row_id) < 0, 'the app client, not a key');
    assert.equal(subjRows[0].cost_micros, cost);
    assert.equal(out.subject_refused.status, 403);
    assert.equal(JSON.parse(out.subject_refused.body).error.code, 'app_client_revoked');
    assert.equal(out.both.rc, -2 /* LLMGW_EINVAL */);

    // gw1's key means nothing to gw2: separate stores
    assert.equal(out.cross.status, 401);
    assert.equal(JSON.parse(out.cross.body).error.code, 'invalid_api_key');

    // cancelled while the provider hangs: 499, the row says cancelled
    assert.equal(out.cancel.status, 499);
    const rc = await rows(s2.file, `request_id = '${out.cancel.request_id}'`);
    assert.equal(rc.length, 1);
    assert.equal(rc[0].status, 499);

    assert.deepEqual(out.stats.g1, { calls: 3, ok: 2, inflight: 0 });
    assert.deepEqual(out.stats.g2, { calls: 3, ok: 1, failed: 2, cancelled: 1, inflight: 0 });
  } finally {
    await fake.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
