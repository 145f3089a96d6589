#!/usr/bin/env bash
# `make bench`: measures crm-sync against what the browser itself does, in
# one run, and prints one table (see docs/performance.md for what each row
# means). It reports; it never fails because a goal is missed.
#
# Builds what it needs (unless make already did: `bench: pkg server`),
# starts the reference server (the debug build, as `make demo` and the tests
# run it) on a free loopback port with a fresh database, serving a page
# assembled in a temp dir from www/bench/ and pkg/, and runs
# www/bench/run.mjs, which seeds 10,000 customers, drives headless Chromium
# with playwright-core, runs the PATCH load generator and weighs pkg/.
#
# The peer rows (docs/performance.md, "Peers"): www/bench has its own
# package.json with the other libraries as dev dependencies (installed here,
# idempotently; nothing of theirs ships in pkg/). www/bench/peers.mjs is
# bundled with esbuild into the page beside bench.mjs, and run.mjs builds the
# size table from the installed packages (www/bench/size.mjs).
# Then scripts/soak.sh soaks a release server (login flood, 10,000 PATCHes,
# 1,000 comments) and prints its RSS and database growth (BENCH_ONLY without
# `soak` skips it).
# Then scripts/bench-pg.sh prints PATCH/s on SQLite and on PostgreSQL with one
# and two instances (BENCH_ONLY without `engines` skips it).
#
#   BENCH_ROUNDS=5         rounds per row (the median and spread are over them)
#   BENCH_PORT=0           the server's port (0: any free one)
#   BENCH_JSON=path        also write the raw results there
#                          (default target/bench/results.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ -z "${MAKELEVEL:-}" ]; then
  make --no-print-directory pkg server
fi
scripts/setup.sh www >/dev/null # playwright-core lives in www/node_modules

# The peers: npm ci when www/bench/node_modules is missing or older than the
# lock file (as scripts/setup.sh does for www/ and tools/).
if [ ! -f www/bench/node_modules/.package-lock.json ] ||
   [ www/bench/package-lock.json -nt www/bench/node_modules/.package-lock.json ]; then
  echo "bench: installing the peers' npm packages in www/bench/" >&2
  (cd www/bench && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# The wasm as `make pkg` ships it, but with its name section kept, so the
# table can name the largest functions. Same inputs, same flags, plus -g.
CARGO_WASM=target/wasm32-unknown-unknown/release/crm_sync.wasm
if [ "$(stat -c %Y "$CARGO_WASM")" -lt "$(($(stat -c %Y pkg/crm_sync_bg.wasm) - 120))" ]; then
  echo "bench: $CARGO_WASM is older than pkg/ (built elsewhere?): the function list may not match" >&2
fi
wasm-bindgen --target web --out-dir "$WORK/named" --out-name crm_sync \
  "$CARGO_WASM"
tools/node_modules/.bin/wasm-opt -Os --low-memory-unused -g "$WORK/named/crm_sync_bg.wasm" -o "$WORK/named.wasm"

# The page and the module side by side: the page imports /pkg/crm_sync.js.
mkdir -p "$WORK/static"
cp www/bench/index.html www/bench/bench.mjs "$WORK/static/"
# The peer benchmarks with their libraries in one module; crm-sync stays the
# page's one /pkg/crm_sync.js (initialised by bench.mjs).
www/bench/node_modules/.bin/esbuild www/bench/peers.mjs --bundle --format=esm --target=es2022 \
  --external:/pkg/crm_sync.js --external:/bench.mjs --log-level=warning --outfile="$WORK/static/peers.mjs"
cp -r pkg "$WORK/static/pkg"
# BENCH_PROFILE (run.mjs): the same build with its function names, so the
# profile names them.
[ -n "${BENCH_PROFILE:-}" ] && cp "$WORK/named.wasm" "$WORK/static/pkg/crm_sync_bg.wasm"

# A fresh database each run. --demo gives the users (alice logs in) and 200
# customers; run.mjs writes the sheet with the rest and imports it.
RUST_LOG=warn target/debug/crm-sync-server --port "${BENCH_PORT:-0}" --db "$WORK/crm.db" --demo --static "$WORK/static" \
  --sheet "$WORK/sheet.csv" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 300); do
  URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/server.out" 2>/dev/null | head -1 || true)
  [ -n "$URL" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "bench: the server did not start:" >&2
  tail -20 "$WORK/server.log" >&2
  exit 1
fi

mkdir -p target/bench
BENCH_BASE_URL=$URL BENCH_SHEET=$WORK/sheet.csv BENCH_PKG=pkg BENCH_NAMED_WASM=$WORK/named.wasm \
  BENCH_JSON=${BENCH_JSON:-target/bench/results.json} \
  node www/bench/run.mjs

# The server soak (its own release server; reported, never failing the run).
case ",${BENCH_ONLY:-soak,engines}," in
  *,soak,*) scripts/soak.sh || echo "bench: the server soak did not finish" >&2 ;;
esac
# PATCH/s per engine (a throwaway PostgreSQL cluster; reported, never failing the run).
case ",${BENCH_ONLY:-soak,engines}," in
  *,engines,*) scripts/bench-pg.sh || echo "bench: the engine rows did not finish" >&2 ;;
esac
