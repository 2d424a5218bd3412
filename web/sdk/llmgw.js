// llmgw.js — the browser's client for llmgw's subject sessions (an ES module, served by the
// gateway at /sdk/llmgw.js).
//
//   Backend (node >= 20, or any place with WebCrypto):
//     const { codeVerifier, codeChallenge } = await createPkcePair();
//     POST /v1/sessions/share-codes with its API key:
//       {app_client_id, subject, code_challenge: codeChallenge, code_challenge_method: "S256"}
//     and hand the page the share_code and the codeVerifier.
//   Page:
//     const session = await exchangeForSession(shareCode, codeVerifier);
//     const answer = await callCompletion(session, [{role: 'user', content: 'Hi'}],
//                                         {model: 'gpt-4o-mini'});
//     await callCompletion(session, messages, {stream: true, onDelta: (text) => ...});
//
// The session lives in memory only: the subject token in a private field, the HMAC key imported
// into WebCrypto as a non-extractable key right after the exchange (its bytes are then wiped).
// Nothing is written to localStorage, sessionStorage, cookies or IndexedDB; a reload ends it.
// Every request is signed: HMAC-SHA256 over METHOD \n PATH_WITH_QUERY \n TIMESTAMP \n NONCE \n
// hex(SHA-256(BODY)), with a fresh random nonce.

const enc = new TextEncoder();

function toB64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromB64url(s) {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toHex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** An error the gateway answered: status, and its {type, code, message, request_id}. */
export class LlmgwError extends Error {
  constructor(status, error) {
    super((error && error.message) || `llmgw answered ${status}`);
    this.name = 'LlmgwError';
    this.status = status;
    this.code = error && error.code;
    this.type = error && error.type;
    this.requestId = error && error.request_id;
  }
}

async function failure(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  return new LlmgwError(res.status, body && body.error);
}

/** A PKCE S256 pair: the backend keeps nothing; it sends the challenge, the page the verifier. */
export async function createPkcePair() {
  const codeVerifier = toB64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest('SHA-256', enc.encode(codeVerifier));
  return { codeVerifier, codeChallenge: toB64url(new Uint8Array(digest)), codeChallengeMethod: 'S256' };
}

class Session {
  #token;
  #key;

  constructor(baseUrl, token, key, expiresAt) {
    this.#token = token;
    this.#key = key;
    this.baseUrl = baseUrl;
    this.expiresAt = expiresAt; // unix seconds
    Object.freeze(this);
  }

  /** The headers that sign one request (method, path with query, body as sent). */
  async sign(method, pathWithQuery, body) {
    const ts = String(Math.floor(Date.now() / 1000));
    const nonce = toB64url(crypto.getRandomValues(new Uint8Array(16)));
    const bodyHash = toHex(await crypto.subtle.digest('SHA-256', enc.encode(body || '')));
    const canon = [method, pathWithQuery, ts, nonce, bodyHash].join('\n');
    const sig = await crypto.subtle.sign('HMAC', this.#key, enc.encode(canon));
    return {
      authorization: `Bearer ${this.#token}`,
      'x-llmgw-timestamp': ts,
      'x-llmgw-nonce': nonce,
      'x-llmgw-signature': toB64url(new Uint8Array(sig)),
    };
  }

  toJSON() { return { baseUrl: this.baseUrl, expiresAt: this.expiresAt }; } // never the secrets
}

/** Exchange a share code (once) for a session, from this page's origin. */
export async function exchangeForSession(shareCode, codeVerifier, { baseUrl = '' } = {}) {
  const res = await fetch(`${baseUrl}/v1/sessions/exchange`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ share_code: shareCode, code_verifier: codeVerifier }),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res);
  const j = await res.json();
  const raw = fromB64url(j.hmac_key);
  const key = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  raw.fill(0);
  return new Session(baseUrl, j.subject_token, key, j.expires_at);
}

/** Read an SSE body: onEvent(eventName, data) for each event. */
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
      let event = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(event, data.join('\n'));
    }
  }
}

/**
 * A chat completion through the session. options: model, stream, onDelta(text, chunk) for a
 * stream, signal, and any other Chat Completions member (max_tokens, temperature, auto_route…).
 * Not streamed: the chat.completion object. Streamed: {content, usage, chunks}.
 */
export async function callCompletion(session, messages, options = {}) {
  const { stream = false, onDelta, signal, ...rest } = options;
  const path = '/v1/chat/completions';
  const body = JSON.stringify({ ...rest, messages, ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) });
  const headers = { 'content-type': 'application/json', ...(await session.sign('POST', path, body)) };
  const res = await fetch(session.baseUrl + path, { method: 'POST', headers, body, signal, credentials: 'omit', cache: 'no-store' });
  if (!res.ok) throw await failure(res);
  if (!stream) return res.json();
  let content = '';
  let usage = null;
  let chunks = 0;
  let failed = null;
  await readEvents(res, (event, data) => {
    if (data === '[DONE]') return;
    let j;
    try { j = JSON.parse(data); } catch { return; }
    if (event === 'error' || j.error) {
      failed = new LlmgwError(502, j.error || j);
      return;
    }
    chunks++;
    if (j.usage) usage = j.usage;
    const delta = j.choices && j.choices[0] && j.choices[0].delta;
    if (delta && typeof delta.content === 'string' && delta.content) {
      content += delta.content;
      if (onDelta) onDelta(delta.content, j);
    }
  });
  if (failed) throw failed;
  return { content, usage, chunks };
}
