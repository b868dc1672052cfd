#!/usr/bin/env bash
# Open a rendered report.html in headless Chromium and save a screenshot, to check by eye that
# the self-contained HTML renders (tables, banner, inline figures) in a real browser.
#   Debian/Ubuntu: apt-get install chromium
#   usage: scripts/screenshot-report.sh results/report/report.html [out.png] [width] [height]
set -euo pipefail
html=${1:?usage: $0 REPORT.html [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-${html%.html}.png}
width=${3:-1400}
height=${4:-2400}
[ -f "$html" ] || { echo "error: $html does not exist" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium on PATH (apt-get install chromium)" >&2; exit 2; }
# --no-sandbox: Chromium refuses to run as root with its sandbox
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="$width,$height" --screenshot="$(realpath -m "$out")" \
  "file://$(realpath "$html")" 2>/dev/null
[ -s "$out" ] || { echo "error: chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out"
