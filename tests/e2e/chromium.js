// tests/e2e/chromium.js — Debian's chromium, headless, driven by playwright-core (make test
// installs both): launch() for the browser suites.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');

const CHROMIUM = '/usr/bin/chromium';

async function launch() {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} (Debian's chromium) is installed by make test`);
  const { chromium } = require('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}

module.exports = { launch };
