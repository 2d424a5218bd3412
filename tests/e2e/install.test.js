// make install and embedding (issue 11): install into a temporary prefix (and with DESTDIR),
// check what landed there (soname, symlinks, llmgw.pc, the man page against --help, the
// exported symbols), that the library's objects call nothing that exits, traps signals, reads
// the environment or writes to stderr, then build examples/embed against the installed
// library with pkg-config (shared, and libllmgw.a with --static), run both against the fake
// provider and check the streamed answer, usage, cost and the usage rows; and the shared one
// under valgrind: no leak after create/use/destroy.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { ROOT, startFake, FAKE_KEYS, FAKE_USAGE, expectedCostMicros } = require('./harness');

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 60000, maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) => {
      if (err) { err.message += `\nstdout: ${stdout}\nstderr: ${stderr}`; reject(err); } else resolve({ stdout, stderr });
    });
  });
}

// What a library object must not call: the host owns the process (exit, signals, environment,
// stderr). abort and __assert_fail (assert) too: a bug in the library fails the call through
// GW_BUG (logged, an error returned), it does not take the host down.
const FORBIDDEN = new Set([
  'exit', '_exit', '_Exit', 'quick_exit', 'atexit', 'at_quick_exit', 'abort', '__assert_fail',
  'signal', 'sigaction', 'sigprocmask', 'sigset', 'sigvec', 'bsd_signal', 'sysv_signal', 'raise', 'kill',
  'getenv', 'secure_getenv', 'setenv', 'putenv', 'unsetenv',
  'stderr', 'stdout', 'perror', 'printf', 'puts', 'putchar', 'vprintf', 'warn', 'warnx', 'err', 'errx',
  'error', '__printf_chk', '__vprintf_chk',
]);

test('make install, the installed library, examples/embed against it', async () => {
  const t0 = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmgw-install-'));
  const prefix = path.join(dir, 'usr');
  const lib = path.join(prefix, 'lib');
  const fake = await startFake();
  try {
    // install must not rebuild what `make all` built (same flags): when all is up to date,
    // the library's files keep their mtime
    const upToDate = await run('make', ['-q', 'all']).then(() => true, () => false);
    const mtime = () => fs.statSync(path.join(ROOT, 'build', 'libllmgw.a')).mtimeMs;
    const before = upToDate ? mtime() : 0;
    await run('make', ['--no-print-directory', '-s', 'install', `PREFIX=${prefix}`]);
    if (upToDate) assert.equal(mtime(), before, 'make install rebuilt the library');

    for (const f of ['bin/llmgw', 'include/llmgw.h', 'lib/libllmgw.a', 'lib/libllmgw.so.0.1.0',
      'lib/pkgconfig/llmgw.pc', 'share/man/man1/llmgw.1', 'share/llmgw/models.yaml', 'share/llmgw/routing.yaml']) {
      assert.ok(fs.statSync(path.join(prefix, f)).isFile(), f);
    }
    assert.equal(fs.readlinkSync(path.join(lib, 'libllmgw.so.0')), 'libllmgw.so.0.1.0');
    assert.equal(fs.readlinkSync(path.join(lib, 'libllmgw.so')), 'libllmgw.so.0');
    const { stdout: dyn } = await run('readelf', ['-d', path.join(lib, 'libllmgw.so.0.1.0')]);
    assert.match(dyn, /\(SONAME\)\s+Library soname: \[libllmgw\.so\.0\]/);

    // DESTDIR: the files under it, the paths in llmgw.pc without it
    const dest = path.join(dir, 'dest');
    await run('make', ['--no-print-directory', '-s', 'install', 'PREFIX=/opt/llmgw', `DESTDIR=${dest}`]);
    const pcd = fs.readFileSync(path.join(dest, 'opt/llmgw/lib/pkgconfig/llmgw.pc'), 'utf8');
    assert.match(pcd, /^libdir=\/opt\/llmgw\/lib$/m);
    assert.ok(!pcd.includes(dest));
    assert.ok(fs.existsSync(path.join(dest, 'opt/llmgw/lib/libllmgw.so')));

    // pkg-config: every required module exists (pkg-config fails otherwise), the flags
    const env = { ...process.env, PKG_CONFIG_PATH: path.join(lib, 'pkgconfig') };
    const pc = (...a) => run('pkg-config', a, { env }).then(({ stdout }) => stdout.trim());
    assert.equal(await pc('--modversion', 'llmgw'), '0.1.0');
    assert.match(await pc('--cflags', 'llmgw'), new RegExp(`-I${prefix}/include`));
    assert.match(await pc('--libs', 'llmgw'), new RegExp(`^-L${lib} -lllmgw$`));
    const stat = await pc('--static', '--libs', 'llmgw');
    for (const l of ['-lpthread', '-lm', '-lpq', '-levent', '-levent_pthreads', '-lcurl', '-lsqlite3', '-lseccomp']) {
      assert.ok(stat.split(/\s+/).includes(l), `${l} in ${stat}`);
    }
    assert.equal(await pc('--variable=catalogdir', 'llmgw'), path.join(prefix, 'share/llmgw'));

    // exported: exactly the LLMGW_API functions of llmgw.h
    const header = fs.readFileSync(path.join(prefix, 'include/llmgw.h'), 'utf8');
    const api = [...header.matchAll(/^LLMGW_API[^(]*?\b(llmgw_\w+)\(/gm)].map((m) => m[1]).sort();
    assert.ok(api.length >= 15, api.join(' '));
    const { stdout: nmd } = await run('nm', ['-D', '--defined-only', path.join(lib, 'libllmgw.so')]);
    const exported = nmd.trim().split('\n').map((l) => l.trim().split(/\s+/).pop()).sort();
    assert.deepEqual(exported, api);

    // the library's own objects (the CLI is not part of it): their undefined symbols
    const { stdout: nmu } = await run('nm', ['-u', '-A', path.join(lib, 'libllmgw.a')]);
    const bad = nmu.split('\n').filter((l) => l.trim())
      .map((l) => ({ obj: l.split(':')[1], sym: l.trim().split(/\s+/).pop().replace(/@.*/, '') }))
      .filter((x) => FORBIDDEN.has(x.sym));
    assert.deepEqual(bad, [], 'library objects calling what the host owns');
    assert.ok(nmu.includes('embed.o'), 'nm listed the archive members');

    // the man page: renders without warnings, names every command and option of --help
    const bin = path.join(prefix, 'bin/llmgw');
    const man = path.join(prefix, 'share/man/man1/llmgw.1');
    const { stderr: manWarn } = await run('man', ['--warnings', '-l', man], { env: { ...process.env, MANWIDTH: '100' } });
    assert.equal(manWarn.trim(), '');
    const manText = fs.readFileSync(man, 'utf8').replace(/\\-/g, '-').replace(/\\f[BIRP]/g, '');
    const { stdout: help } = await run(bin, ['--help']);
    const cmds = [...help.matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]);
    assert.ok(cmds.length >= 9);
    const topics = new Set(cmds);
    for (const sub of ['keys create', 'keys update', 'keys list', 'keys rotate', 'usage export', 'admin bootstrap']) topics.add(sub);
    for (const c of topics) {
      assert.ok(manText.includes(c), `the man page names ${c}`);
      const r = await run(bin, [...c.split(' '), '--help']).catch((e) => e);
      const text = `${r.stdout || ''}${r.stderr || ''}`;
      for (const opt of new Set([...text.matchAll(/--[a-z][a-z-]+/g)].map((m) => m[0]))) {
        if (opt === '--help') continue;
        assert.ok(manText.includes(opt), `the man page has ${c}'s ${opt}`);
      }
    }

    // examples/embed against the installed library, with its Makefile (pkg-config)
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    await run('make', ['--no-print-directory', '-s', '-C', 'examples/embed', `O=${out}`, 'CFLAGS=-O2 -g -Werror'], { env });
    // the README's complete example compiles against the installed library as it is
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const hello = /## Embedding\n[\s\S]*?```c\n([\s\S]*?)```/.exec(readme)[1];
    fs.writeFileSync(path.join(out, 'hello.c'), hello);
    const helloFlags = (await pc('--cflags', '--libs', 'llmgw')).split(/\s+/);
    await run('cc', ['-std=c17', '-Wall', '-Wextra', '-Werror', '-o', path.join(out, 'hello'), path.join(out, 'hello.c'), ...helloFlags]);
    const { stdout: ldd } = await run('ldd', [path.join(out, 'embed')], { env: { ...process.env, LD_LIBRARY_PATH: lib } });
    assert.match(ldd, new RegExp(`libllmgw\\.so\\.0 => ${lib}/libllmgw\\.so\\.0`), ldd);
    const { stdout: lddS } = await run('ldd', [path.join(out, 'embed-static')]);
    assert.ok(!lddS.includes('libllmgw'), lddS);

    // a store with a key, made by the installed binary
    const dbFile = path.join(dir, 'gw.db');
    const db = `sqlite:${dbFile}`;
    await run(bin, ['migrate', '--db', db]);
    await run(bin, ['orgs', 'create', 'acme', '--db', db]);
    const key = (await run(bin, ['keys', 'create', '--org', 'acme', '--name', 'embed', '--db', db])).stdout.trim().split('\n').pop();

    const exEnv = {
      PATH: process.env.PATH,
      LD_LIBRARY_PATH: lib,
      OPENAI_API_KEY: FAKE_KEYS.openai,
      OPENAI_BASE_URL: `${fake.url}/openai`,
      LLMGW_CATALOG_DIR: path.join(prefix, 'share/llmgw'),
    };
    const cost = expectedCostMicros('gpt-4o', FAKE_USAGE['gpt-4o']);
    const check = ({ stdout, stderr }, prompt) => {
      assert.equal(stderr, '', 'nothing on stderr (no warning logged)');
      const lines = stdout.trim().split('\n');
      assert.equal(lines[0], `echo: ${prompt}`);
      assert.equal(lines[1], `usage: prompt_tokens=120 completion_tokens=30 cost_usd=${(cost / 1e6).toFixed(6)}`);
    };
    check(await run(path.join(out, 'embed'), [db, key, 'shared lib'], { env: exEnv }), 'shared lib');
    check(await run(path.join(out, 'embed-static'), [db, key, 'static lib'], { env: { ...exEnv, LD_LIBRARY_PATH: '' } }), 'static lib');

    // valgrind: the release build of the example, create/use/destroy, no leak
    check(await run('valgrind', ['-q', '--leak-check=full', '--errors-for-leak-kinds=definite,indirect',
      '--error-exitcode=3', path.join(out, 'embed'), db, key, 'under valgrind'], { env: exEnv }), 'under valgrind');

    // three streamed calls, three settled usage rows at the pipeline's cost, the key's
    const { stdout: rowsJson } = await run('sqlite3', ['-json', dbFile,
      'select u.status, u.state, u.tokens_in, u.tokens_out, u.cost_micros, u.stream from usage u']);
    const rows = JSON.parse(rowsJson);
    assert.equal(rows.length, 3, rowsJson);
    for (const r of rows) {
      assert.equal(r.status, 200);
      assert.equal(r.state, 'settled');
      assert.equal(r.tokens_in, 120);
      assert.equal(r.tokens_out, 30);
      assert.equal(r.cost_micros, cost);
      assert.equal(r.stream, 1);
    }
    // the fake got three streamed calls with the provider key
    const seen = await fake.requests('openai');
    assert.equal(seen.length, 3);
  } finally {
    await fake.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    console.log(`# install test: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
});
