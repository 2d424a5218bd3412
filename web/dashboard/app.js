// llmgw usage dashboard: plain JS, served by the gateway itself (CSP: scripts from 'self' only,
// so no inline code or handlers; every element is built with the DOM API, text with
// textContent). The admin key lives in one variable of this closure: never in storage,
// cookies, the URL or the DOM; "Sign out" (or a reload) forgets it. Every figure shown comes
// from the admin API's answers; the exact value is in data-value, the text is formatted.
'use strict';

(() => {
  const DAY_S = 86400;
  const RECENT_ROWS = 50;
  const ERROR_ROWS = 20;
  const TOP_KEYS = 25;

  let apiKey = null; // the admin key: memory only
  let generation = 0; // bumps on every load / sign-out: answers of an older one are dropped
  let aborter = null;
  const state = {
    orgs: [],
    org: '', // the selected org's slug ('' = every org: the superadmin's choice)
    rangeDays: 30,
    keys: new Map(), // key id → key object from /admin/v1/keys
    lastDays: null, // the chart's last data (redrawn on resize)
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ formatting
  const NF = new Intl.NumberFormat('en-US');
  const usdFormats = new Map();
  function usdFormat(maxDigits) {
    if (!usdFormats.has(maxDigits)) {
      usdFormats.set(maxDigits, new Intl.NumberFormat('en-US', {
        style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: maxDigits,
      }));
    }
    return usdFormats.get(maxDigits);
  }
  // micro-USD (integer) → "$1,234.56", "$2.5013", "$0.000575": 2 to 6 decimals, as needed.
  function fmtUSD(micros) {
    const m = Math.round(Number(micros) || 0);
    const a = Math.abs(m);
    const digits = a >= 1000e6 ? 2 : a >= 1e6 ? 4 : 6;
    return usdFormat(digits).format(m / 1e6);
  }
  const fmtInt = (n) => NF.format(Math.round(Number(n) || 0));
  function fmtPct(ratio) {
    if (!Number.isFinite(ratio)) return '—';
    const p = ratio * 100;
    if (p > 0 && p < 0.1) return '<0.1%';
    return `${p >= 100 || p === 0 ? Math.round(p * 10) / 10 : p.toFixed(1)}%`;
  }
  function fmtCompact(n) {
    const a = Math.abs(n);
    if (a >= 1e9) return `${trimNum(n / 1e9)}B`;
    if (a >= 1e6) return `${trimNum(n / 1e6)}M`;
    if (a >= 1e3) return `${trimNum(n / 1e3)}k`;
    return trimNum(n);
  }
  function trimNum(v) {
    return String(Math.round(v * 100) / 100);
  }
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad2 = (n) => String(n).padStart(2, '0');
  function fmtDay(d) { // Date (UTC) → "Nov 14"
    return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  }
  function fmtDate(d) { // "Nov 14, 2026"
    return `${fmtDay(d)}, ${d.getUTCFullYear()}`;
  }
  function fmtTime(iso) { // "Nov 14 09:05:03" (UTC)
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso || '');
    return `${fmtDay(d)} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
  }
  const isoDay = (d) => `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
  const usdToMicros = (v) => Math.round((Number(v) || 0) * 1e6);

  // ------------------------------------------------------------------ DOM helpers
  // h('td', {class: 'num', dataset: {value: 3}}, 'text', childNode, ...)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, text) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }
  function setFigure(id, text, value, extra) {
    const el = $(id);
    el.textContent = text;
    if (value === undefined) delete el.dataset.value;
    else el.dataset.value = String(value);
    for (const [k, v] of Object.entries(extra || {})) el.dataset[k] = String(v);
  }
  function emptyRow(tbody, cols, text) {
    tbody.replaceChildren(h('tr', { class: 'empty' }, h('td', { colspan: cols }, text)));
  }
  function sectionError(tbodyOrBox, cols, e) {
    const msg = `Could not load: ${describe(e)}`;
    if (cols) emptyRow(tbodyOrBox, cols, msg);
    else tbodyOrBox.replaceChildren(h('p', { class: 'alert alert-error' }, msg));
  }

  // ------------------------------------------------------------------ the API
  class ApiError extends Error {
    constructor(status, body) {
      const err = body && body.error ? body.error : {};
      super(err.message || `HTTP ${status}`);
      this.status = status;
      this.type = err.type || '';
      this.code = err.code || '';
      this.requestId = err.request_id || '';
    }
  }
  function describe(e) {
    if (e instanceof ApiError) {
      return `${e.message}${e.code ? ` (${e.code})` : ''}${e.requestId ? ` — request ${e.requestId}` : ''}`;
    }
    return e && e.message ? e.message : String(e);
  }
  function apiURL(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    const qs = q.toString();
    return qs ? `${path}?${qs}` : path;
  }
  async function apiFetch(path, params, { key = apiKey, signal } = {}) {
    const res = await fetch(apiURL(path, params), {
      headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
      signal,
    });
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch { /* not JSON */ }
      throw new ApiError(res.status, body);
    }
    return res;
  }
  async function api(path, params, opts) {
    return (await apiFetch(path, params, opts)).json();
  }
  // Every page of a list ({object: "list", data, next_cursor}).
  async function apiList(path, params, opts, maxPages = 25) {
    const out = [];
    let cursor = null;
    for (let i = 0; i < maxPages; i++) {
      const r = await api(path, { ...params, cursor }, opts);
      out.push(...(r.data || []));
      if (!r.next_cursor) break;
      cursor = r.next_cursor;
    }
    return out;
  }
  // Read a JSONL stream line by line. Returns {complete}: false when the stream was cut (the
  // gateway ends a failed export without a final newline).
  async function readJsonl(path, params, onRow, opts) {
    const res = await apiFetch(path, params, opts);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) onRow(JSON.parse(line));
      }
    }
    buf += dec.decode();
    return { complete: buf.trim() === '' };
  }
  const orgParams = () => (state.org ? { org: state.org } : {});

  // ------------------------------------------------------------------ sign in / out
  function showLoginError(text) {
    const el = $('login-error');
    el.textContent = text;
    el.hidden = !text;
  }
  function loginMessage(e) {
    if (e instanceof ApiError && e.status === 401) return 'This API key is not valid. Check it and try again.';
    if (e instanceof ApiError && e.status === 403) {
      return 'This key cannot open the dashboard: it needs an org admin or superadmin key.';
    }
    return `Sign-in failed: ${describe(e)}`;
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('login-key');
    const key = input.value.trim();
    input.value = '';
    if (!key) {
      showLoginError('Enter an admin API key.');
      input.focus();
      return;
    }
    showLoginError('');
    const btn = $('login-submit');
    btn.disabled = true;
    btn.textContent = 'Signing in…';
    try {
      const orgs = await apiList('/admin/v1/orgs', { limit: 200 }, { key });
      apiKey = key;
      startDashboard(orgs);
    } catch (e) {
      showLoginError(loginMessage(e));
      input.focus();
    } finally {
      btn.disabled = false;
      btn.textContent = 'Sign in';
    }
  });

  function signOut(message) {
    apiKey = null;
    generation++;
    if (aborter) aborter.abort();
    aborter = null;
    state.orgs = [];
    state.org = '';
    state.keys = new Map();
    state.lastDays = null;
    clearDashboard();
    $('dash-view').hidden = true;
    $('login-view').hidden = false;
    showLoginError(message || '');
    $('login-key').focus();
  }
  $('signout').addEventListener('click', () => signOut(''));

  function startDashboard(orgs) {
    state.orgs = orgs;
    const sel = $('org-select');
    sel.replaceChildren();
    if (orgs.length > 1) { // the superadmin: choose an org, or all of them
      for (const o of orgs) sel.append(h('option', { value: o.slug }, o.name && o.name !== o.slug ? `${o.name} (${o.slug})` : o.slug));
      sel.append(h('option', { value: '' }, 'All organizations'));
      state.org = orgs[0].slug;
      sel.value = state.org;
      sel.hidden = false;
      $('org-name').hidden = true;
    } else {
      state.org = orgs.length ? orgs[0].slug : '';
      sel.hidden = true;
      $('org-name').hidden = false;
      $('org-name').textContent = orgs.length ? (orgs[0].name || orgs[0].slug) : 'no organization';
    }
    $('login-view').hidden = true;
    $('dash-view').hidden = false;
    load();
  }

  $('org-select').addEventListener('change', (ev) => {
    state.org = ev.target.value;
    load();
  });
  for (const b of document.querySelectorAll('#range button')) {
    b.addEventListener('click', () => {
      state.rangeDays = Number(b.dataset.range);
      for (const o of document.querySelectorAll('#range button')) {
        o.classList.toggle('active', o === b);
        o.setAttribute('aria-pressed', o === b ? 'true' : 'false');
      }
      load();
    });
  }
  $('refresh').addEventListener('click', () => load());

  // ------------------------------------------------------------------ loading
  function rangeFrom(nowS) {
    return nowS - state.rangeDays * DAY_S;
  }
  function rangeName() {
    return state.rangeDays === 1 ? 'Last 24 hours' : `Last ${state.rangeDays} days`;
  }
  function setRangeLabel(fromS, toS) {
    const f = new Date(fromS * 1000);
    const t = new Date(toS * 1000);
    const org = state.org ? '' : ' · all organizations';
    $('range-label').textContent = `${rangeName()} · ${fmtDate(f)} – ${fmtDate(t)} (UTC)${org}`;
  }

  async function load() {
    if (!apiKey) return;
    const gen = ++generation;
    if (aborter) aborter.abort();
    aborter = new AbortController();
    const opts = { signal: aborter.signal };
    const current = () => gen === generation;
    const main = $('dashboard');
    main.dataset.state = 'loading';
    $('loading').hidden = false;
    $('dash-error').hidden = true;

    const nowS = Math.floor(Date.now() / 1000);
    const from = rangeFrom(nowS);
    setRangeLabel(from, nowS);
    const now = new Date(nowS * 1000);
    const todayS = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) / 1000;
    const monthS = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) / 1000;
    const org = orgParams();
    const usage = (group_by, f) => api('/admin/v1/usage', { from: f, group_by, ...org }, opts);

    const failures = [];
    // A step: run it, draw its result if this load is still the current one.
    const step = (promise, draw, onError) => promise.then(
      (v) => { if (current()) draw(v); },
      (e) => {
        if (!current() || (e && e.name === 'AbortError')) return;
        failures.push(e);
        if (onError) onError(e);
      });

    const keysP = listKeys(opts).then((keys) => {
      if (current()) state.keys = new Map(keys.map((k) => [k.id, k]));
      return keys;
    });
    const keysSettled = keysP.catch(() => null); // a key table still shows ids without names
    const byKeyP = usage('key', from);

    await Promise.all([
      step(usage('day', from), (r) => { drawTotals(r); drawChart(r); setRangeLabel(r.from, r.to); },
        (e) => { clearTotals(); $('chart').replaceChildren(h('p', { class: 'alert alert-error' }, `Could not load: ${describe(e)}`)); }),
      step(usage('model', from), (r) => drawGroups('models-body', 'model', r, modelLabel),
        (e) => sectionError($('models-body'), 6, e)),
      step(usage('provider', from), (r) => drawGroups('providers-body', 'provider', r, providerLabel),
        (e) => sectionError($('providers-body'), 6, e)),
      step(Promise.all([byKeyP, keysSettled]), ([r]) => drawKeys(r),
        (e) => sectionError($('keys-body'), 6, e)),
      step(Promise.all([keysP, usage('key', todayS), usage('key', monthS)]),
        ([keys, today, month]) => drawBudgets(keys, today, month),
        (e) => sectionError($('budgets'), 0, e)),
      step(loadRecent(nowS - DAY_S, org, opts, keysSettled), (r) => drawRecent(r),
        (e) => { sectionError($('recent-body'), 8, e); $('errors').replaceChildren(); setFigure('error-rate', '—'); }),
    ]);
    if (!current()) return;
    $('loading').hidden = true;
    const signedOut = failures.find((e) => e instanceof ApiError && e.status === 401);
    if (signedOut) {
      signOut('The gateway no longer accepts this key: sign in again.');
      return;
    }
    if (failures.length) {
      const el = $('dash-error');
      el.textContent = `Some figures could not be loaded: ${describe(failures[0])}`;
      el.hidden = false;
    }
    main.dataset.state = failures.length ? 'partial' : 'ready';
  }

  // The selected org's keys; for "All organizations", each org's (the list without ?org=
  // holds no org's keys).
  async function listKeys(opts) {
    if (state.org) return apiList('/admin/v1/keys', { limit: 200, org: state.org }, opts);
    const lists = await Promise.all(state.orgs.map((o) => apiList('/admin/v1/keys', { limit: 200, org: o.slug }, opts)));
    return lists.flat();
  }

  // The last 24 h of rows, streamed: the newest RECENT_ROWS, the newest errors, and the counts.
  async function loadRecent(fromS, org, opts, keysSettled) {
    const last = [];
    const errors = [];
    let rows = 0;
    let failed = 0;
    const r = await readJsonl('/admin/v1/usage/export', { format: 'jsonl', from: fromS, ...org }, (row) => {
      rows++;
      last.push(row);
      if (last.length > RECENT_ROWS) last.shift();
      if (Number(row.status) >= 400) {
        failed++;
        errors.push(row);
        if (errors.length > ERROR_ROWS) errors.shift();
      }
    }, opts);
    await keysSettled;
    return { rows, failed, recent: last.reverse(), errors: errors.reverse(), complete: r.complete };
  }

  // ------------------------------------------------------------------ drawing
  function clearTotals() {
    for (const id of ['total-spend', 'total-requests', 'total-tokens']) setFigure(id, '—');
    for (const id of ['total-spend-sub', 'total-requests-sub', 'total-tokens-sub']) $(id).textContent = '';
  }
  function drawTotals(r) {
    const t = r.totals || {};
    const tokens = (t.tokens_in || 0) + (t.tokens_out || 0);
    setFigure('total-spend', fmtUSD(t.cost_micros), t.cost_micros || 0);
    $('total-spend-sub').textContent = t.requests
      ? `${fmtUSD(Math.round((t.cost_micros || 0) / t.requests))} per request on average` : 'no spend in this range';
    setFigure('total-requests', fmtInt(t.requests), t.requests || 0);
    $('total-requests-sub').textContent = `${fmtInt(t.rows)} usage rows, attempts included`;
    setFigure('total-tokens', fmtInt(tokens), tokens, { tokensIn: t.tokens_in || 0, tokensOut: t.tokens_out || 0 });
    $('total-tokens-sub').textContent = `${fmtInt(t.tokens_in)} in · ${fmtInt(t.tokens_out)} out`;
  }

  function modelLabel(g) { return [h('span', { class: 'cell-main trunc', title: g }, g)]; }
  function providerLabel(g) { return [h('span', { class: 'cell-main trunc', title: g }, g)]; }
  function keyLabel(id) {
    if (typeof id === 'string' && id.startsWith('app:')) {
      return [h('span', { class: 'cell-main' }, 'Browser sessions'), h('span', { class: 'cell-sub' }, id)];
    }
    const k = state.keys.get(id);
    if (k && k.name) {
      const extra = [k.revoked ? 'revoked' : '', state.org ? '' : k.org].filter(Boolean).join(' · ');
      return [h('span', { class: 'cell-main' }, k.name), h('span', { class: 'cell-sub' }, extra ? `${id} · ${extra}` : id)];
    }
    return [h('span', { class: 'cell-main mono' }, id), k && k.revoked ? h('span', { class: 'cell-sub' }, 'revoked') : null];
  }
  function keyText(id) {
    const k = state.keys.get(id);
    return k && k.name ? k.name : id;
  }
  function bySpend(a, b) {
    return (b.cost_micros - a.cost_micros) || (b.requests - a.requests) || String(a.group).localeCompare(String(b.group));
  }
  function shareCell(part, total) {
    if (!total) return h('td', { class: 'num muted' }, '—');
    const ratio = part / total;
    const fill = h('span', { class: 'share-fill' });
    fill.style.width = `${Math.min(100, Math.max(0, ratio * 100)).toFixed(1)}%`;
    return h('td', { class: 'num', dataset: { value: ratio.toFixed(6) } },
      h('span', { class: 'share' }, fmtPct(ratio), h('span', { class: 'share-bar' }, fill)));
  }
  function groupRow(kind, g, total, label) {
    return h('tr', {
      dataset: {
        testid: `${kind}-row`, [kind]: g.group, value: g.cost_micros, requests: g.requests,
        tokensIn: g.tokens_in, tokensOut: g.tokens_out, rows: g.rows,
      },
    },
    h('td', null, label(g.group)),
    h('td', { class: 'num', dataset: { value: g.requests } }, fmtInt(g.requests)),
    h('td', { class: 'num', dataset: { value: g.tokens_in } }, fmtInt(g.tokens_in)),
    h('td', { class: 'num', dataset: { value: g.tokens_out } }, fmtInt(g.tokens_out)),
    h('td', { class: 'num', dataset: { value: g.cost_micros } }, fmtUSD(g.cost_micros)),
    shareCell(g.cost_micros, total));
  }
  function drawGroups(bodyId, kind, r, label) {
    const body = $(bodyId);
    const data = (r.data || []).slice().sort(bySpend);
    if (!data.length) return emptyRow(body, 6, 'No usage in this range.');
    const total = (r.totals && r.totals.cost_micros) || 0;
    body.replaceChildren(...data.map((g) => groupRow(kind, g, total, label)));
  }
  function drawKeys(r) {
    const body = $('keys-body');
    const data = (r.data || []).slice().sort(bySpend);
    const more = $('keys-more');
    more.hidden = data.length <= TOP_KEYS;
    more.textContent = `${fmtInt(data.length - TOP_KEYS)} more keys with usage are not shown.`;
    if (!data.length) return emptyRow(body, 6, 'No usage in this range.');
    const total = (r.totals && r.totals.cost_micros) || 0;
    body.replaceChildren(...data.slice(0, TOP_KEYS).map((g) => groupRow('key', g, total, keyLabel)));
  }

  function meter(testid, period, spent, limit) {
    const pct = limit > 0 ? (spent / limit) * 100 : 0;
    const level = pct >= 100 ? 'over' : pct > 80 ? 'warn' : '';
    const fill = h('span', { class: `progress-fill ${level}` });
    fill.style.width = `${Math.min(100, pct).toFixed(2)}%`;
    return h('div', {
      class: 'budget-meter',
      dataset: { testid, value: spent, limit, percent: pct.toFixed(2), level: level || 'ok' },
    },
    h('span', { class: 'budget-period' }, period),
    h('div', {
      class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-valuenow': Math.round(Math.min(pct, 100)), 'aria-label': `${period} budget used`,
    }, fill),
    h('span', { class: `budget-pct ${level}` }, fmtPct(pct / 100)),
    h('span', { class: 'budget-figures' }, `${fmtUSD(spent)} of ${fmtUSD(limit)}`));
  }
  function budgetBlock(testid, dataset, title, sub, limits, spentToday, spentMonth) {
    const daily = usdToMicros(limits.daily_usd);
    const monthly = usdToMicros(limits.monthly_usd);
    const pct = Math.max(daily ? spentToday / daily : 0, monthly ? spentMonth / monthly : 0);
    const el = h('div', { class: 'budget-row', dataset: { testid, ...dataset } },
      h('div', { class: 'budget-key' }, h('span', { class: 'cell-main' }, title), h('span', { class: 'cell-sub' }, sub)),
      daily ? meter('budget-daily', 'Today', spentToday, daily) : null,
      monthly ? meter('budget-monthly', 'This month', spentMonth, monthly) : null);
    return { el, pct };
  }
  function drawBudgets(keys, today, month) {
    const box = $('budgets');
    const spent = (r) => new Map((r.data || []).map((g) => [g.group, g.cost_micros || 0]));
    const t = spent(today);
    const m = spent(month);
    const blocks = [];
    const org = state.org && state.orgs.find((o) => o.slug === state.org);
    if (org && org.limits && (usdToMicros(org.limits.daily_usd) || usdToMicros(org.limits.monthly_usd))) {
      const b = budgetBlock('org-budget-row', { org: org.slug }, org.name || org.slug, 'whole organization', org.limits,
        (today.totals && today.totals.cost_micros) || 0, (month.totals && month.totals.cost_micros) || 0);
      box.replaceChildren(b.el);
    } else {
      box.replaceChildren();
    }
    for (const k of keys) {
      const l = k.limits || {};
      if (k.revoked || !(usdToMicros(l.daily_usd) || usdToMicros(l.monthly_usd))) continue;
      blocks.push(budgetBlock('budget-row', { key: k.id }, k.name || k.id, k.name ? k.id : `${k.role} · ${k.tier}`, l,
        t.get(k.id) || 0, m.get(k.id) || 0));
    }
    blocks.sort((a, b) => b.pct - a.pct);
    box.append(...blocks.map((b) => b.el));
    if (!box.children.length) {
      box.append(h('p', { class: 'empty-note' }, 'No key has a daily or monthly USD limit of its own.'));
    }
  }

  function statusBadge(status) {
    const n = Number(status) || 0;
    const cls = n >= 400 ? 'badge-bad' : n >= 200 && n < 300 ? 'badge-ok' : 'badge-muted';
    return h('span', { class: `badge ${cls}` }, n ? String(n) : '…');
  }
  function drawRecent(r) {
    const rate = r.rows ? r.failed / r.rows : 0;
    setFigure('error-rate', r.rows ? fmtPct(rate) : '—', r.rows ? rate.toFixed(6) : 0, { errors: r.failed, rows: r.rows });
    $('error-rate-sub').textContent = r.rows
      ? `${fmtInt(r.failed)} of ${fmtInt(r.rows)} rows with status ≥ 400` : 'no requests in the last 24 h';
    $('recent-note').textContent = `newest ${fmtInt(r.recent.length)} of ${fmtInt(r.rows)} in the last 24 h · times in UTC${r.complete ? '' : ' · the export was cut short'}`;
    const body = $('recent-body');
    if (!r.recent.length) emptyRow(body, 8, 'No requests in the last 24 hours.');
    else {
      body.replaceChildren(...r.recent.map((row) => h('tr', {
        dataset: {
          testid: 'recent-row', requestId: row.request_id, status: row.status, value: row.cost_micros,
          model: row.model, key: row.key_id,
        },
        title: row.request_id,
      },
      h('td', { class: 'nowrap', title: row.created_at }, fmtTime(row.created_at)),
      h('td', null, h('span', { class: 'cell-main' }, keyText(row.key_id))),
      h('td', null, row.model || '—', row.kind && row.kind !== 'chat' ? h('span', { class: 'kind' }, row.kind) : null),
      h('td', null, row.provider || '—'),
      h('td', { class: 'num', dataset: { value: row.status } }, statusBadge(row.status)),
      h('td', { class: 'num' }, `${fmtInt(row.tokens_in)} / ${fmtInt(row.tokens_out)}`),
      h('td', { class: 'num', dataset: { value: row.cost_micros } }, fmtUSD(row.cost_micros)),
      h('td', { class: 'num', dataset: { value: row.latency_ms } }, `${fmtInt(row.latency_ms)} ms`))));
    }
    const list = $('errors');
    if (!r.errors.length) list.replaceChildren(h('li', { class: 'empty-note' }, 'No errors in the last 24 hours.'));
    else {
      list.replaceChildren(...r.errors.map((row) => h('li', {
        dataset: { testid: 'error-row', requestId: row.request_id, status: row.status, code: row.error_code || '' },
      },
      h('div', { class: 'err-top' }, h('span', { class: 'err-code' }, row.error_code || `HTTP ${row.status}`), statusBadge(row.status)),
      h('span', { class: 'err-meta' }, `${row.model || '—'} · ${row.provider || '—'}`),
      h('span', { class: 'err-meta', title: row.created_at }, `${fmtTime(row.created_at)} · ${keyText(row.key_id)}`))));
    }
  }

  // ------------------------------------------------------------------ the chart (SVG)
  // An axis of four equal steps from 0, each a "nice" number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^n).
  const NICE = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
  function niceScale(max, ticks = 4, minStep = 1) {
    if (!(max > 0)) return { max: ticks * minStep, step: minStep };
    const raw = max / ticks;
    const p = 10 ** Math.floor(Math.log10(raw));
    const step = Math.max(minStep, NICE.find((f) => f * p >= raw * (1 - 1e-12)) * p);
    return { max: step * ticks, step };
  }
  function fmtUSDAxis(micros, stepMicros) {
    if (micros === 0) return '$0';
    const stepD = stepMicros / 1e6;
    let d = 0;
    while (d < 6 && Math.abs(Math.round(stepD * 10 ** d) - stepD * 10 ** d) > 1e-6) d++;
    if (stepD < 1) d = Math.max(d, 2);
    return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: d, maximumFractionDigits: d })
      .format(micros / 1e6);
  }

  function drawChart(r) {
    const byDay = new Map((r.data || []).map((g) => [g.group, g]));
    const days = [];
    const first = Math.floor(r.from / DAY_S) * DAY_S;
    const last = Math.floor((Math.max(r.to, r.from + 1) - 1) / DAY_S) * DAY_S;
    for (let d = first; d <= last && days.length < 400; d += DAY_S) {
      const date = new Date(d * 1000);
      const g = byDay.get(isoDay(date)) || {};
      days.push({
        date, key: isoDay(date), cost: g.cost_micros || 0, requests: g.requests || 0,
        tokens: (g.tokens_in || 0) + (g.tokens_out || 0),
      });
    }
    state.lastDays = days;
    renderChart();
  }

  function renderChart() {
    const days = state.lastDays;
    const box = $('chart');
    if (!days) return box.replaceChildren();
    const W = Math.max(480, Math.round(box.clientWidth || 1000));
    const H = 260;
    const m = { top: 26, right: 58, bottom: 30, left: 70 };
    const pw = W - m.left - m.right;
    const ph = H - m.top - m.bottom;
    const maxCost = Math.max(0, ...days.map((d) => d.cost));
    const maxTok = Math.max(0, ...days.map((d) => d.tokens));
    const cs = niceScale(maxCost, 4, 1);
    const ts = niceScale(maxTok, 4, 1);
    const y = (v, sc) => m.top + ph - (v / sc.max) * ph;
    const band = pw / days.length;
    const cx = (i) => m.left + band * (i + 0.5);
    const svg = s('svg', {
      viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
      'aria-label': `Spend and tokens per day, ${days.length} days`,
    });
    // grid and the two y axes
    for (let i = 0; i <= 4; i++) {
      const yy = m.top + ph - (ph * i) / 4;
      svg.append(s('line', { class: 'grid-line', x1: m.left, x2: m.left + pw, y1: yy, y2: yy }));
      svg.append(s('text', { class: 'tick', x: m.left - 8, y: yy + 4, 'text-anchor': 'end' }, fmtUSDAxis((cs.max * i) / 4, cs.step)));
      svg.append(s('text', { class: 'tick', x: m.left + pw + 8, y: yy + 4, 'text-anchor': 'start' }, fmtCompact((ts.max * i) / 4)));
    }
    svg.append(s('line', { class: 'axis-line', x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph }));
    svg.append(s('text', { class: 'axis-title', x: m.left - 8, y: 10, 'text-anchor': 'end' }, 'Spend'));
    svg.append(s('text', { class: 'axis-title', x: m.left + pw + 8, y: 10, 'text-anchor': 'start' }, 'Tokens'));
    // x labels: at most ~10
    const every = Math.max(1, Math.ceil(days.length / 10));
    days.forEach((d, i) => {
      if ((days.length - 1 - i) % every !== 0) return;
      svg.append(s('text', { class: 'tick', x: cx(i), y: m.top + ph + 18, 'text-anchor': 'middle' }, fmtDay(d.date)));
    });
    // spend bars
    const bw = Math.max(2, Math.min(32, band * 0.62));
    const bars = days.map((d, i) => {
      const top = y(d.cost, cs);
      const hgt = Math.max(d.cost > 0 ? 1 : 0, m.top + ph - top);
      const bar = s('rect', { class: 'bar', x: cx(i) - bw / 2, y: m.top + ph - hgt, width: bw, height: hgt, rx: Math.min(3, bw / 4) });
      bar.dataset.day = d.key;
      bar.dataset.value = String(d.cost);
      svg.append(bar);
      return bar;
    });
    // tokens line
    const pts = days.map((d, i) => `${cx(i).toFixed(1)},${y(d.tokens, ts).toFixed(1)}`);
    svg.append(s('polyline', { class: 'tokens-line', points: pts.join(' ') }));
    if (days.length <= 45) {
      days.forEach((d, i) => svg.append(s('circle', { class: 'tokens-dot', cx: cx(i), cy: y(d.tokens, ts), r: 2.5 })));
    }
    if (maxCost === 0 && maxTok === 0) {
      svg.append(s('text', { class: 'empty-note', x: m.left + pw / 2, y: m.top + ph / 2, 'text-anchor': 'middle' }, 'No usage in this range'));
    }
    // hover bands and the tooltip
    const tip = $('chart-tip');
    days.forEach((d, i) => {
      const hb = s('rect', { class: 'hover-band', x: m.left + band * i, y: m.top, width: band, height: ph });
      hb.addEventListener('mouseenter', () => {
        hb.classList.add('hover');
        bars[i].classList.add('hover');
        tip.replaceChildren(
          h('div', { class: 'tip-date' }, fmtDate(d.date)),
          h('div', { class: 'tip-row' }, h('span', null, 'Spend'), h('span', null, fmtUSD(d.cost))),
          h('div', { class: 'tip-row' }, h('span', null, 'Tokens'), h('span', null, fmtInt(d.tokens))),
          h('div', { class: 'tip-row' }, h('span', null, 'Requests'), h('span', null, fmtInt(d.requests))));
        tip.hidden = false;
        const card = box.parentElement.getBoundingClientRect();
        const svgRect = svg.getBoundingClientRect();
        const scale = svgRect.width / W;
        const x = svgRect.left - card.left + cx(i) * scale;
        const left = Math.min(card.width - tip.offsetWidth - 8, Math.max(8, x - tip.offsetWidth / 2));
        tip.style.left = `${left}px`;
        tip.style.top = `${svgRect.top - card.top + m.top * scale - 4}px`;
      });
      hb.addEventListener('mouseleave', () => {
        hb.classList.remove('hover');
        bars[i].classList.remove('hover');
        tip.hidden = true;
      });
      svg.append(hb);
    });
    box.replaceChildren(svg);
  }
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderChart, 150);
  });

  // ------------------------------------------------------------------ downloads
  async function download(format, btn) {
    if (!apiKey) return;
    const label = btn.textContent;
    btn.disabled = true;
    btn.textContent = 'Preparing…';
    $('dash-error').hidden = true;
    try {
      const nowS = Math.floor(Date.now() / 1000);
      const from = rangeFrom(nowS);
      const res = await apiFetch('/admin/v1/usage/export', { format, from, to: nowS + 1, ...orgParams() });
      const blob = await res.blob();
      const tail = blob.size ? await blob.slice(blob.size - 1).text() : '\n';
      if (tail !== '\n') throw new Error('the export was cut short; try again');
      const name = `llmgw-usage-${state.org || 'all'}-${isoDay(new Date(from * 1000))}-to-${isoDay(new Date(nowS * 1000))}.${format}`;
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        signOut('The gateway no longer accepts this key: sign in again.');
        return;
      }
      const el = $('dash-error');
      el.textContent = `The ${format.toUpperCase()} download failed: ${describe(e)}`;
      el.hidden = false;
    } finally {
      btn.disabled = false;
      btn.textContent = label;
    }
  }
  $('dl-csv').addEventListener('click', (ev) => download('csv', ev.currentTarget));
  $('dl-jsonl').addEventListener('click', (ev) => download('jsonl', ev.currentTarget));

  // ------------------------------------------------------------------ reset
  function clearDashboard() {
    clearTotals();
    setFigure('error-rate', '—');
    $('error-rate-sub').textContent = '';
    for (const id of ['error-rate']) {
      const el = $(id);
      delete el.dataset.errors;
      delete el.dataset.rows;
    }
    for (const id of ['total-tokens']) {
      const el = $(id);
      delete el.dataset.tokensIn;
      delete el.dataset.tokensOut;
    }
    for (const id of ['models-body', 'providers-body', 'keys-body', 'recent-body', 'budgets', 'errors', 'chart']) $(id).replaceChildren();
    $('keys-more').hidden = true;
    $('chart-tip').hidden = true;
    $('dash-error').hidden = true;
    $('loading').hidden = true;
    $('range-label').textContent = '';
    $('org-name').textContent = '';
    $('org-select').replaceChildren();
    $('dashboard').dataset.state = 'idle';
  }

  $('login-key').focus();
})();
