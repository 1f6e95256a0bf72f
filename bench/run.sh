#!/bin/sh
# Runs the PyTorch reference and ouro's benchmark side by side (needs `pip install torch`).
# usage: bench/run.sh   (from the repository root)
set -e
cargo build --release --quiet
for t in 1 2; do
  for d in 2 64; do
    python3 bench/torch_reference.py mlp $d 20 200 0 $t | tail -1
    target/release/ouro bench train --dim $d --threads $t --steps 200
    python3 bench/torch_reference.py sample $d 10000 50 0 $t | tail -1
    target/release/ouro bench sample --dim $d --threads $t --steps 50
  done
done
