#!/usr/bin/env bash
# The scale run (make bench-scale; not part of make test, make bench or
# CI): fills a furrow dev stack with FURROW_SCALE_FARMERS farmers (default
# 1,000,000) and FURROW_SCALE_EVENTS events (default 10,000,000) through
# the event store, then reports server heap, restart times, the rebuild
# time of each projection, GetFarmerBalance latency and disk bytes per
# event, one "scale NAME = X UNIT" line each (package comment of
# cmd/furrow/internal/bench/scale for the details). At full size it runs
# for an hour or more on two cores; FURROW_SCALE_DIR keeps the data.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version | cut -d' ' -f3) $(nproc) cores"
echo "# farmers=${FURROW_SCALE_FARMERS:-1000000} events=${FURROW_SCALE_EVENTS:-10000000}"
go test -run '^$' -bench '^BenchmarkScale$' -benchtime 1x -timeout 0 ./cmd/furrow/internal/bench/scale
