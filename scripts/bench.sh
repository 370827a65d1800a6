#!/usr/bin/env bash
# Runs Furrow's benchmarks with their raw JetStream baselines in one run and
# prints the figures and ratios. BENCHTIME (default 3s) sets each run's length.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-3s}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version | cut -d' ' -f3) $(nproc) cores"
echo "# go test -run '^\$' -bench . -benchtime $benchtime ./cmd/furrow/internal/bench"
go test -run '^$' -bench . -benchtime "$benchtime" ./cmd/furrow/internal/bench
