#!/usr/bin/env bash
# Vendors the console's JavaScript libraries from the npm registry into
# cmd/furrow/internal/console/static/vendor (committed; the console embeds
# them, so it needs no CDN and works offline). Bump a version here and
# re-run to upgrade.
set -euo pipefail
HTMX=2.0.11
CHARTJS=4.6.1

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/cmd/furrow/internal/console/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "htmx.org@$HTMX" "chart.js@$CHARTJS" >/dev/null
mkdir htmx chartjs
tar xzf "htmx.org-$HTMX.tgz" -C htmx --strip-components=1
tar xzf "chart.js-$CHARTJS.tgz" -C chartjs --strip-components=1
mkdir -p "$out"
cp htmx/dist/htmx.min.js "$out/htmx.min.js"
cp htmx/LICENSE "$out/htmx.LICENSE"
cp chartjs/dist/chart.umd.min.js "$out/chart.umd.min.js"
cp chartjs/LICENSE.md "$out/chart.js.LICENSE.md"
echo "htmx.org $HTMX, chart.js $CHARTJS -> $out"
