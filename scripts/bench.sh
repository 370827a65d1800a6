#!/usr/bin/env bash
# Runs Furrow's benchmarks with their raw baselines in the same run and
# prints figures and ratios (compare ratios, not times: machines are shared).
#   1. end to end: RecordDelivery over gRPC vs raw JetStream sync publishes;
#      bulk RecordDeliveries vs raw atomic batches of 1,000; the event
#      store's Append with and without group commit; an open-loop run for
#      latency; subject cardinality (heap and restart cost of per-aggregate
#      subjects)
#   2. projections: rebuild rate on SQLite and PostgreSQL vs the raw
#      ordered-consumer read rate
# It ends with the ratios and latencies alone, one a line, for scripts:
#   ratio NAME = X.XX
#   latency NAME = X
# BENCHTIME (default 3s) sets the length of the end-to-end runs.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-3s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version | cut -d' ' -f3) $(nproc) cores"
echo "# go test -run '^\$' -bench . -benchtime $benchtime ./cmd/furrow/internal/bench"
go test -run '^$' -bench . -benchtime "$benchtime" ./cmd/furrow/internal/bench | tee "$out"
dsn=${FURROW_TEST_POSTGRES_DSN:-}
if [ -z "$dsn" ]; then dsn=$(scripts/postgres.sh); fi
echo
echo "# go test -run '^\$' -bench '^BenchmarkRebuild\$' -benchtime 1x ./pkg/projection"
FURROW_TEST_POSTGRES_DSN="$dsn" go test -run '^$' -bench '^BenchmarkRebuild$' -benchtime 1x ./pkg/projection | tee -a "$out"
echo
echo "# ratios and latencies (milliseconds)"
sed -n 's/^ *\(ratio .* = [0-9.]*\)$/\1/p' "$out"
# BenchmarkRebuild reports each store's rate over the raw read rate as a
# metric named <store>/raw.
awk '/^BenchmarkRebuild/ { for (i = 3; i <= NF; i++) if ($i ~ /^[a-z]+\/raw$/) {
	split($i, name, "/"); printf "ratio rebuild/%s : raw-replay = %.2f\n", name[1], $(i-1) } }' "$out"
sed -n 's/^ *\(latency .* = [0-9.]*\)$/\1/p' "$out"
