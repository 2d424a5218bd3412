// The fixed request mix of the instruction-count check (bench/icount.sh): ROUNDS times, one
// after another on one keep-alive connection, each kind of request the gateway serves most.
'use strict';
const [, , base, key, rounds] = process.argv;
const MSG = [{ role: 'user', content: 'Say hello in five words.' }];
const MIX = [
  ['/v1/chat/completions', { model: 'gpt-4o', messages: MSG }],
  ['/v1/chat/completions', { model: 'gpt-4o', stream: true, stream_options: { include_usage: true }, messages: MSG }],
  ['/v1/chat/completions', { auto_route: true, messages: MSG }],
  ['/api/v1/llm/chat', { model: 'claude-sonnet-4-6', max_tokens: 100, messages: MSG }],
  ['/v1/chat/completions', { model: 'gemini-2.5-flash', stream: true, messages: MSG }],
];
(async () => {
  for (let r = 0; r < Number(rounds); r++) {
    for (const [path, body] of MIX) {
      const res = await fetch(base + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      if (res.status !== 200) { console.error(`${path}: ${res.status} ${text}`); process.exit(1); }
    }
  }
  console.log(MIX.length * Number(rounds));
})().catch((e) => { console.error(e.message); process.exit(1); });
