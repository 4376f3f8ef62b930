#!/usr/bin/env bash
# Run: scripts/autobahn/run.sh [--record] [path/to/rtlab [runtime...]]
#
# The Autobahn|Testsuite against every runtime lab (or the runtimes named):
# one fresh `rtlab serve --runtime R --addr 127.0.0.1:0` each, and
# `wstest -m fuzzingclient` against its WebSocket echo endpoint /echo with
# cases 1.* to 10.* (framing, pings and pongs, reserved bits, opcodes,
# fragmentation, UTF-8, close handling, limits and performance,
# auto-fragmentation: 301 cases). Not run: 12.* and 13.*, permessage-deflate,
# which the labs do not negotiate. Fails unless every lab ran all 301 cases,
# every case's behavior and close behavior is OK, NON-STRICT or INFORMATIONAL,
# and every server exited 0 on SIGTERM.
#
# wstest runs on CPython 2.7 only. It lives in a virtualenv,
# target/autobahn-venv, made once with Python 2.7 and the pinned packages of
# scripts/autobahn/requirements.txt (from PyPI); kept between runs, made anew
# when that file changes. Python 2.7: $AUTOBAHN_PYTHON, else python2.7 on
# PATH, else pyenv's (any 2.7.x it has installed).
#
# Reports, kept: target/autobahn/<runtime>/ (index.html and index.json, one
# .html and .json per case, spec.json, wstest.log, server.log); the table:
# target/autobahn/summary.md and summary.json (scripts/autobahn/summary.py).
#
# --record (or AUTOBAHN_RECORD=1): also record the result for the book, in
# bench-results/autobahn/ (committed; the chapter "Bad input and hostile
# clients" includes its summary.md): summary.md and summary.json as above,
# each with the run's provenance added (date, machine, kernel, commit,
# rustc, the rtlab binary, Python and the testsuite's version). Only a run
# of every lab (no runtime named) that passed is recorded; otherwise nothing
# in bench-results/ is touched. Without --record, nothing outside target/ is
# written (scripts/test.sh runs it so).
#
# Environment: AUTOBAHN_PYTHON (the python2.7 to use), AUTOBAHN_TIMEOUT
# (seconds one lab may take, default 180), AUTOBAHN_VENV (default
# target/autobahn-venv), AUTOBAHN_RECORD (1: as --record).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
record="${AUTOBAHN_RECORD:-0}"
if [[ "${1:-}" == --record ]]; then record=1; shift; fi
[[ "$record" == 0 || "$record" == 1 ]] || { echo "autobahn: error: AUTOBAHN_RECORD must be 0 or 1, not '$record'" >&2; exit 1; }
rtlab="${1:-$root/target/debug/rtlab}"
if [[ $# -gt 0 ]]; then shift; fi
[[ "$rtlab" != */* ]] || rtlab="$(cd "$(dirname "$rtlab")" && pwd)/$(basename "$rtlab")"

VIRTUALENV_VERSION=16.7.12 # the last virtualenv that runs on Python 2.7 with no dependencies
EXPECTED_CASES=301          # cases 1.* to 10.* in autobahntestsuite 25.10.1
timeout_s="${AUTOBAHN_TIMEOUT:-180}"
venv="${AUTOBAHN_VENV:-$root/target/autobahn-venv}"
out="$root/target/autobahn"
recorded="$root/bench-results/autobahn"
requirements="$here/requirements.txt"

die() { echo "autobahn: error: $*" >&2; exit 1; }
# pip on Python 2.7 warns of its end of life at every call; pip 20.3 (the
# virtualenv's) heeds this, older ones don't.
export PIP_NO_PYTHON_VERSION_WARNING=1
[[ -x "$rtlab" ]] || die "no rtlab binary at $rtlab (cargo build -p rtlab)"
command -v python3 >/dev/null || die "python3 is needed for the summary"
command -v timeout >/dev/null || die "timeout (coreutils) is needed"

# --- Python 2.7 -------------------------------------------------------------
is_python27() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1; }
find_python27() {
    if [[ -n "${AUTOBAHN_PYTHON:-}" ]]; then
        is_python27 "$AUTOBAHN_PYTHON" || die "AUTOBAHN_PYTHON=$AUTOBAHN_PYTHON is not a working Python 2.7"
        echo "$AUTOBAHN_PYTHON"
        return
    fi
    # A pyenv shim named python2.7 is on PATH even when 2.7 is not the
    # selected version, and then fails: every candidate is tried by running it.
    local candidates=(python2.7 python2) pyenv_root v
    pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    for v in "$pyenv_root"/versions/2.7*/bin/python2.7; do candidates+=("$v"); done
    for v in "${candidates[@]}"; do
        if is_python27 "$v"; then echo "$v"; return; fi
    done
    die "Autobahn's wstest needs CPython 2.7, and none was found: not python2.7 or python2 on PATH, not in $pyenv_root/versions/2.7*. Install one (pyenv install 2.7.18) or set AUTOBAHN_PYTHON=/path/to/python2.7"
}

# --- The virtualenv ---------------------------------------------------------
# A stamp written last, after a complete install, holds what the virtualenv was
# made from; anything else (no stamp, other pins, another interpreter) rebuilds.
ensure_venv() {
    local python stamp want boot log
    python="$(find_python27)"
    stamp="$venv/.rtlab-autobahn-stamp"
    want="$(
        "$python" -c 'import sys; print("python %s %s" % (sys.executable, sys.version.split()[0]))'
        echo "virtualenv $VIRTUALENV_VERSION"
        cat "$requirements"
    )"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/wstest" ]]; then
        echo "autobahn: virtualenv up to date ($venv)"
        return
    fi
    echo "autobahn: making the virtualenv $venv with $python (pinned: $requirements)"
    SECONDS=0
    rm -rf "$venv"
    "$python" -m pip --version >/dev/null 2>&1 ||
        die "$python has no pip, needed once to fetch virtualenv $VIRTUALENV_VERSION ($python -m ensurepip installs one)"
    boot="$(mktemp -d)"
    # virtualenv goes into a throwaway directory, not into the interpreter.
    # (Its output is shown only on failure: an old pip warns of Python 2.7's
    # end of life at every call, with no way to silence it.)
    if ! log="$("$python" -m pip install -q --disable-pip-version-check \
        --no-deps --target "$boot" "virtualenv==$VIRTUALENV_VERSION" 2>&1)"; then
        echo "$log" >&2
        rm -rf "$boot"
        die "pip could not install virtualenv==$VIRTUALENV_VERSION (its error is above)"
    fi
    # --no-download: pip, setuptools and wheel from virtualenv's own bundle.
    PYTHONPATH="$boot" "$python" -m virtualenv -q --no-download "$venv" ||
        { rm -rf "$boot"; die "virtualenv $VIRTUALENV_VERSION could not make $venv (above)"; }
    rm -rf "$boot"
    # --no-deps: exactly the pinned list, nothing resolved on the way;
    # --no-build-isolation: sdists build with the virtualenv's own setuptools
    # and wheel, not with whatever build tools PyPI has newest.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        --no-deps --no-build-isolation -r "$requirements" ||
        die "pip install -r $requirements failed (its error is above)"
    if ! log="$("$venv/bin/python" -m pip check --disable-pip-version-check 2>&1)"; then
        echo "$log" >&2
        die "the pinned packages do not satisfy each other (pip check, above): fix $requirements"
    fi
    printf '%s\n' "$want" >"$stamp"
    echo "autobahn: virtualenv made in $SECONDS s"
}

# --- One lab ----------------------------------------------------------------
server_pid=
stop_status=
stop_server() { # SIGTERM, up to 10 s to exit; sets stop_status (not in a subshell: it waits)
    local rc=0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        stop_status="still running 10 s after SIGTERM (killed)"
    else
        wait "$server_pid" || rc=$?
        stop_status=$rc
    fi
    server_pid=
}
cleanup() { [[ -z "$server_pid" ]] || kill -KILL "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

failures=()
run_lab() {
    local lab=$1 dir="$out/$1" addr started rc status wall
    mkdir -p "$dir"
    started="$(date +%s.%N)"
    : >"$dir/server.out" # before the server opens it: polled right away
    "$rtlab" serve --runtime "$lab" --addr 127.0.0.1:0 >"$dir/server.out" 2>"$dir/server.log" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q '^listening on ' "$dir/server.out" && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    addr="$(awk '/^listening on / {print $3; exit}' "$dir/server.out")"
    if [[ -z "$addr" ]]; then
        failures+=("$lab: the server did not start (see $dir/server.log)")
        tail -n 20 "$dir/server.log" >&2 || true
        stop_server
        return
    fi
    cat >"$dir/spec.json" <<EOF
{
  "outdir": "$dir",
  "servers": [{"agent": "$lab", "url": "ws://$addr/echo"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
    rc=0
    (cd "$dir" && timeout -k 10 "$timeout_s" "$venv/bin/wstest" -m fuzzingclient -s spec.json) \
        >"$dir/wstest.log" 2>&1 || rc=$?
    if [[ $rc == 124 || $rc == 137 ]]; then
        failures+=("$lab: wstest did not finish in ${timeout_s} s (AUTOBAHN_TIMEOUT); last case: $(grep 'Running test case' "$dir/wstest.log" | tail -n 1)")
    elif [[ $rc != 0 ]]; then
        failures+=("$lab: wstest exited $rc (see $dir/wstest.log)")
        tail -n 20 "$dir/wstest.log" >&2
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        failures+=("$lab: the server exited during the run (see $dir/server.log)")
    fi
    stop_server
    status=$stop_status
    [[ "$status" == 0 ]] || failures+=("$lab: on SIGTERM the server: exit status $status (see $dir/server.log)")
    wall="$(echo "$started $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')"
    echo "$wall" >"$dir/wall_seconds"
    echo "autobahn: $lab: $(grep -c 'Running test case' "$dir/wstest.log" || true) cases run in $wall s (wstest exit $rc, server exit $status); reports in $dir/"
}

# --- All of it --------------------------------------------------------------
# The commit, for the record: taken before the run, since the work tree may
# change while it runs (an earlier record, not yet committed, does not count).
commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [[ "$commit" != unknown && -n "$(git -C "$root" status --porcelain --untracked-files=no -- . ':!bench-results/autobahn' 2>/dev/null)" ]]; then
    commit+=" with uncommitted changes"
fi
ensure_venv
suite="Autobahn|Testsuite $("$venv/bin/python" -c 'import autobahntestsuite; print(autobahntestsuite.__version__)')"
if [[ $# -gt 0 ]]; then
    [[ $record == 0 ]] || die "--record records a run of every lab: name no runtime"
    labs=("$@")
else
    mapfile -t labs < <("$rtlab" runtimes)
fi
[[ ${#labs[@]} -gt 0 ]] || die "no runtimes: '$rtlab runtimes' listed none"
rm -rf "$out"
mkdir -p "$out"
echo "autobahn: $suite, cases 1.* to 10.*, against /echo of: ${labs[*]} (at most ${timeout_s} s each)"
for lab in "${labs[@]}"; do run_lab "$lab"; done

summary=0
python3 "$here/summary.py" --out "$out" --expect "$EXPECTED_CASES" --suite "$suite" "${labs[@]}" || summary=$?
for failure in ${failures[@]+"${failures[@]}"}; do echo "autobahn: FAILED: $failure" >&2; done
if [[ $summary != 0 || ${#failures[@]} != 0 ]]; then
    [[ $record == 0 ]] || echo "autobahn: not recorded: the run failed (bench-results/autobahn/ left as it was)" >&2
    exit 1
fi
echo "autobahn: every lab passed ($out/summary.md)"
[[ $record == 1 ]] || exit 0

# --- The record -------------------------------------------------------------
# The summary as written above, plus where it was run: one "key: value" a line
# in summary.md (under the table the book includes), a "run" object in
# summary.json. Written to a temporary directory first, then moved in.
cpu="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
tmp="$(mktemp -d)"
AB_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
AB_HOST="$(hostname 2>/dev/null || uname -n)" \
AB_MACHINE="$(nproc) × ${cpu:-unknown CPU}, $(uname -m)" \
AB_KERNEL="$(uname -sr)" \
AB_COMMIT="$commit" \
AB_RUSTC="$(rustc -V 2>/dev/null || echo unknown)" \
AB_BINARY="${rtlab#"$root"/}" \
AB_PYTHON="$("$venv/bin/python" -c 'import platform; print(platform.python_implementation() + " " + platform.python_version())')" \
AB_SUITE="$suite" \
python3 - "$out" "$tmp" <<'PY'
import json, os, sys
out, tmp = sys.argv[1], sys.argv[2]
run = [("recorded (UTC)", "AB_DATE"), ("host", "AB_HOST"), ("machine", "AB_MACHINE"),
       ("kernel", "AB_KERNEL"), ("commit", "AB_COMMIT"), ("toolchain", "AB_RUSTC"),
       ("server", "AB_BINARY"), ("wstest", "AB_SUITE"), ("wstest runs on", "AB_PYTHON")]
with open(os.path.join(out, "summary.md")) as f:
    text = f.read()
text += "\nRecorded by `scripts/autobahn/run.sh --record`:\n\n"
text += "".join("- %s: %s\n" % (label, os.environ[key]) for label, key in run)
with open(os.path.join(tmp, "summary.md"), "w") as f:
    f.write(text)
with open(os.path.join(out, "summary.json")) as f:
    document = json.load(f)
document["run"] = {key[3:].lower(): os.environ[key] for _, key in run}
with open(os.path.join(tmp, "summary.json"), "w") as f:
    json.dump(document, f, indent=2, ensure_ascii=False)
    f.write("\n")
PY
mkdir -p "$recorded"
mv "$tmp/summary.md" "$tmp/summary.json" "$recorded/"
rmdir "$tmp"
echo "autobahn: recorded in ${recorded#"$root"/}/ (summary.md, summary.json): commit them"
