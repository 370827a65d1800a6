#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the console's browser
# tests, installing Debian's chromium with apt-get when none is found:
#
#   export FURROW_CHROMIUM="$(scripts/chromium.sh)"
#
# FURROW_CHROMIUM, when already set to an executable, is used as it is.
# Everything but the path goes to stderr.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_bin() {
	local c
	for c in "${FURROW_CHROMIUM:-}" chromium chromium-browser google-chrome-stable google-chrome headless-shell; do
		[ -n "$c" ] || continue
		if command -v "$c" >/dev/null 2>&1; then
			command -v "$c"
			return
		fi
	done
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
	log "no Chromium found; installing Debian's chromium with apt-get"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null; then SUDO="sudo"; else
			log "not root and no sudo: install chromium (apt-get install chromium) or set FURROW_CHROMIUM"
			exit 1
		fi
	fi
	$SUDO apt-get update >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium >&2
	BIN=$(find_bin)
	if [ -z "$BIN" ]; then log "apt-get installed no chromium"; exit 1; fi
fi
echo "$BIN"
