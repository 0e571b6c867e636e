#!/usr/bin/env bash
# Browser tests: Beacon's tracker and dashboard in Debian's headless
# Chromium, driven by playwright (Python). Installs Chromium with apt-get
# when it is missing (never a browser download), keeps a venv with the
# pinned requirements under target/, builds the `beacon` binary, and runs
# the tests; each test module starts its own Beacon (free port, fresh
# SQLite database in a temp dir) and stops it by PID.
# Fails, never skips, when the browser is missing or a test fails.
# Extra arguments go to pytest (e.g. `-k tracker`).
set -euo pipefail
cd "$(dirname "$0")/../.."

chromium=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
    echo "==> installing Debian's chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [[ ! -x $chromium ]]; then
    echo "FAIL: no Chromium at $chromium"
    exit 1
fi
# Country flags are emoji: without a colour emoji font the screenshots (the
# README's picture among them) show empty boxes. Cosmetic, so best effort.
if ! fc-list 2>/dev/null | grep -qi "color emoji"; then
    echo "==> installing Debian's fonts-noto-color-emoji (flags in screenshots)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji >/dev/null 2>&1 \
        || echo "note: no emoji font; flags show as boxes in screenshots"
fi

venv=target/browser-venv
if ! cmp -s tests/browser/requirements.txt "$venv/requirements.txt"; then
    echo "==> creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r tests/browser/requirements.txt
    cp tests/browser/requirements.txt "$venv/requirements.txt"
fi

echo "==> cargo build --bin beacon"
cargo build --bin beacon
export BEACON_BIN=$PWD/target/debug/beacon CHROMIUM=$chromium

echo "==> browser tests"
exec "$venv/bin/python" -m pytest tests/browser -p no:cacheprovider -q "$@"
