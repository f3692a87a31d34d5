#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test of report.html (tests/test_report_html.py) when
# it is missing. Never fails the build: without Chromium that test skips and says why.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "note: Chromium is missing and installing it needs root; the browser test of report.html will skip" >&2
        exit 0
    fi
fi
log="$(mktemp)"
if ! command -v apt-get >/dev/null 2>&1 \
    || ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    echo "note: could not install Chromium (Debian package chromium); the browser test of report.html will skip" >&2
    tail -n 5 "$log" >&2
fi
rm -f "$log"
exit 0
