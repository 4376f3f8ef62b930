#!/usr/bin/env bash
# Run: scripts/interop/seven.sh [path/to/rtlab] [--record]   (after scripts/test.sh has installed chromium and playwright-core)
#
# The six-connections experiment (the book's chapter "TLS and HTTP/2"):
# the tokio lab over TLS, once offering HTTP/1.1 only and once HTTP/2
# (ALPN), and headless Chromium opening seven EventSources to it
# (scripts/interop/seven.mjs). Fails unless the seventh stalls over
# HTTP/1.1 and all seven share one connection over HTTP/2. Screenshots
# and the result go to target/seven/; with --record, also to the book
# (book/src/images/seven-h1.png, seven-h2.png) and the results
# (bench-results/browser-seven.json, read by `rtlab report`).
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
out="$root/target/seven"
mkdir -p "$out"
"$rtlab" cert --cert "$out/cert.pem" --key "$out/key.pem"
results=()
for mode in h1 h2; do
  flags=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
  [[ $mode == h1 ]] && flags+=(--no-http2)
  start_server seven "$rtlab" --runtime tokio "${flags[@]}"
  line="$(timeout 120 node "$here/seven.mjs" "$addr" "$mode" "$out/seven-$mode.png")"
  echo "seven ($mode): $line"
  results+=("$line")
  stop_server || true
done
json="{\"experiment\":\"seven EventSources to one origin, headless Chromium, tokio lab over TLS\",\"chromium\":\"$(chromium --version 2>/dev/null | head -1)\",\"commit\":\"$(git -C "$root" rev-parse HEAD)\",\"runs\":[${results[0]},${results[1]}]}"
echo "$json" >"$out/browser-seven.json"
if [[ $record == 1 ]]; then
  mkdir -p "$root/book/src/images"
  cp "$out/seven-h1.png" "$out/seven-h2.png" "$root/book/src/images/"
  cp "$out/browser-seven.json" "$root/bench-results/browser-seven.json"
  echo "seven: recorded in book/src/images/ and bench-results/browser-seven.json"
fi
echo "seven: ok"
