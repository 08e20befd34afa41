#!/usr/bin/env bash
# Run a benchmark for two builds of this repository side by side, alternating, so that both see
# the same machine and the same load: the working tree (this build) and REV (the baseline).
#
#   benchmarks/compare_builds.sh REV [bench_runtime.py|bench_agents.py|...] [ROUNDS]
#
# REV is checked out into a temporary git worktree with its own locked environment (uv), which is
# removed at the end. Each round prints the load (uptime), then the benchmark's output (--quick)
# for REV and for this build; compare each figure's ratio to its same-run baseline.
set -euo pipefail
rev="${1:?usage: benchmarks/compare_builds.sh REV [BENCH] [ROUNDS]}"
bench="${2:-bench_runtime.py}"
rounds="${3:-2}"
here="$(cd "$(dirname "$0")/.." && pwd)"
base="$(mktemp -d)/base"
git -C "$here" worktree add --quiet --detach "$base" "$rev"
trap 'git -C "$here" worktree remove --force "$base"' EXIT
(cd "$base" && uv sync --quiet --locked --extra dev)
for round in $(seq "$rounds"); do
    for tree in "$base" "$here"; do
        label="$(git -C "$tree" log --oneline -1 | cut -c1-7)"
        [ "$tree" = "$here" ] && label="$label (this build)"
        echo "=== round $round: $label | $(uptime)"
        (cd "$tree" && uv run --locked --extra dev python "benchmarks/$bench" --quick)
    done
done
