#!/usr/bin/env bash
# Prints the shipped size of the npm package: pkg/*.wasm and pkg/*.js, raw
# and gzipped (gzip -9, as a CDN would serve them).
set -euo pipefail
cd "$(dirname "$0")/.."
total_raw=0; total_gz=0
for f in pkg/*.wasm pkg/*.js; do
  [ -f "$f" ] || continue
  raw=$(stat -c %s "$f"); gz=$(gzip -9 -c "$f" | wc -c)
  printf '%-28s %9d bytes  %8d gzipped\n' "$f" "$raw" "$gz"
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
done
awk -v r="$total_raw" -v g="$total_gz" 'BEGIN { printf "total: %d bytes, %d bytes gzipped (%.1f KB)\n", r, g, g / 1024 }'
