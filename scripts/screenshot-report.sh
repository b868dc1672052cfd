#!/usr/bin/env bash
# Open a rendered report.html in headless Chromium and save a screenshot of the WHOLE page, to
# check by eye that the self-contained HTML renders (tables, banner, inline figures) in a real
# browser. Chromium's --screenshot captures the window only, so the window is made taller until
# the page ends inside it (up to MAX_HEIGHT px), then the empty space below the page is cut off.
#   Debian/Ubuntu: apt-get install chromium
#   usage: scripts/screenshot-report.sh results/report/report.html [out.png] [width]
#   env: PYTHON (an interpreter with Pillow; default: python3), MAX_HEIGHT (default: 60000)
set -euo pipefail
html=${1:?usage: $0 REPORT.html [OUT.png] [WIDTH]}
out=${2:-${html%.html}.png}
width=${3:-1400}
max_height=${MAX_HEIGHT:-60000}
python=${PYTHON:-python3}
[ -f "$html" ] || { echo "error: $html does not exist" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium on PATH (apt-get install chromium)" >&2; exit 2; }
"$python" -c "import PIL" 2>/dev/null || {
  echo "error: $python has no Pillow (set PYTHON to the project's interpreter)" >&2; exit 2; }
out=$(realpath -m "$out")
height=4000
while :; do
  # --no-sandbox: Chromium refuses to run as root with its sandbox
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$width,$height" --screenshot="$out" "file://$(realpath "$html")" 2>/dev/null
  [ -s "$out" ] || { echo "error: chromium wrote no screenshot" >&2; exit 1; }
  # exit 0: the page ended above the bottom (cut the blank rows off); 1: it runs past the window
  if "$python" - "$out" <<'EOF'
import sys

import numpy as np
from PIL import Image

path = sys.argv[1]
img = np.asarray(Image.open(path).convert("RGB")).astype(int)
background = img[-1, 0]
blank = (np.abs(img - background).sum(axis=2) <= 6).all(axis=1)
content = np.flatnonzero(~blank)
last = int(content[-1]) if len(content) else 0
if last >= img.shape[0] - 40:  # content reaches the bottom: the page is taller than the window
    sys.exit(1)
Image.open(path).crop((0, 0, img.shape[1], min(img.shape[0], last + 40))).save(path)
EOF
  then
    break
  fi
  if [ "$height" -ge "$max_height" ]; then
    echo "warning: the page is taller than MAX_HEIGHT=$max_height px; the screenshot is cut" >&2
    break
  fi
  height=$((height * 2 > max_height ? max_height : height * 2))
done
echo "wrote $out"
