#!/usr/bin/env bash
# Fails when buf lint fails or when the committed generated code (Go, and
# the OpenAPI document in pkg/httpapi) differs from what the pinned
# generators make of proto/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/bin:$PATH"
cd "$root/proto"
buf lint
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
# buf writes the OpenAPI document to ../pkg/httpapi: generate into
# $base/proto so that it lands in $base/pkg/httpapi.
tmp="$base/proto"
mkdir -p "$tmp"
buf generate --output "$tmp"
stale=0
for f in pkg/httpapi/openapi.swagger.json; do
	if ! cmp -s "$base/$f" "$root/$f"; then
		echo "stale generated file: $f (run: make proto)" >&2
		stale=1
	fi
done
while IFS= read -r f; do
	rel=${f#"$tmp"/}
	if ! cmp -s "$f" "$rel"; then
		echo "stale generated code: proto/$rel (run: make proto)" >&2
		stale=1
	fi
done < <(find "$tmp" -name '*.go')
while IFS= read -r f; do
	if [ ! -f "$tmp/$f" ]; then
		echo "generated file without a source: proto/$f" >&2
		stale=1
	fi
done < <(find . -name '*.pb.go' | sed 's#^\./##')
if [ "$stale" -ne 0 ]; then exit 1; fi
echo "proto: lint clean, generated code up to date"
