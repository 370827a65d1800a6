#!/usr/bin/env bash
# Fails when buf lint fails or when the committed generated Go code differs
# from what the pinned generators make of proto/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/bin:$PATH"
cd "$root/proto"
buf lint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf generate --output "$tmp"
stale=0
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
