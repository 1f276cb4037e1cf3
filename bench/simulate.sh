#!/usr/bin/env bash
# The core's simulator over many seeds, in release mode, and how long it
# took (crates/pool/tests/sim.rs). Each seed draws a whole run — settings,
# jobs, hostile workers, failing writes, signals, logins, clock jumps —
# and checks the invariants at every step, then finishes an interrupted
# run with a --resume run.
#
#   bash bench/simulate.sh              # a million seeds from 0
#   SIM_SEEDS=50000 SIM_START=7000000 bash bench/simulate.sh
#
# A failing seed prints the one-line command that replays it with a trace.
set -euo pipefail
cd "$(dirname "$0")/.."
export SIM_SEEDS=${SIM_SEEDS:-1000000}
export SIM_START=${SIM_START:-0}
cargo build --release -p callpool-pool --tests --quiet
start=$(date +%s.%N)
cargo test --release -q -p callpool-pool --test sim -- --nocapture --exact seeds 2>&1 | grep -E "^sim:|seed|panicked|test result"
end=$(date +%s.%N)
echo "simulate.sh: $SIM_SEEDS seeds from $SIM_START in $(echo "$end - $start" | bc) s on $(nproc) cores ($(uname -m))"
