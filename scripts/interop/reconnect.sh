#!/usr/bin/env bash
# Run: scripts/interop/reconnect.sh [path/to/rtlab] [--record]   (after scripts/test.sh has installed chromium and playwright-core)
#
# The reconnection claim in a real browser (the book's chapter "Reconnection
# and the thundering herd"): for every runtime lab, headless Chromium holds a
# bare EventSource, a bare WebSocket and a WebSocket with hand-written
# reconnection through a proxy that cuts every connection at once
# (scripts/interop/reconnect.mjs). Fails unless the EventSource comes back by
# itself and resumes with Last-Event-ID, the bare WebSocket stays closed,
# and the hand-written one resumes. The result goes to
# target/reconnect/browser-reconnect.json; with --record, also to
# bench-results/lifecycle/browser-reconnect.json (read by `rtlab report`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
root="$here/../.."
rtlab="$root/target/debug/rtlab"
record=0
for arg in "$@"; do
  case "$arg" in
    --record) record=1 ;;
    *) rtlab="$arg" ;;
  esac
done
out="$root/target/reconnect"
mkdir -p "$out"
results=()
for runtime in $("$rtlab" runtimes); do
  start_server "reconnect ($runtime)" "$rtlab" --runtime "$runtime"
  line="$(timeout 120 node "$here/reconnect.mjs" "$addr" "$runtime")"
  echo "reconnect ($runtime): $line"
  results+=("$line")
  stop_server || { echo "reconnect: $runtime did not exit 0 on SIGTERM" >&2; exit 1; }
done
dirty=""
git -C "$root" diff --quiet HEAD 2>/dev/null || dirty="-dirty"
runs="$(IFS=,; echo "${results[*]}")"
json="{\"experiment\":\"a bare EventSource, a bare WebSocket and a WebSocket with hand-written reconnection in headless Chromium, every connection cut at once by a proxy, two messages published while cut off\",\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git -C "$root" rev-parse HEAD)$dirty\",\"kernel\":\"$(uname -r)\",\"runs\":[$runs]}"
echo "$json" >"$out/browser-reconnect.json"
if [[ $record == 1 ]]; then
  cp "$out/browser-reconnect.json" "$root/bench-results/lifecycle/browser-reconnect.json"
fi
