#!/usr/bin/env bash
# Runs go test over every workspace module (a plain ./... does not cross
# modules) and closes with one summary line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2046
go test -v ${GO_TEST_FLAGS:--race -count=1 -timeout 12m} $(go list -f '{{.Dir}}/...' -m) 2>&1 | tee "$log" |
	grep -Ev '^(=== (RUN|PAUSE|CONT|NAME)|    --- PASS|--- PASS)' 
rc=${PIPESTATUS[0]}
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
