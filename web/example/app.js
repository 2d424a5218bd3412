// The example page's script: exchange the share code from the URL's fragment, then stream
// completions through the session. The fragment is cleared at once (it never reaches a server).
import { exchangeForSession, callCompletion } from '/sdk/llmgw.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
history.replaceState(null, '', location.pathname);
let session = null;

async function start() {
  const code = params.get('share_code');
  const verifier = params.get('code_verifier');
  if (!code || !verifier) return;
  try {
    session = await exchangeForSession(code, verifier);
    $('status').textContent = `session ready until ${new Date(session.expiresAt * 1000).toISOString()}`;
    $('send').disabled = false;
  } catch (e) {
    $('status').textContent = `exchange refused: ${e.code || e.message}`;
  }
}

$('ask').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('answer').textContent = '';
  $('status').textContent = 'streaming…';
  try {
    const r = await callCompletion(session, [{ role: 'user', content: $('prompt').value }], {
      model: $('model').value, stream: true, onDelta: (t) => { $('answer').textContent += t; },
    });
    $('status').textContent = `done: ${r.chunks} chunks${r.usage ? `, ${r.usage.total_tokens} tokens` : ''}`;
  } catch (e) {
    $('status').textContent = `refused: ${e.code || e.message}`;
  }
});

start();
