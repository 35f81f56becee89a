#!/usr/bin/env bash
# Installs Debian's chromium package when its browser is missing: the browser tests
# (tests/browser) drive it through Playwright, whose own browser download cannot be relied on.
# `make test` runs this first, so a fresh Debian machine (and CI on one) gets it; where it is
# already installed this does nothing and prints nothing.
#
# Usage: scripts/ensure_chromium.sh [BROWSER]   (BROWSER: the executable to make sure of;
# /usr/bin/chromium, where the package puts it and where the tests look)
set -euo pipefail

browser=${1:-/usr/bin/chromium}
[[ -x $browser ]] && exit 0

say() { echo "ensure_chromium: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    say "$browser is missing and this machine has no apt-get: install Chromium so that" \
        "$browser runs it (the browser tests in tests/browser launch it)"
    exit 1
fi
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        say "$browser is missing; as root, run: apt-get install -y --no-install-recommends chromium"
        exit 1
    fi
    as_root=(sudo)
fi

say "$browser is missing: installing Debian's chromium package (apt-get) for the browser tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A fresh machine's package lists may be empty or old: apt-get would not find the package.
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 \
    || ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; then
    say "apt-get could not install chromium; its last lines:"
    tail -n 20 "$log" >&2
    exit 1
fi
if [[ ! -x $browser ]]; then
    say "apt-get installed chromium, yet $browser is still missing"
    exit 1
fi
say "installed $("$browser" --version 2>/dev/null || echo chromium)"
