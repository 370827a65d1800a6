#!/usr/bin/env bash
# Runs Furrow's benchmarks with their raw baselines in the same run and
# prints figures and ratios (compare ratios, not times: machines are shared).
#   1. end to end: RecordDelivery over gRPC vs raw JetStream sync publishes;
#      subject cardinality (heap and restart cost of per-aggregate subjects)
#   2. projections: rebuild rate on SQLite and PostgreSQL vs the raw
#      ordered-consumer read rate
# BENCHTIME (default 3s) sets the length of the end-to-end runs.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-3s}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version | cut -d' ' -f3) $(nproc) cores"
echo "# go test -run '^\$' -bench . -benchtime $benchtime ./cmd/furrow/internal/bench"
go test -run '^$' -bench . -benchtime "$benchtime" ./cmd/furrow/internal/bench
dsn=${FURROW_TEST_POSTGRES_DSN:-}
if [ -z "$dsn" ]; then dsn=$(scripts/postgres.sh); fi
echo
echo "# go test -run '^\$' -bench '^BenchmarkRebuild\$' -benchtime 1x ./pkg/projection"
FURROW_TEST_POSTGRES_DSN="$dsn" go test -run '^$' -bench '^BenchmarkRebuild$' -benchtime 1x ./pkg/projection
