#!/bin/sh
# Runs the PyTorch reference and ouro's benchmark side by side (needs `pip install torch`), in
# ROUNDS interleaved rounds (default 3), and prints the best of each, the ratio of the bests, and the
# median and lowest of the per-round ratios (each ouro measurement over the PyTorch one just before it).
# Interleaving and best-of-N keep a noisy (virtualised) machine from favouring either side.
# WORKLOADS (default "mlp unet") picks the MLP rows (D = 2 and 64) and the U-Net rows (28×28 images).
# usage: [WORKLOADS=unet] bench/run.sh [ROUNDS]   (from the repository root)
set -e
rounds=${1:-3}
cargo build --release --quiet
log=$(mktemp)
workloads=${WORKLOADS:-mlp unet}
for r in $(seq "$rounds"); do
  for t in 1 2; do
    case " $workloads " in *" unet "*)
      echo "torch unet-train 784 $t $(python3 bench/torch_reference.py unet-train 3 10 0 $t 2>/dev/null | tail -1)" >>"$log"
      echo "ouro unet-train 784 $t $(target/release/ouro bench unet-train --threads $t --steps 10 --warmup 3)" >>"$log"
      echo "torch unet-sample 784 $t $(python3 bench/torch_reference.py unet-sample 256 3 0 $t 2>/dev/null | tail -1)" >>"$log"
      echo "ouro unet-sample 784 $t $(target/release/ouro bench unet-sample --threads $t --steps 3 --n 256)" >>"$log"
    esac
    case " $workloads " in *" mlp "*) ;; *) continue ;; esac
    for d in 2 64; do
      echo "torch train $d $t $(python3 bench/torch_reference.py mlp $d 20 200 0 $t 2>/dev/null | tail -1)" >>"$log"
      echo "ouro train $d $t $(target/release/ouro bench train --dim $d --threads $t --steps 200)" >>"$log"
      echo "torch sample $d $t $(python3 bench/torch_reference.py sample $d 10000 30 0 $t 2>/dev/null | tail -1)" >>"$log"
      echo "ouro sample $d $t $(target/release/ouro bench sample --dim $d --threads $t --steps 30)" >>"$log"
    done
  done
done
# Each line of the log is one measurement; a torch line and the ouro line after it ran seconds apart,
# so their ratio (a "paired" ratio, one per round) sees the same machine. Printed: the best of each
# side over the rounds, the ratio of the bests, and the median and lowest paired ratios.
awk '{
  key = $2 " D=" $3 " threads=" $4
  for (i = 5; i <= NF; i++) if ($i ~ /^(steps|samples|images|evals)_per_s=/) { split($i, kv, "="); v = kv[2] + 0 }
  if (v > best[$1, key]) best[$1, key] = v
  keys[key] = 1
  if ($1 == "torch") last[key] = v
  else { n[key]++; ratio[key, n[key]] = v / last[key] }
} END {
  for (k in keys) {
    m = n[k]
    for (i = 1; i <= m; i++) r[i] = ratio[k, i]
    for (i = 2; i <= m; i++) for (j = i; j > 1 && r[j] < r[j - 1]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
    med = (m % 2) ? r[(m + 1) / 2] : (r[m / 2] + r[m / 2 + 1]) / 2
    printf "%-26s %10.1f %10.1f %6.2fx %9.2fx %9.2fx\n", k, best["torch", k], best["ouro", k], best["ouro", k] / best["torch", k], med, r[1]
  }
}' "$log" | sort >"$log.table"
echo "$rounds rounds; paired = ouro over the PyTorch measurement just before it, in the same round"
printf "%-26s %10s %10s %7s %10s %10s\n" "workload" "PyTorch" "ouro" "best" "paired" "lowest"
printf "%-26s %10s %10s %7s %10s %10s\n" "" "(best)" "(best)" "ratio" "median" "paired"
cat "$log.table"
rm -f "$log.table"
rm -f "$log"
