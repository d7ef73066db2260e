#!/usr/bin/env bash
# A screenshot of the interactive page after one run, as headless Chromium renders it.
#   usage: bash scripts/screenshot_app.sh [OUT_PNG] [URL]      (OUT_PNG default docs/app_screenshot.png)
# Without URL it starts `python app.py --tiny` on a free local port (stopped at the end); with URL
# it uses the app already serving there. Either way it grounds the first synthetic example scene
# and saves the whole page. Environment: PYTHON [python], CHROMIUM (rsvg_zeroov/app/browser.py).
# Exit status: 0 the PNG was written; 1 the app or the browser failed; 2 bad arguments or no Chromium.
set -euo pipefail
if [ $# -gt 2 ]; then
  echo "usage: $0 [OUT_PNG] [URL]" >&2; exit 2
fi
out=${1:-docs/app_screenshot.png}
url=${2:-}
py=${PYTHON:-python}
repo=$(cd "$(dirname "$0")/.." && pwd)
"$py" -c "import sys; from rsvg_zeroov.app.browser import find_chromium; sys.exit(0 if find_chromium() else 2)" \
  || { echo "error: no Chromium found; install it (apt-get install chromium) or set CHROMIUM" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
if [ -z "$url" ]; then
  port=$("$py" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  log=$(mktemp)
  "$py" "$repo/app.py" --tiny --port "$port" >"$log" 2>&1 &
  app=$!
  trap 'kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; rm -f "$log"' EXIT
  url="http://127.0.0.1:$port/"
  for _ in $(seq 600); do
    if ! kill -0 "$app" 2>/dev/null; then
      echo "error: python app.py --tiny stopped; its last output:" >&2; tail -n 20 "$log" >&2; exit 1
    fi
    "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null && break
    sleep 0.5
  done
fi
"$py" - "$url" "$out" <<'PY' || { echo "error: the browser run on $url failed" >&2; exit 1; }
import sys

from rsvg_zeroov.app.browser import screenshot

shown = screenshot(sys.argv[1], sys.argv[2])
print(shown.status, file=sys.stderr)
PY
echo "$out"
