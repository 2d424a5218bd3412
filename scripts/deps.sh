#!/usr/bin/env bash
# Install the Debian packages llmgw needs, only those missing. Usage: deps.sh build|test
set -euo pipefail
want=(build-essential pkg-config libevent-dev libcurl4-openssl-dev libjansson-dev libyajl-dev
      libssl-dev libsqlite3-dev libyaml-dev libpq-dev libseccomp-dev libmimalloc-dev ca-certificates)
if [ "${1:-build}" = test ]; then
    # chromium: the browser test (tests/e2e/browser.test.js, headless through playwright-core)
    want+=(libcmocka-dev nodejs npm curl clang libclang-rt-14-dev sqlite3 postgresql valgrind chromium)
    # the libraries libcurl.pc names for `pkg-config --static` (tests/e2e/install.test.js links
    # examples/embed with libllmgw.a and `pkg-config --static --libs llmgw`)
    want+=(libnghttp2-dev librtmp-dev libssh2-1-dev libpsl-dev libkrb5-dev libldap-dev libzstd-dev)
fi
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian's package; accept any node >= 18 with npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=()
    for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || tmp+=("$p"); done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
