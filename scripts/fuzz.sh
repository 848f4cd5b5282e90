#!/usr/bin/env bash
# Fuzzes backup-core's decoders and the backup/restore round trip with
# cargo-fuzz (libFuzzer), one target after the other.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 20)
#
#   scripts/fuzz.sh 600       the 10-minute run of every target (about 80
#                             minutes for the 8 targets, plus the build)
#   scripts/fuzz.sh 3         a smoke run, as in scripts/test.sh
#   scripts/fuzz.sh 0         no fuzzing: run every seed and corpus input
#                             once (a deterministic regression check)
#   FUZZ_TARGETS="tree index" scripts/fuzz.sh 60     only some targets
#
# Targets are in fuzz/fuzz_targets/ (see fuzz/README.md). Each run starts
# from the committed seeds (fuzz/seeds/<target>/) and the working corpus
# (fuzz/corpus/<target>/, not committed, grows from run to run). Inputs that
# crash, time out (-timeout=10 s) or use more than 2 GiB are saved under
# fuzz/artifacts/<target>/; libFuzzer's full output is in
# fuzz/target/fuzz-logs/<target>.log. One process per target, one target at
# a time (the machines have 2 shared cores): libFuzzer's -jobs is not passed,
# which is the same as -jobs=1 without the worker process and its
# fuzz-0.log.
#
# Needs the Rust toolchain. cargo-fuzz is installed if missing
# (`cargo install cargo-fuzz --locked`, about 1.5 minutes); the sanitizer
# flags it passes are nightly-only, so the stable toolchain is run with
# RUSTC_BOOTSTRAP=1. The first build of the targets takes about 3 minutes.
#
# Exits non-zero if any target found a crash (or a timeout or OOM).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
all_targets="envelope config_and_key pack_header blob index tree manifest roundtrip"
targets="${FUZZ_TARGETS:-$all_targets}"

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# From fuzz/, so that cargo reads fuzz/.cargo/config.toml (C flags for the
# sanitizer build); cargo-fuzz finds the project from there too.
cd fuzz

echo "== building fuzz targets"
for target in $targets; do
    cargo fuzz build "$target"
done

logs="$root/fuzz/target/fuzz-logs"
mkdir -p "$logs"
failed=()
for target in $targets; do
    corpus="$root/fuzz/corpus/$target"
    seeds="$root/fuzz/seeds/$target"
    artifacts="$root/fuzz/artifacts/$target"
    mkdir -p "$corpus" "$seeds" "$artifacts"
    log="$logs/$target.log"
    if [ "$seconds" -eq 0 ]; then
        echo "== running the inputs of $target (log: ${log#"$root"/})"
        limit=(-runs=0)
    else
        echo "== fuzzing $target for ${seconds}s (log: ${log#"$root"/})"
        limit=(-max_total_time="$seconds")
    fi
    status=0
    # New inputs go to the first directory (the corpus); seeds are only read.
    cargo fuzz run "$target" "$corpus" "$seeds" -- \
        "${limit[@]}" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$log" 2>&1 || status=$?
    executions="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
    if [ -z "$executions" ]; then
        executions="$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)"
    fi
    corpus_size="$(find "$corpus" -type f | wc -l)"
    if [ "$status" -eq 0 ]; then
        if [ "$seconds" -eq 0 ]; then
            span="(each input once)"
        else
            span="in ${seconds}s"
        fi
        printf '%-15s ok       %12s executions %s, corpus %s inputs\n' \
            "$target" "${executions:-?}" "$span" "$corpus_size"
    else
        failed+=("$target")
        printf '%-15s FAILED   %12s executions (exit %s); see %s\n' \
            "$target" "${executions:-?}" "$status" "${log#"$root"/}"
        grep -E '^(==[0-9]+== ?ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" \
            | head -n 8 | sed 's/^/    /' || true
        sed -n '/panicked at/,+2p' "$log" | head -n 6 | sed 's/^/    /' || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}" >&2
    echo "from fuzz/ (so that fuzz/.cargo/config.toml applies):" >&2
    echo "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/<file>" >&2
    echo "  minimize:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin TARGET artifacts/TARGET/<file>" >&2
    exit 1
fi
echo "fuzzing: no crash in ${targets// /, }"
