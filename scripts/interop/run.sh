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
. "$here/lib.sh"
rtlab="${1:-$here/../../target/debug/rtlab}"
fail() { echo "interop: FAILED: $*" >&2; exit 1; }

for runtime in $("$rtlab" runtimes); do
  echo "== interop: $runtime"
  start_server "interop ($runtime)" "$rtlab" --runtime "$runtime"

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
  rm -f "$server_log"
done

# The browser's request heads (headers.mjs, the capture `rtlab bench polling
# --browser-headers` replays): checked here so that the tool keeps working,
# into a scratch file; the committed capture is bench-results/polling/.
echo "== interop: chromium's request heads (headers.mjs)"
heads="$(mktemp)"
timeout 120 node "$here/headers.mjs" "$rtlab" "$heads" || fail "headers.mjs"
python3 - "$heads" <<'PY' || fail "headers.mjs did not capture a poll, an SSE and a WebSocket head"
import json, sys
doc = json.load(open(sys.argv[1]))
kinds = doc["kinds"]
for kind in ("poll", "sse", "ws"):
    head = kinds[kind]
    assert head["request_line"].startswith("GET /"), kind
    assert any(h.lower().startswith("user-agent:") for h in head["headers"]), kind
print("heads captured from Chromium", doc["browser"] + ":", ", ".join(sorted(kinds)))
PY
rm -f "$heads"
