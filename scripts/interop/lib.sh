# Sourced by the interop scripts (run.sh, reconnect.sh, seven.sh): one way
# to start a server on a free port and read its address. Not run by itself.
#
#   start_server NAME RTLAB SERVE-ARGS...   starts `RTLAB serve --addr 127.0.0.1:0 SERVE-ARGS...`
#                                           in the background; sets $pid and $addr, or exits 1
#                                           naming NAME if the server did not say `listening on`
#                                           within five seconds. A trap kills it if the script
#                                           exits first.
#   stop_server                            SIGTERM, then wait; returns the server's exit status.

start_server() {
  local name="$1" rtlab="$2"
  shift 2
  server_log="$(mktemp)"
  "$rtlab" serve --addr 127.0.0.1:0 "$@" >"$server_log" 2>/dev/null &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do grep -q listening "$server_log" && break; sleep 0.1; done
  addr="$(awk '/listening on/ {print $3; exit}' "$server_log")"
  [ -n "$addr" ] || { echo "$name: the server did not start" >&2; exit 1; }
}

stop_server() {
  local status=0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || status=$?
  trap - EXIT
  rm -f "$server_log"
  return "$status"
}
