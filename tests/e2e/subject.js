// tests/e2e/subject.js — the client side of subject sessions, for the tests: a PKCE pair, an
// app client registered and approved, a session started, a request's signature headers.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');

function pkce() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

// Register an app client with adminKey (an org_admin's) and approve it with rootKey; its id.
async function approvedClient(env, adminKey, rootKey, body) {
  const r = await env.request('POST', '/admin/v1/app-clients', { headers: { authorization: `Bearer ${adminKey}` }, body });
  assert.equal(r.status, 201, r.text);
  const a = await env.request('POST', `/admin/v1/app-clients/${r.json.id}/approve`, { headers: { authorization: `Bearer ${rootKey}` } });
  assert.equal(a.status, 200, a.text);
  return r.json.id;
}

// Mint a share code with the env's API key and exchange it from origin: {token, key}.
async function startSession(env, clientId, origin, subject = 'user-7') {
  const p = pkce();
  const m = await env.request('POST', '/v1/sessions/share-codes', {
    body: { app_client_id: clientId, subject, code_challenge: p.challenge, code_challenge_method: 'S256' },
  });
  assert.equal(m.status, 200, m.text);
  const x = await env.request('POST', '/v1/sessions/exchange', {
    auth: false, headers: { origin }, body: { share_code: m.json.share_code, code_verifier: p.verifier },
  });
  assert.equal(x.status, 200, x.text);
  return { token: x.json.subject_token, key: x.json.hmac_key };
}

// The headers of a signed request; o overrides what is signed (ts, nonce, signBody, signPath,
// key) or sent (origin).
function signedHeaders(s, method, path, rawBody, origin, o = {}) {
  const ts = String(o.ts ?? Math.floor(Date.now() / 1000));
  const nonce = o.nonce ?? crypto.randomBytes(16).toString('base64url');
  const bodyHash = crypto.createHash('sha256').update(o.signBody ?? rawBody).digest('hex');
  const canon = [method, o.signPath ?? path, ts, nonce, bodyHash].join('\n');
  const sig = crypto.createHmac('sha256', Buffer.from(o.key ?? s.key, 'base64url')).update(canon).digest('base64url');
  return {
    authorization: `Bearer ${s.token}`, origin,
    'x-llmgw-timestamp': ts, 'x-llmgw-nonce': nonce, 'x-llmgw-signature': sig,
  };
}

module.exports = { pkce, approvedClient, startSession, signedHeaders };
