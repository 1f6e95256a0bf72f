#!/bin/sh
# Coverage-guided fuzzing of ouro's readers of outside input (libFuzzer through cargo fuzz, on
# the nightly toolchain: `cargo install cargo-fuzz` once).
#
#   sh fuzz/run.sh SECONDS [TARGET ...]      # default: every target, one after the other
#
# Each target runs for SECONDS from its committed corpus (fuzz/corpus/TARGET); the corpus it
# grows is minimised (cargo fuzz cmin) back into fuzz/corpus/TARGET, and one line
# "date target seconds executions crashes sanitizer" is appended to fuzz/runs.tsv. A crash stops the
# target and leaves its input in fuzz/artifacts/TARGET/: fix it, then copy the input into
# fuzz/regressions/TARGET/ so that `cargo test` (tests/fuzz_corpus.rs) replays it from then on.
# FUZZ_SANITIZER=none runs without AddressSanitizer (about twice the executions a second; the
# readers are safe Rust); the default is cargo fuzz's own, address. The sanitizer is recorded.
set -eu
cd "$(dirname "$0")"
secs=${1:?usage: sh fuzz/run.sh SECONDS [TARGET ...]}
shift
targets=${*:-config npy csv idx safetensors study}
san=${FUZZ_SANITIZER:-address}
cargo +nightly fuzz build -O -s "$san" >/dev/null
for t in $targets; do
    work=$(mktemp -d)
    cp corpus/"$t"/* "$work"/
    log=$(mktemp)
    status=0
    cargo +nightly fuzz run -O -s "$san" "$t" "$work" -- -max_total_time="$secs" -print_final_stats=1 \
        -rss_limit_mb=4096 -timeout=20 >"$log" 2>&1 || status=$?
    execs=$(awk '/stat::number_of_executed_units/ { s += $2 } END { print s + 0 }' "$log")
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=1
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -n 20
    fi
    # The grown corpus never holds the crashing input (libFuzzer writes it to artifacts/).
    if cargo +nightly fuzz cmin -O -s "$san" "$t" "$work" >/dev/null 2>&1; then
        rm -f corpus/"$t"/*
        cp "$work"/* corpus/"$t"/
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%F)" "$t" "$secs" "$execs" "$crashes" "$san" >>runs.tsv
    echo "$t: $execs executions in $secs s, $crashes crash(es); corpus $(ls corpus/"$t" | wc -l) inputs"
    rm -rf "$work" "$log"
done
