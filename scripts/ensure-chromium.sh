#!/usr/bin/env bash
# Make sure a headless Chromium is available for the leaderboard's browser test
# (tests/test_leaderboard_browser.py). Uses the system's packages: Debian's `chromium`, or a browser
# that is already installed (chromium-browser, google-chrome). Prints the browser it found or installed;
# exits non-zero if there is none and it cannot install one (no apt-get, or not root and no sudo).
set -euo pipefail

find_browser() {
    local name
    for name in "${BMBENCH_CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
        if [ -n "$name" ] && command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if browser="$(find_browser)"; then
    echo "chromium: $browser"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no chromium and no apt-get here; install Chromium with the system's package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: chromium is missing and installing it needs root (sudo apt-get install chromium)" >&2
        exit 1
    fi
fi
echo "ensure-chromium: installing chromium from the system's packages" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2
browser="$(find_browser)" || { echo "ensure-chromium: the chromium package installed no browser" >&2; exit 1; }
echo "chromium: $browser"
