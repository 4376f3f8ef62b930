#!/usr/bin/env bash
# The test command of rtlab: lints, unit + conformance tests, benches in test
# mode, interop checks with independent clients, the Autobahn WebSocket
# testsuite, and the book. Linux only.
# Needs a Rust toolchain with clippy, curl, Python 3 with pip, CPython 2.7
# with pip (python2.7 on PATH or pyenv's), Node.js with npm, and root with
# apt-get unless chromium and redis-server are already installed. Installs
# what is missing: mdbook 0.5.4 (cargo install), chromium and redis-server
# (apt-get), websockets (pip),
# playwright-core (npm ci), autobahntestsuite and its pinned dependencies (pip,
# into the Python 2.7 virtualenv target/autobahn-venv). Run from anywhere:
# scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MDBOOK_VERSION=0.5.4
step() { printf '\n==> %s\n' "$*"; }

# 1. mdbook, pinned: the book's include syntax and output depend on it.
step "mdbook $MDBOOK_VERSION"
MDBOOK=mdbook
if [[ "$(mdbook --version 2>/dev/null || true)" == "mdbook v$MDBOOK_VERSION" ]]; then
    echo "mdbook v$MDBOOK_VERSION already installed"
else
    cargo install --locked mdbook --version "$MDBOOK_VERSION"
    # Where cargo installs, whatever else is on PATH.
    MDBOOK="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin/mdbook"
fi

# 2. Lints on every target (libs, bins, tests, benches); warnings are errors.
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# 2b. A real Redis server for the shared-broker tests (labs/rtlab/tests/
#     cluster.rs): Debian's redis-server, installed when missing. Each test
#     starts its own on a free port without persistence and stops it
#     (rtlab_testkit::RedisServer); nothing is left running.
step "redis-server (for the shared-broker tests)"
if ! command -v redis-server >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    # The package may start a system-wide server; the tests do not use it.
    service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version

# 3. Unit tests, doc tests, the conformance suite (labs/rtlab/tests) and the
#    benchmark harness at a tiny scale against the tokio lab
#    (labs/rtlab/tests/harness.rs: a test of the harness, not a measurement),
#    the thundering herd at a tiny scale (tests/herd.rs) and dead peers in a
#    network namespace on every lab (tests/zombies.rs: needs root, skipped
#    with a message otherwise; removes its namespaces even on failure),
#    and the million's machinery at 20,000 connections over 2 server
#    processes and 2 crowd workers, plus `rtlab cluster` started, stopped and
#    losing a process (labs/rtlab/tests/million.rs; no OS tuning needed).
step "cargo test --workspace"
cargo test --workspace

# 3b. The core's parsers fuzzed briefly (labs/core/fuzz, libFuzzer via
#     cargo-fuzz, pinned; installed when missing): 3 s per target from the
#     committed seeds and what earlier runs found. Fails on any crash.
#     A real campaign: scripts/fuzz.sh 120.
step "fuzz the core: scripts/fuzz.sh 3"
scripts/fuzz.sh 3

# 4. Criterion benches, each benchmark run once as a test: `cargo bench` passes
#    `--bench` to a bench binary, and without it criterion runs in test mode
#    (criterion 0.8 docs: "cargo test --benches"). `cargo test` builds
#    them with the test profile, reusing step 3's artifacts (`cargo bench --
#    --test` would rebuild everything optimized). `--bench '*'` selects only
#    bench targets (`--benches` would rerun the unit tests) but fails when
#    there are none, hence the check.
step "criterion benches in test mode: cargo test --workspace --bench '*'"
metadata="$(cargo metadata --no-deps --format-version 1)"
if grep -q '"kind":\["bench"\]' <<<"$metadata"; then
    cargo test --workspace --bench '*'
else
    echo "no bench targets in the workspace: skipped"
fi

# 5. Every lab from the outside, with clients not written for rtlab: curl,
#    Python's `websockets` (an independent RFC 6455 implementation) and
#    headless Chromium driving the demo page (real EventSource/WebSocket).
#    Installs what is missing: Debian's chromium, websockets from PyPI,
#    playwright-core from npm (pinned in scripts/interop/package-lock.json).
step "interop: curl, python websockets, headless chromium against every runtime"
if ! command -v chromium >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
python3 -c 'import websockets' 2>/dev/null || python3 -m pip install -q --root-user-action=ignore websockets==17.4
(cd scripts/interop && [[ -d node_modules/playwright-core ]] || npm ci --no-audit --no-fund --silent)
cargo build -q -p rtlab
scripts/interop/run.sh target/debug/rtlab
# 5b. The six-connections experiment (book chapter "TLS and HTTP/2"): the
#     tokio lab over TLS, seven EventSources in headless Chromium; the
#     seventh must stall over HTTP/1.1 and all seven share one connection
#     over HTTP/2. Bounded (a 120 s timeout per run); screenshots in
#     target/seven/ (--record writes the book's).
scripts/interop/seven.sh target/debug/rtlab
# 5c. Reconnection in a real browser (book chapter "Reconnection and the
#     thundering herd"): every lab, a proxy cuts a bare EventSource, a bare
#     WebSocket and a hand-reconnecting one; the EventSource must come back
#     and resume with Last-Event-ID, the bare WebSocket must not. About 10 s
#     per lab (--record writes the committed result).
scripts/interop/reconnect.sh target/debug/rtlab

# 6. The Autobahn|Testsuite (wstest, fuzzing client), cases 1.* to 10.*, against
#    every lab's /echo. wstest runs on Python 2.7 only: the first run makes the
#    virtualenv target/autobahn-venv from scripts/autobahn/requirements.txt
#    (every package pinned), later runs reuse it. Fails unless every case of
#    every lab is OK, NON-STRICT or INFORMATIONAL. Reports: target/autobahn/
#    (per lab, and the table summary.md / summary.json). Writes nothing
#    outside target/: the book's committed result, bench-results/autobahn/,
#    is recorded only on request (scripts/autobahn/run.sh --record).
step "autobahn: wstest fuzzingclient, cases 1.* to 10.*, against every runtime"
scripts/autobahn/run.sh target/debug/rtlab

# 7. The book. mdbook 0.5 exits 0 on an unreadable include (it only logs an
#    error) and renders a missing anchor as an empty listing without a word,
#    so both are checked here. First, no typed run numbers in its prose:
#    every number a run measured comes from book/src/generated/ (rtlab
#    report) through an include; any other digit is on the commented
#    allow-list book/digits-allowed.txt (scripts/check-digits.py, which tests
#    itself first).
step "mdbook build book"
python3 scripts/check-digits.py --self-test
python3 scripts/check-digits.py
missing=0
while IFS= read -r include; do
    file="${include%:*}" anchor="${include##*:}"
    if ! grep -Eq "ANCHOR: ${anchor}[[:space:]]*\$" "book/src/$file" 2>/dev/null; then
        echo "error: {{#include $include}}: no 'ANCHOR: $anchor' in book/src/$file"
        missing=1
    fi
done < <(grep -ohE '\{\{#include [^}:]+:[A-Za-z0-9_-]+\}\}' book/src/*.md |
    sed -E 's/^\{\{#include (.*)\}\}$/\1/' | sort -u)
output="$("$MDBOOK" build book 2>&1)" || { echo "$output"; exit 1; }
echo "$output"
if grep -Eq 'ERROR|WARN' <<<"$output"; then missing=1; fi
[[ $missing == 0 ]] || { echo "error: the book has broken includes (see above)"; exit 1; }

step "all checks passed"
