#!/usr/bin/env bash
# Screenshot of the karyo main window on a virtual screen, for the README.
#   bench/screenshot.sh [OUT.png] [karyo gui arguments...]
# Needs Debian's xvfb, xauth and imagemagick (import), plus the xcb libraries Qt uses.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/screenshot.png}
shift || true
mkdir -p "$(dirname "$out")"
xvfb-run -a -s "-screen 0 1280x820x24" bash -c '
  .venv/bin/karyo gui "$@" & app=$!
  sleep 8
  import -window root "'"$out"'"
  kill $app
' _ "$@"
echo "wrote $out"
