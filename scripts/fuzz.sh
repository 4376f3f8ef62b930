#!/usr/bin/env bash
# Fuzzes rtlab-core's parsers: the cargo-fuzz crate labs/core/fuzz (libFuzzer),
# each target for SECONDS (default 10), starting from its committed seeds
# (labs/core/fuzz/corpus/T) and from what earlier runs found
# (labs/core/fuzz/target/corpus/T, never committed). Fails if any target
# crashes; the input that did it is kept in labs/core/fuzz/artifacts/T/ and
# `cargo +nightly fuzz run --fuzz-dir labs/core/fuzz T FILE` replays it.
#
# Prints, per target, the runs, executions per second and coverage (`cov:`
# edges and `ft:` features from libFuzzer's final line), and writes them to
# target/fuzz-summary.md.
#
# With --record DIR, also writes the campaign's summary as committed data:
# DIR/summary.md (a markdown table the book includes) and DIR/summary.json,
# per target: result, runs, exec/s, cov, ft, corpus, seconds; and for the
# campaign: date, toolchain, sanitizer, commit, build seconds.
#
# Usage: scripts/fuzz.sh [--record DIR] [SECONDS] [TARGET...]   (default: every target)
#        e.g. scripts/fuzz.sh --record bench-results/fuzz 30
# Environment: FUZZ_SANITIZER=address|none (default: none, see below).
#
# Needs a Rust toolchain and a C++ compiler (libFuzzer is built from source
# by libfuzzer-sys). Installs cargo-fuzz (pinned) when it is missing. Uses
# the nightly toolchain when rustup has one; without it, builds with the
# default toolchain and RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags)
# and no sanitizer, and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_DIR=labs/core/fuzz
ALL_TARGETS=(http_request ws_decoder ws_command resume_cursor connection)

record=""
if [[ "${1:-}" == "--record" ]]; then
    [[ $# -ge 2 ]] || { echo "usage: $0 [--record DIR] [SECONDS] [TARGET...]" >&2; exit 2; }
    record="$2"
    shift 2
fi
seconds="${1:-10}"
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "usage: $0 [--record DIR] [SECONDS] [TARGET...]" >&2; exit 2; }

# Each target's dictionary.
dict_for() {
    case "$1" in
        ws_decoder) echo "$FUZZ_DIR/dict/ws.dict" ;;
        ws_command) echo "$FUZZ_DIR/dict/json.dict" ;;
        *) echo "$FUZZ_DIR/dict/http.dict" ;;
    esac
}

# 1. cargo-fuzz, pinned.
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# 2. The toolchain. cargo-fuzz passes unstable flags (-Z...) to rustc and
#    cargo: nightly, or any toolchain told to accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo=(cargo +nightly)
else
    echo "note: no nightly toolchain (rustup toolchain list); fuzzing with $(rustc --version)" \
        "and RUSTC_BOOTSTRAP=1, without a sanitizer"
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
    FUZZ_SANITIZER=none
fi
# The core is safe Rust: AddressSanitizer would only watch its dependencies'
# unsafe code, at a fifth to an eighth of the speed and about 40% more build
# time (labs/core/fuzz/README.md). Overflow checks and debug assertions are
# on either way (cargo-fuzz's default).
sanitizer="${FUZZ_SANITIZER:-none}"

# 3. Build every target at once (the runs below then build nothing).
echo "building the fuzz targets (sanitizer: $sanitizer)"
build_start=$SECONDS
only=()
[[ ${#targets[@]} -eq 1 ]] && only=("${targets[0]}")
"${cargo[@]}" fuzz build --fuzz-dir "$FUZZ_DIR" --sanitizer "$sanitizer" "${only[@]}"
build_time=$(( SECONDS - build_start ))

# 4. Run each target; collect libFuzzer's final line.
logs="$FUZZ_DIR/target/logs"
mkdir -p "$logs" target
summary=target/fuzz-summary.md
{
    echo "# Fuzzing rtlab-core: $seconds s per target"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(${cargo[@]} --version), sanitizer $sanitizer, build ${build_time} s."
    echo "cov: code edges covered; ft: features (edges and their hit counts, comparisons); corpus: inputs kept."
    echo
    echo "| target | result | runs | exec/s | cov | ft | corpus |"
    echo "|---|---|---:|---:|---:|---:|---:|"
} >"$summary"
failed=()
rows=()  # target|status|runs|exec/s|cov|ft|corpus|seconds, for --record
printf '\n%-14s %-7s %10s %8s %6s %7s %8s\n' target result runs exec/s cov ft corpus
for t in "${targets[@]}"; do
    corpus="$FUZZ_DIR/target/corpus/$t"
    mkdir -p "$corpus"
    log="$logs/$t.log"
    status=ok
    run_start=$SECONDS
    # The grown corpus first: libFuzzer adds new inputs to the first directory.
    "${cargo[@]}" fuzz run --fuzz-dir "$FUZZ_DIR" --sanitizer "$sanitizer" "$t" "$corpus" "$FUZZ_DIR/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -dict="$(dict_for "$t")" -print_final_stats=1 >"$log" 2>&1 || status=CRASH
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
    [[ -n "$done_line" ]] || status=CRASH
    field() { sed -nE "s|.*[[:space:]]$1:? ([0-9]+).*|\\1|p" <<<"$done_line"; }
    runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$done_line")"
    cov="$(field cov)" ft="$(field ft)" execs="$(field 'exec/s')"
    corp="$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")"
    if [[ $status != ok ]]; then
        failed+=("$t")
        artifact="$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | cut -d' ' -f5 || true)"
        echo "--- $t: crash or error (log: $log)"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY" -A2 "$log" | cut -c1-300 | head -n 12 || tail -n 20 "$log"
        [[ -z "$artifact" ]] || echo "--- input: $artifact"
    fi
    printf '%-14s %-7s %10s %8s %6s %7s %8s\n' "$t" "$status" "${runs:--}" "${execs:--}" "${cov:--}" "${ft:--}" "${corp:--}"
    rows+=("$t|$status|${runs:-}|${execs:-}|${cov:-}|${ft:-}|${corp:-}|$(( SECONDS - run_start ))")
    echo "| $t | $status | ${runs:--} | ${execs:--} | ${cov:--} | ${ft:--} | ${corp:--} |" >>"$summary"
done
echo
echo "summary: $summary"

# 5. --record: the summary as committed data (markdown for the book, JSON).
if [[ -n "$record" ]]; then
    mkdir -p "$record"
    toolchain="$(${cargo[@]} --version) / $(${cargo[@]} fuzz --version 2>/dev/null || echo cargo-fuzz)"
    rustc_version="$(if [[ ${cargo[*]} == *+nightly* ]]; then rustc +nightly --version; else rustc --version; fi)"
    commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    [[ -z "$(git status --porcelain -- labs/core 2>/dev/null)" ]] || commit="$commit (with uncommitted changes to labs/core)"
    date_utc="$(date -u '+%Y-%m-%d %H:%M UTC')"
    ROWS="$(printf '%s\n' "${rows[@]}")" SECONDS_PER_TARGET="$seconds" SANITIZER="$sanitizer" \
    BUILD_SECONDS="$build_time" TOOLCHAIN="$rustc_version; $toolchain" COMMIT="$commit" DATE_UTC="$date_utc" \
    CORES="$(nproc 2>/dev/null || echo '?')" OUT="$record" python3 - <<'PY'
import json, os
rows = [r.split("|") for r in os.environ["ROWS"].splitlines() if r]
num = lambda v: int(v) if v.isdigit() else None
targets = [dict(target=t, result=st, runs=num(ru), exec_per_s=num(ex), cov=num(cv), ft=num(ft),
                corpus=num(co), seconds=num(se)) for t, st, ru, ex, cv, ft, co, se in rows]
meta = dict(date=os.environ["DATE_UTC"], seconds_per_target=int(os.environ["SECONDS_PER_TARGET"]),
            sanitizer=os.environ["SANITIZER"], build_seconds=int(os.environ["BUILD_SECONDS"]),
            toolchain=os.environ["TOOLCHAIN"], commit=os.environ["COMMIT"], cores=os.environ["CORES"])
out = os.environ["OUT"]
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(dict(meta, targets=targets), f, indent=2)
    f.write("\n")
fmt = lambda v: "-" if v is None else f"{v:,}"
lines = [
    "| target | result | runs | exec/s | cov | ft | corpus | seconds |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]
for r in targets:
    lines.append(f"| `{r['target']}` | {r['result']} | {fmt(r['runs'])} | {fmt(r['exec_per_s'])} | {fmt(r['cov'])} "
                 f"| {fmt(r['ft'])} | {fmt(r['corpus'])} | {fmt(r['seconds'])} |")
total = sum(r["runs"] or 0 for r in targets)
lines += [
    "",
    f"{meta['seconds_per_target']} s per target, {total:,} runs in all; sanitizer: {meta['sanitizer']}; "
    f"{meta['date']}, {meta['cores']} cores; commit `{meta['commit']}`; {meta['toolchain']}. "
    "cov: code edges covered; ft: features (edges and their hit counts, comparisons); "
    "corpus: inputs kept (the committed seeds plus what this and earlier runs found); "
    "seconds: the target's run, start-up included.",
]
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
PY
    echo "recorded: $record/summary.md, $record/summary.json"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "error: crashes in: ${failed[*]} (inputs in $FUZZ_DIR/artifacts/)" | tee -a "$summary"
    exit 1
fi
