#!/usr/bin/env bash
# Run: scripts/interop/run.sh [path/to/rtlab]   (after scripts/test.sh has installed the clients)
#
# Checks every runtime lab from the outside, with clients that were not
# written for rtlab: curl (SSE and HTTP), Python's `websockets` library (an
# independent RFC 6455 implementation) and headless Chromium (the demo page's
# real EventSource and WebSocket; the ticker and chat pages, pages.mjs). One
# fresh server per runtime, and the servers pages.mjs starts and restarts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rtlab="${1:-$here/../../target/debug/rtlab}"
fail() { echo "interop: FAILED: $*" >&2; exit 1; }

for runtime in $("$rtlab" runtimes); do
  echo "== interop: $runtime"
  out="$(mktemp)"
  "$rtlab" serve --runtime "$runtime" --addr 127.0.0.1:0 >"$out" 2>/dev/null &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
  addr="$(awk '/listening on/ {print $3; exit}' "$out")"
  [ -n "$addr" ] || fail "$runtime did not start"

  # curl: publish, then an SSE stream that replays from the start.
  [ "$(curl -s -d 'first' "http://$addr/publish?topic=curl")" = '{"id":1}' ] || fail "curl publish"
  printf 'two\nlines' | curl -s --data-binary @- "http://$addr/publish?topic=curl" >/dev/null
  sse="$(curl -sN --max-time 1 -H 'Last-Event-ID: 0' "http://$addr/sse?topic=curl" || true)"
  epoch="$(curl -s "http://$addr/poll?topic=curl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["epoch"])')"
  expected="id: $epoch-1"$'\ndata: first\n\n'"id: $epoch-2"$'\ndata: two\ndata: lines'
  [[ "$sse" == "$expected"* ]] || fail "curl -N SSE replay, got: $sse"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/publish?topic=bad/topic" -d x)" = 400 ] || fail "400"
  echo "curl: ok"

  python3 "$here/ws_client.py" "$addr"
  # One retry, announced: a cold headless Chromium on a loaded 2-core machine
  # has been seen to miss its deadline once; a second failure fails the run.
  node "$here/browser.mjs" "$addr" || { echo "interop: RETRY browser check on $runtime after a failure (see above)"; node "$here/browser.mjs" "$addr"; }

  # The ticker and chat pages (restart, round trip, long-poll fallback,
  # token expiry) against servers of this runtime that pages.mjs starts.
  node "$here/pages.mjs" "$rtlab" "$runtime" || fail "the ticker and chat pages on $runtime"
  # A restart under a live EventSource: the browser reconnects by itself with
  # the Last-Event-ID of the old epoch, and must be told "reset". The script
  # stops this server (SIGTERM), starts the next one on the same address, and
  # stops that one at the end.
  node "$here/browser_restart.mjs" "$addr" "$pid" "$rtlab" "$runtime"
  wait "$pid" || fail "$runtime did not exit 0 on SIGTERM"
  trap - EXIT
  rm -f "$out"
done
