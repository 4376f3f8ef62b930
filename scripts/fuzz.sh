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
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: every target)
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

seconds="${1:-10}"
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }

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
printf '\n%-14s %-7s %10s %8s %6s %7s %8s\n' target result runs exec/s cov ft corpus
for t in "${targets[@]}"; do
    corpus="$FUZZ_DIR/target/corpus/$t"
    mkdir -p "$corpus"
    log="$logs/$t.log"
    status=ok
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
    echo "| $t | $status | ${runs:--} | ${execs:--} | ${cov:--} | ${ft:--} | ${corp:--} |" >>"$summary"
done
echo
echo "summary: $summary"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "error: crashes in: ${failed[*]} (inputs in $FUZZ_DIR/artifacts/)" | tee -a "$summary"
    exit 1
fi
