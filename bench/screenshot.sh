#!/usr/bin/env bash
# Screenshot of the karyo main window reviewing a cell, on a virtual screen, for the README.
#   bench/screenshot.sh [OUT.png] [bench/screenshot.py options...]
# Needs Debian's xvfb and xauth, plus the xcb libraries Qt uses (see the developers' notes).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/screenshot.png}
shift || true
xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/screenshot.py "$out" "$@"
