#!/bin/sh
# Runs ouro's metric benchmark and the Python reference (prdc, numpy, scipy; needs
# `pip install numpy scipy scikit-learn prdc`) on the same arrays, in ROUNDS interleaved rounds
# (default 3), at THREADS threads (default 2), and prints the best time of each, the ratio
# reference/ouro, and both sides' values.
# usage: bench/metrics.sh [ROUNDS] [THREADS] [N] [DIM]   (from the repository root)
set -e
rounds=${1:-3}
threads=${2:-2}
n=${3:-10000}
dim=${4:-64}
cargo build --release --quiet
dir=$(mktemp -d)
log="$dir/log"
target/release/ouro bench metrics --n "$n" --dim "$dim" --threads "$threads" --repeats 1 --out "$dir" >/dev/null
for r in $(seq "$rounds"); do
  python3 bench/metrics_reference.py "$dir" "$threads" 1 2>/dev/null | grep '^reference' >>"$log"
  target/release/ouro bench metrics --n "$n" --dim "$dim" --threads "$threads" --repeats 3 >>"$log"
done
awk -v threads="$threads" -v n="$n" -v dim="$dim" '{
  split($2, m, "="); metric = m[2]
  for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "time") t = kv[2] + 0 }
  if (!(($1, metric) in best) || t < best[$1, metric]) best[$1, metric] = t
  vals = ""
  for (i = 7; i <= NF; i++) vals = vals " " $i
  values[$1, metric] = vals
  metrics[metric] = 1
} END {
  for (k in metrics) printf "%-9s %12.6f %10.6f %6.1fx  %s |%s\n", k, best["reference", k], best["ouro", k], best["reference", k] / best["ouro", k], values["reference", k], values["ouro", k]
}' "$log" | sort >"$dir/table"
echo "n=$n d=$dim threads=$threads, best of $rounds rounds"
printf "%-9s %12s %10s %7s   %s\n" metric reference_s ouro_s ratio "values (reference | ouro)"
cat "$dir/table"
rm -rf "$dir"
