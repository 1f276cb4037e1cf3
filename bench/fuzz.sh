#!/usr/bin/env bash
# A long run of the property tests: every input property of the supervisor
# with many more random cases than CI runs (512 each).
#
#   bench/fuzz.sh                       # 20,000 cases per property (~5 min)
#   PROPTEST_CASES=200000 bench/fuzz.sh # longer
#   FUZZ_RELEASE=1 bench/fuzz.sh        # optimized build: more cases per
#                                       # minute, but no overflow checks
#
# The properties (crates/protocol/tests/props.rs, crates/pool/tests/props.rs):
# the jobs-line parser, the check pass over a whole jobs file (every bad line
# named FILE:LINE:), the CSV/TSV reader (any bytes, and a round trip of
# tables the csv crate writes), the worker-message decoder, the supervisor's
# stdout framer over a real pipe, and LineReader. Inputs are random bytes and
# valid lines mutated: cut short, quotes doubled, numbers like 1e400 and
# 99999999999999999999999, 10,000 levels of nesting, NUL, invalid UTF-8.
# Each case must end within 20 s (else it fails as a hang) and stay within a
# memory bound (a counting allocator in the tests). Proptest honours its
# other PROPTEST_* variables too (PROPTEST_RNG_SEED=N repeats a run).
#
# A failure prints the smallest input found; make it a plain test beside
# the property (as the tests "found by ..." there are) and fix the code.
# Nothing leaves this machine: the tests use temp files and pipes only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
profile=()
if [[ -n "${FUZZ_RELEASE:-}" ]]; then
    profile=(--release)
fi

echo "fuzz: $PROPTEST_CASES cases per property${FUZZ_RELEASE:+ (release build)}" >&2
start=$SECONDS
# The two tests of one 64 MiB line each are not random: once is enough
# (CI runs them).
cargo test "${profile[@]}" -p callpool-protocol --test props
cargo test "${profile[@]}" -p callpool-pool --test props -- --skip a_stdout_line_
echo "fuzz: done in $((SECONDS - start)) s" >&2
