#!/bin/sh
# Runs the PyTorch reference and ouro's benchmark side by side (needs `pip install torch`), in
# ROUNDS interleaved rounds (default 3), and prints the best of each and the ratio ouro/PyTorch.
# Interleaving and best-of-N keep a noisy (virtualised) machine from favouring either side.
# usage: bench/run.sh [ROUNDS]   (from the repository root)
set -e
rounds=${1:-3}
cargo build --release --quiet
log=$(mktemp)
for r in $(seq "$rounds"); do
  for t in 1 2; do
    for d in 2 64; do
      echo "torch train $d $t $(python3 bench/torch_reference.py mlp $d 20 200 0 $t 2>/dev/null | tail -1)" >>"$log"
      echo "ouro train $d $t $(target/release/ouro bench train --dim $d --threads $t --steps 200)" >>"$log"
      echo "torch sample $d $t $(python3 bench/torch_reference.py sample $d 10000 30 0 $t 2>/dev/null | tail -1)" >>"$log"
      echo "ouro sample $d $t $(target/release/ouro bench sample --dim $d --threads $t --steps 30)" >>"$log"
    done
  done
done
awk '{
  key = $2 " D=" $3 " threads=" $4
  for (i = 5; i <= NF; i++) if ($i ~ /^(steps|samples)_per_s=/) { split($i, kv, "="); v = kv[2] + 0 }
  if (v > best[$1, key]) best[$1, key] = v
  keys[key] = 1
} END {
  printf "%-26s %12s %12s %7s\n", "workload (best of runs)", "PyTorch", "ouro", "ratio"
  for (k in keys) printf "%-26s %12.1f %12.1f %6.2fx\n", k, best["torch", k], best["ouro", k], best["ouro", k] / best["torch", k]
}' "$log" | sort
rm -f "$log"
