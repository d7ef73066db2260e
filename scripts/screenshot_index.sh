#!/usr/bin/env bash
# Check that a run's index page renders: headless Chromium screenshots RUN/index.html to a PNG.
#   usage: bash scripts/screenshot_index.sh RUN [OUT_PNG]      (OUT_PNG default RUN/index_screenshot.png)
# Write the page first with tools/visualize.py. Environment: CHROMIUM [chromium], WINDOW [1280,900].
# Exit status: 0 a non-empty PNG was written; 1 Chromium failed or wrote nothing; 2 bad arguments,
# no index.html, or no Chromium on this machine (CI machines may not have it).
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 RUN [OUT_PNG]" >&2; exit 2
fi
run=$1
index="$run/index.html"
[ -f "$index" ] || { echo "error: $index: not found (run tools/visualize.py --out $run ... first)" >&2; exit 2; }
out=${2:-$run/index_screenshot.png}
browser=${CHROMIUM:-chromium}
command -v "$browser" >/dev/null 2>&1 || { echo "error: '$browser' not found; install Chromium or set CHROMIUM" >&2; exit 2; }
abs_index=$(cd "$(dirname "$index")" && pwd)/index.html
mkdir -p "$(dirname "$out")"
abs_out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$abs_out"
# A fresh profile, no network services, no GPU: a plain offline render of a local file.
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --screenshot="$abs_out" \
  --window-size="${WINDOW:-1280,900}" "file://$abs_index" >"$profile/chromium.log" 2>&1 || status=$?
if [ ! -s "$abs_out" ]; then
  echo "error: $browser (exit ${status:-0}) wrote no screenshot to $abs_out; its last output:" >&2
  tail -n 20 "$profile/chromium.log" >&2
  exit 1
fi
echo "$abs_out"
