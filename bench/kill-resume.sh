#!/bin/sh
# Kill-and-resume, harder than CI: each test of tests/study.rs that kills a run or a study with
# SIGKILL at moments drawn from a seeded generator, resumes it and compares the result with an
# uninterrupted run byte for byte, with KILLS attempts (default 20) instead of 6.
#   sh bench/kill-resume.sh [KILLS]
set -eu
cd "$(dirname "$0")/.."
OURO_KILLS=${1:-20} cargo test --release --test study killed -- --nocapture --test-threads 1
