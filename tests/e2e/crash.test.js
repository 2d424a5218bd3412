// tests/e2e/crash.test.js — kill -9 under mixed load, 10 rounds on one database (issue 10, 5).
//
// Each round starts the gateway on the same store (env.restart: the harness's start-up, same
// config, port and database), runs a random 0.3–1.5 s mix — plain requests (openai, answers
// delayed up to 0.6 s), streams (anthropic, some slow enough to be cut mid-flight; openai),
// Idempotency-Key requests (gemini, streamed or not: new keys, keys repeated in the round, keys
// of earlier rounds; some on the daily budget too), requests on keys with a tight daily USD
// budget, monthly USD budget or requests-per-hour limit, and last a flurry answered at once —
// then SIGKILLs it with requests in flight. While it is down the SQLite store must pass
// PRAGMA integrity_check, and what the dead process left in flight is read from the store
// (reserved usage rows, in-flight idempotency claims). After the restart:
//   - what was left in flight is "uncertain" and charged at its reservation, the idempotency
//     claims are quarantined (DESIGN.md, the request pipeline: never undercount, never 409
//     forever); the start-up log and GET /admin/v1/health count them; no row stays reserved;
//   - every request answered 200 (a stream: through [DONE]) has exactly one usage row under its
//     request id: settled at the fake's fixed usage and the catalog's price or — when the kill
//     fell between the answer and its settlement, which is group-committed just after
//     (DESIGN.md step 10) — uncertain at its whole reservation; refusals (429), 409s, replays
//     and quarantined answers (502) have none; every call the fake received has its row (the
//     reservation is durable before the call), and no request reached the fake twice;
//   - the limited keys never spend more than their budget (worst cases are reserved, so spend
//     ≤ budget) nor more requests than their hourly limit, across restarts;
//   - every Idempotency-Key reached the provider at most once; every 200 a key answered carries
//     the same bytes; a retry after the restart gets what the store holds for the key: its
//     stored answer byte for byte (done), 502 uncertain_upstream_state (quarantined: in flight
//     at the kill, or answered just before the kill but not yet recorded as done), or a first
//     execution (the claim never became durable, or was given back: nothing ran).
// On PostgreSQL the limits' counters (usage_totals, usage_rate) must also agree with the rows.
// Expectations come from what the store and the fake recorded, never from timing. The load is
// drawn from a seeded generator (printed; LLMGW_CRASH_SEED=N makes the same choices again; the
// timing is the machine's). LLMGW_CRASH_VERBOSE=1 prints each round's time as it ends.
// LLMGW_E2E_PG=1 runs it on PostgreSQL (there is no integrity_check to run there).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startEnv, readSSE, sleep, expectedCostMicros, FAKE_USAGE } = require('./harness');

const PG = process.env.LLMGW_E2E_PG === '1';
const ROUNDS = 10;
const SEED = Number(process.env.LLMGW_CRASH_SEED) || crypto.randomInt(1, 2 ** 31);

// mulberry32: a small seeded generator, so that a failing mix can be drawn again
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = prng(SEED);
const between = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const pickOf = (xs) => xs[Math.floor(rnd() * xs.length)];

const PLAIN = 'gpt-4o'; // openai: plain requests, fast streams, the limited keys
const SLOW = 'claude-sonnet-4-6'; // anthropic: streams, some cut by the kill
const KEYED = 'gemini-2.5-flash'; // gemini: the Idempotency-Key requests
const PROVIDER = { [PLAIN]: 'openai', [SLOW]: 'anthropic', [KEYED]: 'gemini' };

// Request classes: [weight in the mix, API key, model, stream (null: per Idempotency-Key)]
const CLASSES = {
  plain: [25, 'main', PLAIN, false],
  fast: [10, 'main', PLAIN, true],
  slow: [15, 'main', SLOW, true],
  idem: [27, 'main', KEYED, null], // stream or not, per key
  idemDaily: [5, 'daily', PLAIN, false], // keyed, on the budget: a refusal gives its key back
  daily: [7, 'daily', PLAIN, false],
  monthly: [6, 'monthly', PLAIN, true],
  rph: [7, 'rph', PLAIN, false],
};
const WEIGHTS = Object.entries(CLASSES).flatMap(([name, [w]]) => Array(w).fill(name));
// what a limited key is refused with
const LIMIT_CODE = { daily: 'daily_budget_exceeded', monthly: 'monthly_budget_exceeded', rph: 'requests_per_hour_exceeded' };
const RPH = 8;

// The tag in every body: the request id (fixed width, so a class's worst case never varies),
// or for a keyed request its key (the same body for every request with that key).
const TAG_RE = /\[(c\d\d-\d{4}-[a-z]|ik-\d\d-\d{3}-[0-9a-f]{6})\]/;

function bodyFor(model, stream, tag) {
  const b = { model, max_tokens: 50, messages: [{ role: 'user', content: `crash [${tag}]` }] };
  if (stream) {
    b.stream = true;
    b.stream_options = { include_usage: true };
  }
  return b;
}

// "0.000640" for 640 micro-USD (the CLI takes decimal USD).
function usd(micros) {
  return `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')}`;
}

// One request; resolves (never rejects) to its outcome: status (0: no answer), the headers
// that matter, whether the whole answer arrived (a stream: [DONE]), its bytes.
async function fire(env, o) {
  const headers = { authorization: `Bearer ${o.apiKey}`, 'content-type': 'application/json', 'x-request-id': o.rid };
  if (o.idem) headers['idempotency-key'] = o.idem;
  Object.assign(o, { status: 0, gotRid: null, replayed: false, originalRid: null, complete: false, bytes: null, code: null, error: null });
  try {
    const res = await fetch(`${env.baseURL}/v1/chat/completions`, {
      method: 'POST', headers, body: JSON.stringify(o.body), signal: AbortSignal.timeout(20000),
    });
    o.status = res.status;
    o.gotRid = res.headers.get('x-request-id');
    o.replayed = res.headers.get('idempotent-replayed') === 'true';
    o.originalRid = res.headers.get('x-llmgw-original-request-id');
    if (o.stream && res.status === 200) {
      const s = await readSSE(res, { timeoutMs: 20000 }); // throws when the stream is cut
      o.bytes = s.raw;
      o.complete = s.done;
    } else {
      o.bytes = await res.text();
      o.complete = true;
      try { o.code = JSON.parse(o.bytes).error?.code ?? null; } catch { /* not JSON */ }
    }
  } catch (e) {
    o.error = String((e && e.cause && e.cause.code) || (e && e.message) || e);
  }
  return o;
}

// A request the client saw answered: a 200 read to its end (a stream through [DONE]) that ran
// (not a replay of another's answer).
const answered = (o) => o.status === 200 && o.complete && !o.replayed;

// Several reads in one run of sqlite3 or psql (each run costs a process start, and a round
// makes a few): parts is {name: [columns, 'FROM … WHERE …']}; answers {name: [row objects]}.
async function select(env, parts) {
  const sub = ([cols, from]) => {
    const pairs = cols.map((c) => `'${c}', ${c}`).join(', ');
    return env.postgres ? `(SELECT COALESCE(json_agg(json_build_object(${pairs})), '[]') ${from})`
      : `(SELECT json_group_array(json_object(${pairs})) ${from})`;
  };
  const [r] = await env.query(`SELECT ${Object.entries(parts).map(([k, v]) => `${sub(v)} AS ${k}`).join(', ')}`);
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'string' ? JSON.parse(v) : v]));
}
const USAGE_COLS = ['request_id', 'key_row_id', 'provider', 'model', 'stream', 'state', 'status', 'kind', 'reserved_micros',
  'cost_micros', 'tokens_in', 'tokens_out', 'cached_tokens', 'reasoning_tokens', 'settled_ms'];

test(`kill -9 under mixed load, ${ROUNDS} rounds on one ${PG ? 'PostgreSQL' : 'SQLite'} store: integrity, one usage row per 200, budgets hold, idempotency recovered`, { timeout: 120000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (LLMGW_CRASH_SEED=${SEED} makes the same choices again)`);
  const t0 = Date.now();
  // budget days (and months) reset 12 hours from now: no window turns during the test
  const resetHour = (new Date().getUTCHours() + 12) % 24;
  const env = await startEnv({
    postgres: PG,
    // one attempt per request (no fallback, no breaker): a request is one call or none
    extraConfig: `fallback: {enabled: false}\nbreaker: {failure_threshold: 0}\nbudgets: {daily_reset_hour_utc: ${resetHour}}`,
    timeouts: { first_byte_ms: 8000, total_ms: 20000 }, // none cuts a request: only the kill does
  });
  try {
    const apiKeys = { main: env.apiKey };
    const outcomes = []; // every request sent
    const byRid = new Map();
    const idemKeys = new Map(); // key → {key, cls, who, model, body, stream, round}
    const fakeLog = []; // every call the fake received, all rounds
    let seq = 0;
    const newRid = (round, cls) => `c${String(round).padStart(2, '0')}-${String(seq++).padStart(4, '0')}-${cls[0]}`;

    // what the fake received so far joins fakeLog; its queues and log start empty again
    async function drainFake() {
      fakeLog.push(...await env.fake.requests());
      await env.fake.reset();
    }
    function send(o) {
      outcomes.push(o);
      byRid.set(o.rid, o);
      o.done = fire(env, o);
      return o;
    }
    async function sendClass(round, cls, extra = {}) {
      const [, who, model, stream0] = CLASSES[cls];
      const o = { round, cls, who, apiKey: apiKeys[who], model, rid: newRid(round, cls) };
      if (cls === 'idem' || cls === 'idemDaily') {
        const mine = [...idemKeys.values()].filter((k) => k.cls === cls && k.round === round);
        const older = [...idemKeys.values()].filter((k) => k.cls === cls && k.round < round);
        const r = rnd();
        let k;
        const fresh = extra.hang || extra.quick;
        if (!fresh && r < 0.25 && mine.length > 0) k = pickOf(mine);
        else if (!fresh && r < 0.45 && older.length > 0) k = pickOf(older);
        else {
          const key = `ik-${String(round).padStart(2, '0')}-${String(idemKeys.size).padStart(3, '0')}-${between(0, 0xffffff).toString(16).padStart(6, '0')}`;
          const s = stream0 === null ? rnd() < 0.3 : stream0;
          k = { key, cls, who, model, body: bodyFor(model, s, key), stream: s, round };
          idemKeys.set(key, k);
          const p = PROVIDER[model];
          if (extra.hang) await env.fake.next(p, 'hang');
          else if (extra.quick) await env.fake.next(p, 'delay', { ms: 0 });
          else if (rnd() < 0.7) await env.fake.next(p, 'delay', { ms: between(0, 900) });
          else await env.fake.next(p, 'slow', { ms: 60, events: 8 });
        }
        Object.assign(o, { idem: k.key, body: k.body, stream: k.stream });
      } else {
        Object.assign(o, { stream: stream0, body: bodyFor(model, stream0, o.rid) });
        if (PROVIDER[model] === 'anthropic') await env.fake.next('anthropic', 'slow', { ms: extra.slowMs || pickOf([10, 40, 150]), events: 8 });
        else await env.fake.next('openai', 'delay', { ms: extra.quick ? 0 : between(0, cls === 'fast' || cls === 'monthly' ? 300 : 600) });
      }
      return send(o);
    }

    // ---- the limited keys, sized by the worst case the gateway reserves for their bodies
    // (the probe's body has the same length as the class's: the same worst case)
    for (const cls of ['daily', 'monthly']) {
      const [, , model, stream] = CLASSES[cls];
      const rid = newRid(0, cls);
      const o = send({ round: 0, cls: 'probe', who: 'main', apiKey: env.apiKey, model, stream, rid, body: bodyFor(model, stream, rid) });
      await o.done;
      assert.ok(answered(o), `probe ${cls}: ${o.status} ${o.bytes}`);
    }
    const probeRows = await Promise.all(outcomes.map((o) => env.waitUsage(o.rid)));
    const worst = { daily: probeRows[0].reserved_micros, monthly: probeRows[1].reserved_micros };
    assert.ok(worst.daily > 0 && worst.monthly > 0, JSON.stringify(worst));
    const budget = { daily: 10 * worst.daily, monthly: 8 * worst.monthly };
    apiKeys.daily = await env.createKey('daily', ['--daily-usd', usd(budget.daily)]);
    apiKeys.monthly = await env.createKey('monthly', ['--monthly-usd', usd(budget.monthly)]);
    apiKeys.rph = await env.createKey('rph', ['--rph', String(RPH)]);
    const keyRow = Object.fromEntries((await env.query('SELECT id, name FROM api_keys')).map((r) => [r.name, Number(r.id)]));
    await drainFake();

    const summary = [];
    let checkedUpTo = 0; // outcomes[0..checkedUpTo) had their rows checked

    // ---- after a restart: what the store, the fake and the clients recorded must agree
    async function checkStore(round, reservedAtKill) {
      const got = await select(env, {
        usage_rows: [USAGE_COLS, 'FROM usage'],
        idem_rows: [['idem_key', 'state', 'request_id', 'status'], 'FROM idempotency'],
        // (PostgreSQL: the counters its limits read)
        ...(PG ? {
          totals: [['id', 'period', 'spent_micros'], 'FROM usage_totals WHERE scope = 0'],
          rates: [['id', 'requests'], 'FROM usage_rate WHERE scope = 0'],
        } : {}),
      });
      const rows = got.usage_rows;
      const rowOf = new Map();
      for (const r of rows) {
        assert.ok(!rowOf.has(r.request_id), `request id ${r.request_id} has two usage rows`);
        rowOf.set(r.request_id, r);
        assert.notEqual(r.state, 'reserved', `round ${round}: ${r.request_id} is still reserved after the restart`);
        assert.ok(['settled', 'uncertain'].includes(r.state), `round ${round}: ${r.request_id} is ${r.state} (status ${r.status})`);
        if (r.state === 'uncertain') {
          assert.equal(Number(r.cost_micros), Number(r.reserved_micros), `${r.request_id}: uncertain is charged at its reservation`);
          assert.ok(Number(r.settled_ms) > 0, `${r.request_id}: settled_ms`);
        }
      }
      // what the dead process held: uncertain now, at the reservation it held
      for (const r of reservedAtKill) {
        const now = rowOf.get(r.request_id);
        assert.ok(now, `reserved row ${r.request_id} is kept`);
        assert.equal(now.state, 'uncertain', `${r.request_id}, reserved at the kill, is uncertain after the restart`);
        assert.equal(Number(now.cost_micros), Number(r.reserved_micros), `${r.request_id} charged at the reservation it held`);
      }
      const heldAtKill = new Set(reservedAtKill.map((r) => r.request_id));
      let answeredUncertain = 0;
      // every client outcome since the last check
      for (const o of outcomes.slice(checkedUpTo)) {
        const row = rowOf.get(o.rid);
        const what = `round ${o.round} ${o.cls} ${o.rid}${o.idem ? ` (key ${o.idem})` : ''}: ${o.status} ${o.code || ''} ${o.error || ''}`;
        if (o.status !== 0) assert.equal(o.gotRid, o.rid, `${what}: the answer carries the request's own id`);
        if (answered(o)) {
          assert.ok(row, `${what}: answered, but no usage row`);
          if (row.state === 'uncertain') {
            // answered, and the kill came before its settlement was committed: charged in full
            assert.ok(heldAtKill.has(o.rid), `${what}: uncertain, but not left reserved by a dead process`);
            answeredUncertain++;
          } else {
            const u = FAKE_USAGE[o.model];
            assert.equal(row.state, 'settled', what);
            assert.equal(Number(row.status), 200, what);
            assert.equal(row.model, o.model, what);
            assert.equal(row.provider, PROVIDER[o.model], what);
            assert.equal(Number(row.stream), o.stream ? 1 : 0, what);
            assert.equal(Number(row.key_row_id), keyRow[o.who === 'main' ? 'e2e' : o.who], what);
            assert.deepEqual([row.tokens_in, row.tokens_out, row.cached_tokens, row.reasoning_tokens].map(Number),
              [u.input, u.output, u.cached, u.reasoning], `${what}: tokens as the fake's usage`);
            assert.equal(Number(row.cost_micros), expectedCostMicros(o.model, u), `${what}: cost from the catalog`);
            assert.ok(Number(row.cost_micros) <= Number(row.reserved_micros), `${what}: cost within the reservation`);
          }
        } else if (o.status === 200 && o.replayed) {
          assert.equal(row, undefined, `${what}: a replay is not charged`);
          assert.ok(o.idem, what);
        } else if (o.status === 429) {
          assert.equal(o.code, LIMIT_CODE[o.who], what);
          assert.equal(row, undefined, `${what}: a refusal writes no row`);
        } else if (o.status === 409) {
          assert.ok(o.idem && o.code === 'idempotency_key_in_flight', what);
          assert.equal(row, undefined, what);
        } else if (o.status === 502) {
          assert.ok(o.idem && o.code === 'uncertain_upstream_state', what);
          assert.equal(row, undefined, `${what}: a quarantined key's answer runs nothing`);
        } else {
          // cut by the kill: no answer, or a stream without its end
          assert.ok(o.status === 0 || (o.status === 200 && !o.complete), `${what}: unexpected answer ${o.bytes}`);
          assert.ok(o.round === round, `${what}: only the kill cuts a request`);
        }
      }
      checkedUpTo = outcomes.length;

      // every call the fake received: once, with a durable usage row (reserved before the call)
      const seen = new Map();
      for (const e of fakeLog) {
        const m = TAG_RE.exec(typeof e.body === 'string' ? e.body : JSON.stringify(e.body));
        // (a body the kill cut short may have lost its tag; the fake refused it: 400)
        const whole = e.body !== null && typeof e.body === 'object';
        assert.ok(m || !whole, `a call the fake received without a tag: ${JSON.stringify(e.body).slice(0, 200)}`);
        if (m) seen.set(m[1], (seen.get(m[1]) || 0) + 1);
      }
      const idemRecs = new Map(got.idem_rows.map((r) => [r.idem_key, r]));
      for (const [tag, n] of seen) {
        assert.equal(n, 1, `${tag} reached the provider ${n} times`);
        if (tag.startsWith('ik-')) {
          const rec = idemRecs.get(tag);
          assert.ok(rec && ['done', 'uncertain'].includes(rec.state), `key ${tag} ran upstream: its record is kept (${rec && rec.state})`);
          assert.ok(rowOf.has(rec.request_id), `key ${tag}: its execution ${rec.request_id} has a usage row`);
        } else {
          assert.ok(rowOf.has(tag), `${tag} reached the provider without a usage row`);
        }
      }
      // a settled row is a call the provider answered
      for (const r of rows) {
        if (r.state !== 'settled') continue;
        const o = byRid.get(r.request_id);
        assert.ok(o, `a settled row no client sent: ${r.request_id}`);
        assert.equal(seen.get(o.idem || o.rid), 1, `${r.request_id} settled without a call the fake saw`);
      }

      // budgets: worst cases are reserved, so the spend never passes the budget
      const spend = (who) => rows.filter((r) => Number(r.key_row_id) === keyRow[who]).reduce((s, r) => s + Number(r.cost_micros), 0);
      assert.ok(spend('daily') <= budget.daily, `round ${round}: daily spend ${spend('daily')} > budget ${budget.daily}`);
      assert.ok(spend('monthly') <= budget.monthly, `round ${round}: monthly spend ${spend('monthly')} > budget ${budget.monthly}`);
      const rphRows = rows.filter((r) => Number(r.key_row_id) === keyRow.rph && r.kind === 'chat').length;
      assert.ok(rphRows <= RPH, `round ${round}: ${rphRows} requests admitted in the hour on a key limited to ${RPH}`);
      // PostgreSQL decides the limits from counters kept with the rows, in the same
      // transactions: after a crash and its recovery they still agree with the rows
      if (PG) {
        const sum = (xs, f) => xs.reduce((n, x) => n + Number(x[f]), 0);
        for (const id of Object.values(keyRow)) {
          const mine = rows.filter((r) => Number(r.key_row_id) === id);
          for (const period of ['d', 'm']) {
            assert.equal(sum(got.totals.filter((x) => Number(x.id) === id && x.period === period), 'spent_micros'), sum(mine, 'cost_micros'),
              `round ${round}: key ${id}'s '${period}' spend counter = the sum of its rows`);
          }
          assert.equal(sum(got.rates.filter((x) => Number(x.id) === id), 'requests'), mine.filter((r) => r.kind === 'chat').length,
            `round ${round}: key ${id}'s request counter = its rows`);
        }
      }
      return { rows, rowOf, idemRecs, answeredUncertain, seen };
    }

    // every 200 a key answered, original or replay, carries the same bytes
    function checkSameBytes() {
      const first = new Map();
      for (const o of outcomes) {
        if (!o.idem || o.status !== 200 || !o.complete) continue;
        if (!first.has(o.idem)) first.set(o.idem, o);
        else assert.equal(o.bytes, first.get(o.idem).bytes, `key ${o.idem}: ${o.rid} and ${first.get(o.idem).rid} got other bytes`);
      }
    }

    for (let round = 1; round <= ROUNDS; round++) {
      const loadMs = between(300, 1500);
      const from = outcomes.length;
      const loadStart = Date.now();
      // each round: two of each limited class, a stream slow enough to be cut and a keyed
      // request the provider never answers (both in flight at the kill), then the random mix
      await Promise.all([...['daily', 'daily', 'monthly', 'monthly', 'rph', 'rph'].map((cls) => sendClass(round, cls)),
        sendClass(round, 'slow', { slowMs: 150 }), sendClass(round, 'idem', { hang: true })]);
      while (Date.now() - loadStart < loadMs) {
        await sendClass(round, pickOf(WEIGHTS));
        await sleep(between(3, 30));
      }
      // and a flurry answered at once, so that the kill falls among answers, settlements and
      // idempotency records on their way to the store
      await Promise.all(Array.from({ length: 15 }, (_, i) => sendClass(round, i % 3 ? 'plain' : 'idem', { quick: true })));
      await sleep(between(0, 40));
      const tp = [Date.now()];
      await env.crash(); // SIGKILL, and wait for the exit
      const sent = outcomes.slice(from);
      await Promise.all(sent.map((o) => o.done));

      // the store as the dead process left it
      const dead = await select(env, {
        // (the sqlite3 CLI opens the database as a crash left it, -wal and all)
        ...(PG ? {} : { integrity: [['integrity_check'], 'FROM pragma_integrity_check'] }),
        reserved: [['request_id', 'reserved_micros'], "FROM usage WHERE state = 'reserved'"],
        claims: [['idem_key', 'request_id'], "FROM idempotency WHERE state = 'in_flight'"],
      });
      if (!PG) assert.deepEqual(dead.integrity, [{ integrity_check: 'ok' }], `round ${round}: PRAGMA integrity_check`);
      const reservedAtKill = dead.reserved;
      const claimsAtKill = dead.claims;
      const claimedAtKill = claimsAtKill.map((r) => r.idem_key);
      await sleep(50); // the fake logs a call cut mid-body when it sees the connection go
      await drainFake();

      tp.push(Date.now());
      // the same store, a new process
      const mark = env.log().length;
      await env.restart();
      const sa = { authorization: `Bearer ${env.superadminKey()}` };
      const h = await env.request('GET', '/admin/v1/health', { headers: sa });
      assert.equal(h.status, 200, h.text);
      assert.equal(h.json.idempotency.recovered_at_start, claimedAtKill.length, `round ${round}: keys recovered at start`);
      const RECOVERED_RE = /(\d+) reservation\(s\) left by an earlier process marked uncertain/;
      for (let end = Date.now() + 2000; reservedAtKill.length > 0 && !RECOVERED_RE.test(env.log().slice(mark)) && Date.now() < end;) await sleep(20);
      const recovered = RECOVERED_RE.exec(env.log().slice(mark));
      assert.equal(recovered ? Number(recovered[1]) : 0, reservedAtKill.length, `round ${round}: reservations recovered at start`);

      tp.push(Date.now());
      const st = await checkStore(round, reservedAtKill);
      tp.push(Date.now());
      assert.equal(h.json.usage.uncertain, st.rows.filter((r) => r.state === 'uncertain').length, 'the health surface counts the uncertain rows');
      for (const k of claimedAtKill) assert.equal(st.idemRecs.get(k)?.state, 'uncertain', `key ${k}, in flight at the kill, is quarantined`);
      assert.ok(![...st.idemRecs.values()].some((r) => r.state === 'in_flight'), 'no claim stays in flight after the restart');
      checkSameBytes();

      // every key this round used, retried after the restart: what its record says
      const touched = [...new Set(sent.filter((o) => o.idem).map((o) => o.idem))];
      const retries = [];
      for (const key of touched) {
        const k = idemKeys.get(key);
        const rec = st.idemRecs.get(key);
        const o = send({ round, cls: 'retry', who: k.who, apiKey: apiKeys[k.who], model: k.model, rid: newRid(round, 'retry'), idem: key, body: k.body, stream: k.stream });
        retries.push(o.done.then(() => {
          const what = `round ${round}: retry of key ${key} (record ${rec ? rec.state : 'none'}): ${o.status} ${o.code || ''} ${o.error || ''}`;
          if (rec && rec.state === 'done') {
            assert.equal(o.status, Number(rec.status), what);
            assert.ok(o.replayed && o.complete, what);
            assert.equal(o.originalRid, rec.request_id, what);
          } else if (rec) {
            assert.equal(rec.state, 'uncertain', what);
            assert.equal(o.status, 502, what);
            assert.equal(o.code, 'uncertain_upstream_state', what);
          } else {
            // never claimed durably, or given back (refused by a limit): it never ran, so now
            // it runs — or is refused again
            assert.ok(!st.seen.has(key), `${what}: no record, yet the provider saw it`);
            assert.ok(answered(o) || (o.status === 429 && o.code === LIMIT_CODE[k.who]), what);
          }
        }));
      }
      await Promise.all(retries);
      tp.push(Date.now());
      checkSameBytes();
      // the retries settle before the next round's kill
      for (let end = Date.now() + 5000; ;) {
        const n = await env.query("SELECT request_id FROM usage WHERE state = 'reserved'");
        if (n.length === 0) break;
        assert.ok(Date.now() < end, `rows still reserved: ${JSON.stringify(n)}`);
        await sleep(50);
      }
      await drainFake();

      const inRound = outcomes.slice(from);
      // ms: load / down (kill, reads) / restart / checks / retries / settling
      const phases = [tp[0] - loadStart, ...tp.slice(1).map((x, i) => x - tp[i]), Date.now() - tp[tp.length - 1]].join('/');
      if (process.env.LLMGW_CRASH_VERBOSE) process.stderr.write(`round ${round}: ${Date.now() - loadStart} ms (${phases})\n`);
      summary.push({
        round,
        ms: Date.now() - loadStart,
        phases,
        loadMs,
        sent: sent.length,
        answered: sent.filter(answered).length,
        cut: sent.filter((o) => o.status === 0 || (o.status === 200 && !o.complete)).length,
        refused: sent.filter((o) => o.status === 429).length,
        reservedAtKill: reservedAtKill.length,
        answeredButUncertain: st.answeredUncertain,
        keysRecovered: claimedAtKill.length,
        // of which never reserved, so never sent (quarantined all the same, as DESIGN.md says)
        keysRecoveredUnreserved: claimsAtKill.filter((c) => !st.rowOf.has(c.request_id)).length,
        answeredKeyQuarantined: new Set(sent.filter((o) => o.idem && answered(o) && st.idemRecs.get(o.idem)?.state === 'uncertain').map((o) => o.idem)).size,
        retries: touched.length,
        retryReplayed: inRound.filter((o) => o.cls === 'retry' && o.replayed).length,
        retryQuarantined: inRound.filter((o) => o.cls === 'retry' && o.status === 502).length,
        retryRan: inRound.filter((o) => o.cls === 'retry' && answered(o)).length,
        retryRefused: inRound.filter((o) => o.cls === 'retry' && o.status === 429).length,
      });
    }
    // the last round's retries, checked in a last pass
    const last = await checkStore(ROUNDS + 1, []);
    const spent = (who) => last.rows.filter((r) => Number(r.key_row_id) === keyRow[who]).reduce((n, r) => n + Number(r.cost_micros), 0);
    t.diagnostic(`spent: daily ${spent('daily')} of ${budget.daily}, monthly ${spent('monthly')} of ${budget.monthly}; rph key ${last.rows.filter((r) => Number(r.key_row_id) === keyRow.rph).length} of ${RPH} requests`);

    for (const s of summary) t.diagnostic(JSON.stringify(s));
    // the mix did what it is for (each round sets it up: over ten rounds these are certain)
    const all = (f) => summary.reduce((n, s) => n + s[f], 0);
    assert.ok(all('answered') > 0, 'requests were answered');
    assert.ok(all('reservedAtKill') > 0, 'reservations were left in flight');
    assert.ok(all('keysRecovered') > 0, 'idempotency claims were left in flight');
    assert.ok(outcomes.some((o) => o.stream && o.status === 200 && !o.complete), 'a stream was cut mid-flight');
    for (const who of ['daily', 'monthly', 'rph']) {
      assert.ok(outcomes.some((o) => o.who === who && o.status === 429), `the ${who} key reached its limit`);
    }
    t.diagnostic(`${outcomes.length} requests in ${ROUNDS} rounds, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    if (process.env.SHOWLOG) console.log(env.log());
    await env.stop();
  }
});
