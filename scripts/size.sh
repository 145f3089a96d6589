#!/usr/bin/env bash
# The shipped size of the npm package: pkg/*.wasm and pkg/*.js, raw and
# gzipped (gzip -9, as a CDN would serve them). Needs pkg/ built (make pkg).
#
#   scripts/size.sh           the files and the total (the last line)
#   scripts/size.sh --table   also the largest functions and the code per
#                             module, from the same build with names kept
#   scripts/size.sh --check   the total against the budget in
#                             scripts/size-budget (bytes gzipped); fails
#                             when the module is larger. `make test` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_FILE=scripts/size-budget
total_raw=0; total_gz=0
for f in pkg/*.wasm pkg/*.js; do
  [ -f "$f" ] || continue
  raw=$(stat -c %s "$f"); gz=$(gzip -9 -c "$f" | wc -c)
  printf '%-28s %9d bytes  %8d gzipped\n' "$f" "$raw" "$gz"
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
done
if [ "$total_gz" = 0 ]; then echo "size: pkg/ holds no module (make pkg)" >&2; exit 1; fi

case "${1:-}" in
  --table)
    # The wasm as `make pkg` ships it, with its name section kept: the same
    # cargo output and flags, plus -g.
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    wasm-bindgen --target web --out-dir "$work" --out-name crm_sync \
      target/wasm32-unknown-unknown/release/crm_sync.wasm
    tools/node_modules/.bin/wasm-opt -Os --low-memory-unused -g "$work/crm_sync_bg.wasm" -o "$work/named.wasm"
    echo
    node scripts/wasm-functions.mjs "$work/named.wasm" 25
    echo
    ;;
  --check)
    budget=$(tr -dc '0-9' <"$BUDGET_FILE")
    awk -v g="$total_gz" -v b="$budget" 'BEGIN {
      printf "size: %d bytes gzipped (%.1f KB), budget %d (%.1f KB), %s\n", g, g / 1024, b, b / 1024,
        g <= b ? "within it" : "OVER BUDGET by " g - b " bytes" }'
    [ "$total_gz" -le "$budget" ]
    exit
    ;;
esac
awk -v r="$total_raw" -v g="$total_gz" 'BEGIN { printf "total: %d bytes, %d bytes gzipped (%.1f KB)\n", r, g, g / 1024 }'
