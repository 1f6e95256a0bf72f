#!/bin/sh
# In-process A/B of a training step: the working tree against git revision REV (at or after the
# commit that added `backward_add`), alternating the two every 4 steps for ROUNDS rounds (default
# 200), at D = 2 and D = 64. Prints steps/s and the median ratio of the two builds' times.
# usage: sh bench/ab.sh REV [THREADS] [ROUNDS]   (from the repository root)
set -e
rev=${1:?usage: sh bench/ab.sh REV [THREADS] [ROUNDS]}
threads=${2:-1}
rounds=${3:-200}
base=target/ab-baseline
rm -rf "$base"
mkdir -p "$base"
git archive "$rev" | tar -x -m -C "$base"
# A version of its own, so that Cargo can hold both builds in one lockfile.
sed -i '0,/^version = .*/s//version = "0.0.1"/' "$base/Cargo.toml"
cargo build --release --quiet --manifest-path bench/ab/Cargo.toml --target-dir target/ab
for d in 2 64; do
  target/ab/release/ouro-ab "$d" "$threads" "$rounds"
done
