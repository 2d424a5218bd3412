// tests/e2e/matrix.js — the compatibility suites' client × provider × feature table.
//
//   const m = compatMatrix(['openai', 'anthropic', ...]);
//   await m.cell('openai/chat', 'openai', async () => { ... }, /lacks-it message/ or null);
//   m.print('client / feature');   // at the end: one "| feature | cell | ... |" line per row
//
// A cell passes when fn resolves; where the provider lacks the feature (lacks given) it must
// instead reject with a 400 whose message matches lacks — that is the expected answer.
'use strict';

const assert = require('node:assert/strict');

function compatMatrix(providers) {
  const cells = [];
  async function cell(feature, provider, fn, lacks) {
    try {
      await fn();
      assert.ok(!lacks, `${feature} on ${provider} should have been refused`);
      cells.push({ feature, provider, result: 'pass' });
    } catch (e) {
      if (lacks && e.status === 400 && lacks.test(e.message)) {
        cells.push({ feature, provider, result: '400 (lacks it)' });
        return;
      }
      cells.push({ feature, provider, result: 'FAIL' });
      throw e;
    }
  }
  function print(title) {
    console.log(`# ${title} | ${providers.join(' | ')} |`);
    for (const f of [...new Set(cells.map((c) => c.feature))]) {
      const row = providers.map((p) => (cells.find((c) => c.feature === f && c.provider === p) || {}).result || '—');
      console.log(`# | ${f} | ${row.join(' | ')} |`);
    }
  }
  return { cell, print };
}

module.exports = { compatMatrix };
